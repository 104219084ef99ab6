"""Ingestion in stages: register → parse page batches → finalize (chunk, embed, index).

`ingest` runs them one after another in this process; docground/workers runs the same stages as Celery
tasks (or on a thread of the API). Every stage is idempotent: ids derive from content, a parsed page is
stored once (first writer wins), and chunks are upserted under content-derived ids.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import threading
from pathlib import Path

import numpy as np

from .components import Components
from .errors import (
    DocgroundError,
    NoSpace,
    NotFound,
    PipelineMismatch,
    StoreBusy,
    is_out_of_space,
    no_space_as_error,
)
from .ingest.pipeline import ProgressCallback, document_id, file_sha256
from .ingest.processors.figures import save_figure_crops
from .ingest.providers import pages_kind, sniff_kind
from .ingest.providers.names import safe_filename
from .ingest.schema import Chunk, IngestResult, PageLayout
from .registry import Document, Job, Page, Registration, validate_kb_name
from .retrieval import sparse
from .retrieval.store import IndexedChunk
from .webhooks import check_callback_url

log = logging.getLogger("docground")


class Ingestion(Components):
    def ingest(self, kb: str, filename: str, data: bytes, progress: ProgressCallback | None = None) -> IngestResult:
        validate_kb_name(kb)
        try:
            registration = self.register(kb, filename, data)
        except DocgroundError as exc:
            return IngestResult(filename=filename, document_id=None, status="failed", error=exc.message,
                                error_code=exc.code)
        if registration.job is None:
            return _result(registration.document)
        return _result(self.run_job(registration.job.id, progress))

    def register(self, kb: str, filename: str, data: bytes, idempotency_key: str | None = None,
                 callback_url: str | None = None) -> Registration:
        """Stage 1: check the upload, keep the original, register its document and a job.
        Raises a DocgroundError for bad input; a ready document (same pipeline) or an active job of the
        same file is returned as found (`created` False). `callback_url` is told (docground/webhooks.py)
        when the document becomes ready or failed, or at once if it already is."""
        validate_kb_name(kb)
        if callback_url is not None:
            check_callback_url(callback_url, self.settings.webhook_allow_private)
        filename = safe_filename(filename)
        sha = file_sha256(data)
        doc_id = document_id(kb, sha)
        if idempotency_key:
            known = self.registry.idempotent_document(kb, idempotency_key, sha)
            doc = self.registry.document(known) if known else None
            if doc is not None:
                return Registration(doc, self.registry.latest_job(doc.id), False)
        existing = self.registry.document(doc_id)
        if existing and existing.status == "ready" and existing.fingerprint == self.pipeline.fingerprint:
            registration = Registration(existing, None, False)
        else:
            registration = self._keep_and_register(Document(id=doc_id, kb=kb, filename=filename, sha256=sha,
                                                            size_bytes=len(data)), data)
        with no_space_as_error():
            if idempotency_key:
                self.registry.remember_idempotency_key(kb, idempotency_key, sha, doc_id)
            if callback_url is not None:
                self.registry.subscribe(registration.document.id, callback_url)
        return registration

    def _keep_and_register(self, doc: Document, data: bytes) -> Registration:
        """Keep the upload (and the PDF it converts to), then register its document and a job. A full disk
        raises NoSpace with nothing half-written: blobs take their name only when complete, and the
        registry's transaction is rolled back."""
        pipeline = self.pipeline
        source = pipeline.open(data, self._kept_rendition(doc.id, data))
        doc.kind, doc.pages_total, rendition = source.kind, source.page_count, source.rendition
        source.close()
        with no_space_as_error():
            self.space_reserve.restore()  # refused while the disk cannot spare it: see docground/disk_space.py
            self.registry.ensure_kb(doc.kb)
            if rendition is not None:  # an Office, web or text document: the PDF its pages are read from
                self._save_blob(doc.id, f"original.{pages_kind(doc.kind)}", rendition)
            self._save_blob(doc.id, f"original.{doc.kind}", data)
            return self.registry.register(doc, pipeline.fingerprint)

    def run_job(self, job_id: str, progress: ProgressCallback | None = None,
                stop: threading.Event | None = None) -> Document:
        """All of a job's stages in this process (which must be able to write the store). With `stop`
        set between two page batches it returns early; the job stays active and resumes later."""
        job, doc = self._job(job_id)
        try:
            pending = self.registry.pending_pages(doc.id, job.fingerprint, doc.pages_total)
            size = self.pipeline.batch_size
            for i in range(0, len(pending), size):
                if stop is not None and stop.is_set():
                    return self.registry.document(doc.id) or doc
                done = self.parse_pages(job_id, pending[i:i + size])
                if progress:
                    progress(done, doc.pages_total)
            return self.finalize(job_id)
        except NotFound:  # deleted meanwhile: nothing left to do
            return doc
        except Exception as exc:  # the document fails; what the store already held stays
            log.exception("ingesting %s failed", doc.filename)
            return self.fail_job(job_id, exc)

    def parse_pages(self, job_id: str, pages: list[int]) -> int:
        """Stage 2: parse some of a job's pages and store their layouts; pages already parsed for the
        job's pipeline are skipped. Returns how many of the document's pages are done."""
        job, doc = self._job(job_id)
        if job.stage not in ("queued", "parsing"):
            return doc.pages_done
        self.registry.advance(job_id, "parsing", from_stages=("queued",))
        pending = set(self.registry.pending_pages(doc.id, job.fingerprint, doc.pages_total))
        todo = [n for n in pages if n in pending]
        if not todo:
            return doc.pages_total - len(pending)
        source = self.pipeline.open(self.original(doc))
        try:
            layouts = self.pipeline.parse_pages(source, doc.id, todo)
            save_figure_crops(self.blob_dir(doc.id), source, layouts, self.settings.render_dpi)
        finally:
            source.close()
        done = self.registry.complete_pages(doc.id, job.fingerprint, [
            Page(page=lay.page, engine=lay.engine, engine_version=lay.engine_version, reason=lay.reason,
                 blocks=len(lay.blocks), error=None, layout=lay.model_dump_json()) for lay in layouts
        ])
        self.registry.heartbeat(job_id)
        return done

    def finalize(self, job_id: str, write_store: bool = True) -> Document:
        """Stage 3: chunk the stored page layouts, embed the chunks and write them to the store; the
        document is then ready. With write_store False (a worker beside an embedded store, which admits
        only its owner process), the embedded chunks are saved for the owner to write (`index_job`)."""
        job, doc = self._job(job_id)
        if job.stage in ("done", "failed", "indexable"):
            return doc
        if self.pipeline.fingerprint != job.fingerprint:
            raise PipelineMismatch("this process's pipeline (engines, chunker, embedder) differs from the one the "
                                   "document was registered with: run every docground process with one configuration")
        layouts = [PageLayout.model_validate_json(raw) for raw in self.registry.page_layouts(doc.id, job.fingerprint)]
        if len(layouts) != doc.pages_total:
            raise RuntimeError(f"{doc.pages_total - len(layouts)} page(s) of {doc.id} are not parsed yet")
        self.registry.advance(job_id, "indexing", from_stages=("queued", "parsing", "indexing"))
        self._save_layouts(doc.id, layouts)
        chunks = self._prepare(doc.kb, doc.id, doc.filename, layouts)
        if not write_store:
            _write_prepared(self.blob_dir(doc.id) / f"chunks-{job.fingerprint}.json", chunks)
            self.registry.advance(job_id, "indexable", from_stages=("indexing",))
            return self.registry.document(doc.id) or doc
        return self._index_and_finish(job, chunks)

    def index_job(self, job_id: str) -> Document:
        """The store owner's part of stage 3: write the chunks a worker embedded, then the document is ready."""
        job, doc = self._job(job_id)
        if job.stage != "indexable":
            return doc
        path = self.blob_dir(doc.id) / f"chunks-{job.fingerprint}.json"
        document = self._index_and_finish(job, _read_prepared(path))
        path.unlink(missing_ok=True)
        return document

    def discard_cut_writes(self) -> int:
        """For the owner of embedded stores, as it starts: the chunks a write cut short (its process killed
        mid-upsert) left of jobs still indexing or indexable, taken out before any query is answered; each such
        job writes them all again when it resumes. Only the owner writes an embedded store, so nothing it finds
        is being written now; a Qdrant server, which any worker writes, is left alone. Returns the jobs seen."""
        if self.settings.qdrant_url:
            return 0
        jobs = self.registry.jobs(("indexing", "indexable"))
        for job in jobs:
            try:
                store = self.store(job.kb)
            except StoreBusy:  # another process owns it: it cleaned it as it started
                continue
            store.delete_version(job.document_id, job.fingerprint)
            store.flush()
        return len(jobs)

    def _index_and_finish(self, job: Job, chunks: list[IndexedChunk]) -> Document:
        count = self._write(job.kb, job.document_id, chunks, job.fingerprint)
        finished = self.registry.advance(job.id, "done", from_stages=("indexing", "indexable"), chunks=count,
                                         fingerprint=job.fingerprint, error=None, error_code=None)
        if not finished and self.registry.document(job.document_id) is None:
            self.store(job.kb).delete_document(job.document_id)  # deleted meanwhile: take its chunks out again
        return self.registry.document(job.document_id) or Document(id=job.document_id, status="failed")

    def fail_job(self, job_id: str, exc: BaseException) -> Document:
        if is_out_of_space(exc):
            exc = NoSpace()
            self.space_reserve.release()  # the room to record this failure (docground/disk_space.py)
        code = exc.code if isinstance(exc, DocgroundError) else "internal_error"
        message = exc.message if isinstance(exc, DocgroundError) else f"{type(exc).__name__}: {exc}"
        self.registry.advance(job_id, "failed", error=message, error_code=code)
        job = self.registry.job(job_id)
        return self.registry.document(job.document_id) if job else Document(id="", status="failed")

    def delete_document(self, doc_id: str) -> None:
        """The document, its chunks, pages, jobs and files; tasks still queued for it find nothing to do."""
        doc = self.registry.document(doc_id)
        if doc is None:
            raise NotFound(f"document {doc_id!r} does not exist")
        self.registry.delete_document(doc_id)
        self.store(doc.kb).delete_document(doc_id)
        self.store(doc.kb).flush()
        shutil.rmtree(self.blob_dir(doc_id), ignore_errors=True)

    def _job(self, job_id: str) -> tuple[Job, Document]:
        job = self.registry.job(job_id)
        doc = self.registry.document(job.document_id) if job else None
        if job is None or doc is None:
            raise NotFound(f"job {job_id!r} or its document no longer exists")
        return job, doc

    def original(self, doc: Document) -> bytes:
        """The file the document's pages are read from: the upload, or the PDF it was converted to."""
        return (self.blob_dir(doc.id) / f"original.{pages_kind(doc.kind)}").read_bytes()

    def _kept_rendition(self, doc_id: str, data: bytes) -> bytes | None:
        """The PDF an earlier registration of the same upload converted it to, if kept: converting once
        keeps the pages (and their count) the same whatever LibreOffice does next time."""
        path = self.blob_dir(doc_id) / "original.pdf"
        return path.read_bytes() if path.is_file() and sniff_kind(data) != "pdf" else None

    def _prepare(self, kb: str, doc_id: str, filename: str, layouts: list[PageLayout]) -> list[IndexedChunk]:
        pipeline = self.pipeline
        chunks = pipeline.chunk(layouts, doc_id)
        vectors = self.embedder.embed([c.embedding_text() for c in chunks])
        return [IndexedChunk(c.id, v.tolist(), sparse.document_vector(c.embedding_text()),
                             _payload(c, kb, filename, pipeline.fingerprint))
                for c, v in zip(chunks, vectors, strict=True)]

    def _write(self, kb: str, doc_id: str, chunks: list[IndexedChunk], fingerprint: str) -> int:
        store = self.store(kb)
        try:
            store.upsert(chunks)
        except NoSpace:  # refused before writing anything: a delete now could be what fills the disk
            raise
        except Exception:  # cut short: the chunks written so far must not answer queries
            store.delete_version(doc_id, fingerprint)
            raise
        store.delete_stale(doc_id, fingerprint)
        store.flush()
        return len(chunks)

    def _save_blob(self, doc_id: str, name: str, data: bytes) -> None:
        folder = self.blob_dir(doc_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        if not path.exists():  # first writer wins; a partial file never takes the name (one per writer)
            _write_whole(path, data, folder / f"{name}.{os.getpid()}.{threading.get_ident()}.part")

    def _save_layouts(self, doc_id: str, layouts: list[PageLayout]) -> None:
        path = self.blob_dir(doc_id) / "layouts.json"
        _write_whole(path, json.dumps([lay.model_dump(mode="json") for lay in layouts]).encode(),
                     path.with_suffix(".part"))


def _payload(chunk: Chunk, kb: str, filename: str, fingerprint: str) -> dict:
    return {
        "document_id": chunk.document_id, "kb": kb, "filename": filename, "index": chunk.index, "text": chunk.text,
        "headings": chunk.headings, "pages": chunk.pages, "fingerprint": fingerprint,
        "spans": [s.model_dump(mode="json") for s in chunk.spans],
        "page_sizes": [p.model_dump(mode="json") for p in chunk.page_sizes],
    }


def _write_prepared(path: Path, chunks: list[IndexedChunk]) -> None:
    """Embedded chunks for the store owner; float32 vectors travel as base64, bit for bit."""
    rows = [{"id": c.id, "dense": base64.b64encode(np.asarray(c.dense, dtype=np.float32).tobytes()).decode(),
             "sparse": [list(c.sparse[0]), list(c.sparse[1])], "payload": c.payload} for c in chunks]
    _write_whole(path, json.dumps(rows).encode(), path.with_suffix(".part"))


def _write_whole(path: Path, data: bytes, part: Path) -> None:
    """`path` holds all of `data` or is left as it was: a write cut short (a full disk) leaves no partial file."""
    try:
        part.write_bytes(data)
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)


def _read_prepared(path: Path) -> list[IndexedChunk]:
    rows = json.loads(path.read_text())
    return [IndexedChunk(r["id"], np.frombuffer(base64.b64decode(r["dense"]), dtype=np.float32).tolist(),
                         (r["sparse"][0], r["sparse"][1]), r["payload"]) for r in rows]


def _result(doc: Document) -> IngestResult:
    return IngestResult(filename=doc.filename, document_id=doc.id, pages=doc.pages_total, chunks=doc.chunks,
                        status=doc.status, error=doc.error, error_code=doc.error_code)
