"""The service the CLI and the HTTP API share: ingest bytes into a knowledge base, answer queries."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from .api.models import IngestResult, QueryResponse
from .errors import DocgroundError, NotFound
from .ingest.chunking import ChunkerConfig
from .ingest.pipeline import Pipeline, ProgressCallback, document_id, file_sha256
from .ingest.engines.factory import build_router
from .ingest.routing import Router
from .ingest.schema import Chunk, PageLayout
from .registry import Document, Page, Registry, validate_kb_name
from .retrieval import sparse
from .retrieval.answers import extractive_answer
from .retrieval.embeddings import Embedder
from .retrieval.store import ChunkStore, EdgeStore, IndexedChunk, ServerStore, collection_name
from .settings import Settings

log = logging.getLogger("docground")


class StoreBusy(DocgroundError):
    code = "store_busy"
    http_status = 409


class Docground:
    def __init__(self, settings: Settings, router: Router | None = None):
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.registry = Registry(settings.sqlalchemy_url)
        self.router = router or build_router(settings)
        self._embedder: Embedder | None = None
        self._pipeline: Pipeline | None = None
        self._stores: dict[str, ChunkStore] = {}
        self._qdrant_client = None
        self._lock = threading.RLock()

    # ---- components, built on first use (the embedder takes seconds to load)
    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                s = self.settings
                self._embedder = Embedder(s.embedding_model, s.embedding_batch_size, s.embedding_threads)
            return self._embedder

    @property
    def pipeline(self) -> Pipeline:
        with self._lock:
            if self._pipeline is None:
                s, e = self.settings, self.embedder
                config = ChunkerConfig(max_tokens=s.chunk_tokens or e.default_chunk_tokens(),
                                       overlap_tokens=s.chunk_overlap_tokens)
                self._pipeline = Pipeline(self.router, e.count_tokens, config, e.name, s.max_pages, s.page_batch_size)
            return self._pipeline

    def store(self, kb: str) -> ChunkStore:
        with self._lock:
            if kb not in self._stores:
                self._stores[kb] = self._open_store(kb)
            return self._stores[kb]

    def _open_store(self, kb: str) -> ChunkStore:
        dim = self.embedder.dimension
        if self.settings.qdrant_url:
            if self._qdrant_client is None:
                from qdrant_client import QdrantClient

                self._qdrant_client = QdrantClient(url=self.settings.qdrant_url, api_key=self.settings.qdrant_api_key)
            return ServerStore(self._qdrant_client, collection_name(kb), dim)
        path = self.settings.kb_dir(kb) / "qdrant"
        try:
            return EdgeStore(path, dim)
        except Exception as exc:
            if "WouldBlock" in str(exc) or "lock" in str(exc).lower():
                raise StoreBusy(
                    f"knowledge base {kb!r} is open in another docground process (an embedded store admits one "
                    "process): use that process's API, stop it, or configure a Qdrant server (DOCGROUND_QDRANT_URL)"
                ) from exc
            raise

    def blob_dir(self, doc_id: str) -> Path:
        return self.settings.home / "blobs" / doc_id

    # ---- ingestion
    def ingest(self, kb: str, filename: str, data: bytes, progress: ProgressCallback | None = None) -> IngestResult:
        validate_kb_name(kb)
        sha = file_sha256(data)
        doc_id = document_id(kb, sha)
        try:
            pipeline = self.pipeline
            existing = self.registry.document(doc_id)
            if existing and existing.status == "ready" and existing.fingerprint == pipeline.fingerprint:
                return _result(existing)
            source = pipeline.open(data)
        except DocgroundError as exc:
            return IngestResult(filename=filename, document_id=None, status="failed", error=exc.message,
                                error_code=exc.code)
        self.registry.ensure_kb(kb)
        self._save_original(doc_id, source.kind, data)
        self.registry.upsert_document(Document(
            id=doc_id, kb=kb, filename=filename, sha256=sha, kind=source.kind, size_bytes=len(data),
            status="processing", pages_total=source.page_count, pages_done=0, chunks=0, error=None, error_code=None,
        ))
        try:
            layouts = pipeline.parse_pages(source, doc_id, progress=self._page_progress(doc_id, progress))
            count = self.index(kb, doc_id, filename, layouts)
        except Exception as exc:  # the document fails; what the store already held stays
            log.exception("ingesting %s failed", filename)
            code = exc.code if isinstance(exc, DocgroundError) else "internal_error"
            message = exc.message if isinstance(exc, DocgroundError) else f"{type(exc).__name__}: {exc}"
            doc = self.registry.update_document(doc_id, status="failed", error=message, error_code=code)
            return _result(doc)
        finally:
            source.close()
        return _result(self.registry.update_document(
            doc_id, status="ready", chunks=count, fingerprint=pipeline.fingerprint, error=None, error_code=None))

    def index(self, kb: str, doc_id: str, filename: str, layouts: list[PageLayout]) -> int:
        """Chunk, embed and store a document's layouts; stale chunks of an older pipeline go last."""
        pipeline = self.pipeline
        chunks = pipeline.chunk(layouts, doc_id)
        self._save_layouts(doc_id, layouts)
        self.registry.save_pages([
            Page(document_id=doc_id, page=lay.page, status="done", engine=lay.engine, engine_version=lay.engine_version,
                 reason=lay.reason, blocks=len(lay.blocks)) for lay in layouts
        ])
        vectors = self.embedder.embed([c.embedding_text() for c in chunks])
        store = self.store(kb)
        store.upsert([
            IndexedChunk(c.id, v.tolist(), sparse.document_vector(c.embedding_text()), _payload(c, kb, filename,
                                                                                                pipeline.fingerprint))
            for c, v in zip(chunks, vectors, strict=True)
        ])
        store.delete_stale(doc_id, pipeline.fingerprint)
        store.flush()
        return len(chunks)

    def _page_progress(self, doc_id: str, progress: ProgressCallback | None) -> ProgressCallback:
        def report(done: int, total: int) -> None:
            if done == total or done % 8 == 0:
                self.registry.update_document(doc_id, pages_done=done)
            if progress:
                progress(done, total)

        return report

    def _save_original(self, doc_id: str, kind: str, data: bytes) -> None:
        folder = self.blob_dir(doc_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"original.{kind}"
        if not path.exists():
            tmp = path.with_suffix(".part")
            tmp.write_bytes(data)
            tmp.replace(path)

    def _save_layouts(self, doc_id: str, layouts: list[PageLayout]) -> None:
        path = self.blob_dir(doc_id) / "layouts.json"
        tmp = path.with_suffix(".part")
        tmp.write_text(json.dumps([lay.model_dump(mode="json") for lay in layouts]))
        tmp.replace(path)

    # ---- retrieval
    def query(self, kb: str, question: str, top_k: int = 5) -> QueryResponse:
        validate_kb_name(kb)
        if self.registry.get_kb(kb) is None:
            raise NotFound(f"knowledge base {kb!r} does not exist")
        dense = self.embedder.embed([question])[0]
        hits = self.store(kb).search(dense, sparse.query_vector(question), top_k)
        return extractive_answer(question, hits)

    def close(self) -> None:
        with self._lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()


def _payload(chunk: Chunk, kb: str, filename: str, fingerprint: str) -> dict:
    return {
        "document_id": chunk.document_id, "kb": kb, "filename": filename, "index": chunk.index, "text": chunk.text,
        "headings": chunk.headings, "pages": chunk.pages, "fingerprint": fingerprint,
        "spans": [s.model_dump(mode="json") for s in chunk.spans],
        "page_sizes": [p.model_dump(mode="json") for p in chunk.page_sizes],
    }


def _result(doc: Document) -> IngestResult:
    return IngestResult(filename=doc.filename, document_id=doc.id, pages=doc.pages_total, chunks=doc.chunks,
                        status=doc.status, error=doc.error, error_code=doc.error_code)
