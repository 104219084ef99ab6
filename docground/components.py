"""The service's parts, built on first use: registry, router, embedder, pipeline, stores, text layer, LLM."""

from __future__ import annotations

import threading
from pathlib import Path

from docground.errors import LLMNotConfigured, StoreBusy

from .disk_space import SpaceReserve
from .ingest.chunking import ChunkerConfig
from .ingest.engines.factory import build_router
from .ingest.pipeline import Pipeline
from .ingest.providers import PageLimits
from .ingest.routing import Router
from .registry import Registry
from .retrieval import sparse
from .retrieval.embeddings import Embedder
from .retrieval.generation import ChatClient, Generator
from .retrieval.refine import TextLayer
from .retrieval.store import ChunkStore, EdgeStore, ServerStore, collection_name
from .settings import Settings


class Components:
    def __init__(self, settings: Settings, router: Router | None = None):
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.registry = Registry(settings.sqlalchemy_url)
        self.space_reserve = SpaceReserve(settings.home)
        self.router = router or build_router(settings)
        self._embedder: Embedder | None = None
        self._pipeline: Pipeline | None = None
        self._stores: dict[str, ChunkStore] = {}
        self._qdrant_client = None
        self._text_layer: TextLayer | None = None
        self._lock = threading.RLock()

    # ---- components, built on first use (the embedder takes seconds to load)
    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                s = self.settings
                self._embedder = Embedder(s.embedding_model, s.embedding_batch_size, s.embedding_threads,
                                          s.embedding_languages, s.embedding_backend)
            return self._embedder

    @property
    def pipeline(self) -> Pipeline:
        with self._lock:
            if self._pipeline is None:
                s, e = self.settings, self.embedder
                config = ChunkerConfig(max_tokens=s.chunk_tokens or e.default_chunk_tokens(),
                                       overlap_tokens=s.chunk_overlap_tokens)
                self._pipeline = Pipeline(self.router, e.count_tokens, config, f"{e.identity}+sparse{sparse.VERSION}",
                                          PageLimits.from_settings(s),
                                          s.page_batch_size)
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

                # location takes a server URL, or ":memory:" for qdrant-client's local mode (same API).
                self._qdrant_client = QdrantClient(location=self.settings.qdrant_url,
                                                   api_key=self.settings.qdrant_api_key)
            return ServerStore(self._qdrant_client, collection_name(kb), dim, kb=kb)
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

    @property
    def text_layer(self) -> TextLayer:
        with self._lock:
            if self._text_layer is None:
                self._text_layer = TextLayer(self.settings.home / "blobs")
            return self._text_layer

    def generator(self, mode: str = "auto") -> Generator | None:
        """The answer generator the mode asks for: None means extractive answers."""
        s = self.settings
        if mode == "extractive" or (mode == "auto" and not s.llm_endpoint):
            return None
        if not s.llm_endpoint:
            raise LLMNotConfigured("generated answers need an LLM endpoint (DOCGROUND_LLM_ENDPOINT)")
        client = ChatClient(s.llm_endpoint, s.llm_model, s.llm_api_key, s.llm_timeout_s, s.llm_max_tokens)
        return Generator(client, self.text_layer, self.embedder.embed)

    def close(self) -> None:
        with self._lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()
            if self._text_layer is not None:
                self._text_layer.close()
