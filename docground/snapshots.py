"""Backup and migration of a knowledge base: one file holds it whole, and its vectors can move to a server.

A snapshot is a gzipped tar: `manifest.json` (what made it), `registry.json` (the knowledge base's row and
its ready documents with their parsed pages and finished jobs), `blobs/<document id>/` (originals, stored
layouts, figure crops) and `points/*.json` (every chunk's vectors and payload, read out of the store).
The same point export serves the embedded store and a Qdrant server: a server's own snapshots hold whole
collections, and before collections were one per knowledge base one could hold two knowledge bases.
Restoring writes nothing parsed or embedded anew, so the same questions get the same answers.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import pydantic
import pydantic_core
from sqlalchemy import DateTime, select
from sqlalchemy.orm import undefer

from .errors import AlreadyExists, InvalidRequest, InvalidSnapshot, NotFound, SnapshotMismatch
from .ingestion import _read_prepared, _write_prepared  # the format embedded chunks travel in between processes
from .registry import Base, Document, Job, KnowledgeBase, Page, validate_kb_name
from .retrieval.store import IndexedChunk
from .service import Docground

FORMAT = "docground-snapshot"
VERSION = 1
POINTS_PER_FILE = 1024
DOCUMENT_ID = re.compile(r"[0-9a-f]{1,64}")  # a blob folder's name (ingest/pipeline.py: document_id)


class SnapshotManifest(pydantic.BaseModel):
    """What made a snapshot: a restore refuses one whose vectors or chunks this home would not make."""

    format: str
    version: int
    kb: str
    embedding_model: str  # the embedder's identity: model, and backend when not PyTorch
    fingerprint: str  # the pipeline's (engines, chunker, embedder)
    documents: int
    created_at: datetime


@dataclass
class Migration:
    kb: str
    collection: str
    points: int


def create_snapshot(service: Docground, kb: str, path: Path) -> SnapshotManifest:
    """Write the knowledge base's ready documents, their files and their chunks' vectors into `path`."""
    validate_kb_name(kb)
    rows = _registry_rows(service, kb)
    manifest = SnapshotManifest(format=FORMAT, version=VERSION, kb=kb, embedding_model=service.embedder.identity,
                                fingerprint=service.pipeline.fingerprint, documents=len(rows["documents"]),
                                created_at=datetime.now(UTC))
    part = path.with_name(path.name + ".part")  # a snapshot cut short never takes the name
    try:
        _write_archive(service, part, manifest, rows)
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)
    return manifest


def _write_archive(service: Docground, part: Path, manifest: SnapshotManifest, rows: dict) -> None:
    indexed_with = {d["id"]: d["fingerprint"] for d in rows["documents"]}
    with tempfile.TemporaryDirectory() as scratch, tarfile.open(part, "w:gz") as tar:
        _add_json(tar, "manifest.json", manifest.model_dump(mode="json"))  # first: a restore reads it alone
        _add_json(tar, "registry.json", rows)
        for doc_id in indexed_with:
            tar.add(service.blob_dir(doc_id), arcname=f"blobs/{doc_id}", filter=_finished_files)
        ready = (c for c in service.store(manifest.kb).points() if indexed_with.get(c.payload.get("document_id")) ==
                 c.payload.get("fingerprint"))  # chunks of documents in flight stay out, as their rows do
        for n, chunks in enumerate(_batches(ready, POINTS_PER_FILE)):
            file = Path(scratch) / f"{n:06d}.json"
            _write_prepared(file, chunks)
            tar.add(file, arcname=f"points/{file.name}")
            file.unlink()


def restore_snapshot(service: Docground, path: Path) -> SnapshotManifest:
    """Bring a snapshot's knowledge base into this home, as it was: same document ids, chunks and vectors."""
    with _open(path) as tar:
        manifest = _manifest(tar)
        if service.registry.get_kb(manifest.kb) is not None:
            raise AlreadyExists(f"knowledge base {manifest.kb!r} already exists in {service.settings.home}: "
                                "restore into another home, or delete it first")
        _check_compatible(service, manifest)
        # Unpacked inside the home, so that its blobs move into place by renaming.
        with tempfile.TemporaryDirectory(dir=service.settings.home, prefix=".restore-") as scratch:
            unpacked = _unpack(tar, Path(scratch))
            rows = _snapshot_rows(unpacked, manifest.kb)
            _move_blobs(service, unpacked / "blobs", [d["id"] for d in rows["documents"]])
            store = service.store(manifest.kb)
            for file in sorted((unpacked / "points").glob("*.json")):
                store.upsert(_read_prepared(file))
            store.flush()
    _insert_rows(service, rows)  # last, in one transaction: the knowledge base appears once it is whole
    return manifest


def migrate_to_server(source: Docground, target: Docground, kb: str) -> Migration:
    """Copy an embedded knowledge base's chunks, vectors as they are, into the Qdrant server `target` is
    configured with (its documents and files stay where they are: the registry and home are the same)."""
    validate_kb_name(kb)
    if source.settings.qdrant_url:
        raise InvalidRequest(f"knowledge base {kb!r} is already on the Qdrant server {source.settings.qdrant_url}")
    if source.registry.get_kb(kb) is None:
        raise NotFound(f"knowledge base {kb!r} does not exist")
    store, server = source.store(kb), target.store(kb)
    if held := server.count():
        raise AlreadyExists(f"the Qdrant server already holds {held} chunk(s) of knowledge base {kb!r} "
                            f"(collection {server.collection}): delete them there first")
    for chunks in _batches(store.points(), POINTS_PER_FILE):
        server.upsert(chunks)
    return Migration(kb, server.collection, server.count())


def on_server(service: Docground, url: str) -> Docground:
    """The same home with its vectors on the Qdrant server at `url` (a URL, or ":memory:"); the embedder and
    engines are the ones `service` has loaded."""
    target = Docground(service.settings.model_copy(update={"qdrant_url": url}), router=service.router)
    target._embedder = service.embedder  # loaded once (seconds) for both
    return target


def _registry_rows(service: Docground, kb: str) -> dict:
    """The knowledge base's row, its ready documents, and what makes them ready: their pages parsed for the
    fingerprint they were indexed with (layouts included) and their finished jobs."""
    with service.registry.session() as s:
        row = s.get(KnowledgeBase, kb)
        if row is None:
            raise NotFound(f"knowledge base {kb!r} does not exist")
        docs = list(s.scalars(select(Document).where(Document.kb == kb, Document.status == "ready")
                              .order_by(Document.created_at)))
        indexed_with = {d.id: d.fingerprint for d in docs}
        pages = [p for p in s.scalars(select(Page).options(undefer(Page.layout)).where(
            Page.document_id.in_(indexed_with), Page.status == "done").order_by(Page.document_id, Page.page))
            if indexed_with[p.document_id] == p.fingerprint]
        jobs = [j for j in s.scalars(select(Job).where(Job.document_id.in_(indexed_with), Job.stage == "done"))
                if indexed_with[j.document_id] == j.fingerprint]
        return {"knowledge_base": _columns(row), "documents": [_columns(d) for d in docs],
                "pages": [_columns(p) for p in pages], "jobs": [_columns(j) for j in jobs]}


def _insert_rows(service: Docground, rows: dict) -> None:
    with service.registry.session() as s, s.begin():
        s.add(_row(KnowledgeBase, rows["knowledge_base"]))
        s.flush()  # the documents' foreign keys need it
        s.add_all(_row(Document, d) for d in rows["documents"])
        s.flush()
        s.add_all([_row(Page, p) for p in rows["pages"]] + [_row(Job, j) for j in rows["jobs"]])


def _columns(row: Base) -> dict:
    return pydantic_core.to_jsonable_python({c.key: getattr(row, c.key) for c in row.__table__.columns})


def _row(model: type[Base], values: dict) -> Base:
    dates = {c.key for c in model.__table__.columns if isinstance(c.type, DateTime)}
    return model(**{k: datetime.fromisoformat(v) if k in dates and v else v for k, v in values.items()})


def _check_compatible(service: Docground, manifest: SnapshotManifest) -> None:
    here = service.embedder.identity
    if manifest.embedding_model != here:
        raise SnapshotMismatch(f"the snapshot's vectors were made by {manifest.embedding_model!r}, this home embeds "
                               f"with {here!r}: set DOCGROUND_EMBEDDING_MODEL (and _BACKEND) as where it was made")
    if manifest.fingerprint != service.pipeline.fingerprint:
        raise SnapshotMismatch("the snapshot's documents were parsed and chunked by another pipeline configuration "
                               "(engines, chunk sizes) than this home's: restore it with the settings it was made with")


def _move_blobs(service: Docground, blobs: Path, document_ids: list[str]) -> None:
    for doc_id in document_ids:
        target = service.blob_dir(doc_id)
        if (blobs / doc_id).is_dir():
            shutil.rmtree(target, ignore_errors=True)  # an unregistered leftover, e.g. of a restore cut short
            target.parent.mkdir(parents=True, exist_ok=True)
            (blobs / doc_id).rename(target)


def _unpack(tar: tarfile.TarFile, folder: Path) -> Path:
    try:
        tar.extractall(folder, filter="data")  # "data": nothing lands outside the folder, no links, no devices
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise InvalidSnapshot(f"{tar.name} is damaged: {exc}") from exc
    return folder


def _snapshot_rows(unpacked: Path, kb: str) -> dict:
    """The registry rows of a snapshot, checked to be of its knowledge base and to name plain blob folders."""
    try:
        rows = json.loads((unpacked / "registry.json").read_text())
    except (OSError, ValueError) as exc:
        raise InvalidSnapshot(f"the snapshot has no readable registry.json: {exc}") from exc
    if rows["knowledge_base"]["name"] != kb or any(
            d["kb"] != kb or not DOCUMENT_ID.fullmatch(d["id"]) for d in rows["documents"]):
        raise InvalidSnapshot(f"the snapshot's registry rows are not all of knowledge base {kb!r}")
    return rows


def _open(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise InvalidSnapshot(f"{path} is not a docground snapshot: {exc}") from exc


def _manifest(tar: tarfile.TarFile) -> SnapshotManifest:
    """The manifest, the archive's first member (read without scanning the rest)."""
    try:
        first = tar.next()
        if first is None or first.name != "manifest.json":
            raise KeyError("manifest.json")
        manifest = SnapshotManifest.model_validate_json(tar.extractfile(first).read())
    except (KeyError, tarfile.TarError, EOFError, zlib.error, pydantic.ValidationError) as exc:
        raise InvalidSnapshot(f"{tar.name} is not a docground snapshot (no readable manifest.json)") from exc
    if manifest.format != FORMAT or manifest.version > VERSION:
        raise InvalidSnapshot(f"{tar.name} is a {manifest.format!r} version {manifest.version} file: this docground "
                              f"reads {FORMAT!r} up to version {VERSION}")
    validate_kb_name(manifest.kb)
    return manifest


def _add_json(tar: tarfile.TarFile, name: str, value) -> None:
    data = json.dumps(value).encode()
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), int(datetime.now(UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


def _finished_files(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Leave out working files: `.part` files being written, and embedded chunks waiting for the store's owner."""
    name = Path(info.name).name
    return None if name.endswith(".part") or name.startswith("chunks-") else info


def _batches(chunks: Iterable[IndexedChunk], size: int) -> Iterator[list[IndexedChunk]]:
    """Lists of `size` chunks, the last one shorter: itertools.batched, which comes with Python 3.12."""
    rest = iter(chunks)
    return iter(lambda: list(islice(rest, size)), [])
