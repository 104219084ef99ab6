"""An ingested document's layouts, chunks and figure crops, as stored (rendered by ingest/renderers.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .components import Components
from .errors import DocumentNotReady, NotFound, PipelineMismatch
from .ingest.processors.figures import figure_path
from .ingest.processors.furniture import mark_furniture
from .ingest.schema import Chunk, PageLayout
from .registry import Document


class Export(Components):
    def ready_document(self, doc_id: str) -> Document:
        doc = self.registry.document(doc_id)
        if doc is None:
            raise NotFound(f"document {doc_id!r} does not exist")
        if doc.status != "ready":
            raise DocumentNotReady(f"document {doc_id!r} is {doc.status}: its content exists once it is ready")
        return doc

    def document_layouts(self, doc_id: str) -> list[PageLayout]:
        """The layouts the document's chunks were made from, furniture marked as chunking marks it."""
        layouts = self._stored_layouts(self.ready_document(doc_id))
        mark_furniture(layouts)
        return layouts

    def document_chunks(self, doc_id: str) -> list[Chunk]:
        """The document's chunks as the store holds them: chunking is deterministic, so the stored
        layouts chunked by the pipeline that indexed them give the same chunks, ids and spans."""
        doc = self.ready_document(doc_id)
        if doc.fingerprint != self.pipeline.fingerprint:
            raise PipelineMismatch(f"document {doc_id!r} was indexed by another pipeline configuration (engines, "
                                   "chunker, embedder): re-ingest it with this one to read its chunks")
        chunks = self.pipeline.chunk(self._stored_layouts(doc), doc.id)
        if len(chunks) != self.store(doc.kb).count(doc.id):
            raise PipelineMismatch(f"document {doc_id!r}: the store holds other chunks than its layouts give; "
                                   "re-ingest it")
        return chunks

    def figure_file(self, doc_id: str, block_id: str) -> Path | None:
        """The crop of one of the document's figures, where there is one."""
        if not re.fullmatch(rf"{re.escape(doc_id)}-p\d+-b\d+", block_id):
            return None
        path = figure_path(self.blob_dir(doc_id), block_id)
        return path if path.is_file() else None

    def _stored_layouts(self, doc: Document) -> list[PageLayout]:
        path = self.blob_dir(doc.id) / "layouts.json"
        if not path.is_file():
            raise DocumentNotReady(f"document {doc.id!r} has no stored layouts; re-ingest it")
        return [PageLayout.model_validate(raw) for raw in json.loads(path.read_text())]
