"""Answers from a knowledge base: retrieval, extractive or generated answers, streams."""

from __future__ import annotations

from collections.abc import Iterator

from .components import Components
from .errors import NotFound
from .registry import validate_kb_name
from .retrieval import selection, sparse
from .retrieval.answers import extractive_answer
from .retrieval.lexical import query_language
from .retrieval.schema import QueryResponse
from .retrieval.store import Hit


class Querying(Components):
    def retrieve(self, kb: str, question: str, top_k: int = 5) -> list[Hit]:
        validate_kb_name(kb)
        if self.registry.get_kb(kb) is None:
            raise NotFound(f"knowledge base {kb!r} does not exist")
        dense = self.embedder.embed_query(question)
        weight = self.embedder.dense_weight(query_language(question))
        return self.store(kb).search(dense, sparse.query_vector(question), top_k, dense_weight=weight)

    def query(self, kb: str, question: str, top_k: int = 5, mode: str = "auto") -> QueryResponse:
        generator = self.generator(mode)
        if generator is None:
            return self._extractive(kb, question, top_k)
        return generator.answer(question, self.retrieve(kb, question, top_k))

    def _extractive(self, kb: str, question: str, top_k: int) -> QueryResponse:
        # a deeper list than asked for: the answer stage reranks it by the units that answer
        hits = self.retrieve(kb, question, max(top_k, selection.RERANK_DEPTH))
        return extractive_answer(question, hits, self.text_layer, top_k=top_k)

    def query_stream(self, kb: str, question: str, top_k: int = 5, mode: str = "auto") -> Iterator[tuple[str, dict]]:
        """Server-sent events of an answer: ("delta", {"text"}) while generating, then ("done", response)."""
        generator = self.generator(mode)
        if generator is None:
            return iter([("done", self._extractive(kb, question, top_k).model_dump(mode="json"))])
        return generator.stream(question, self.retrieve(kb, question, top_k))

    def optimize(self, kb: str) -> bool:
        """Index the knowledge base's vectors for fast search (embedded store; a server does this itself).
        Blocks this process for seconds to minutes on large stores, queries included: call it where no
        queries are served (the CLI's ingest ends with it; `docground optimize` runs it on demand)."""
        validate_kb_name(kb)
        if self.registry.get_kb(kb) is None:
            raise NotFound(f"knowledge base {kb!r} does not exist")
        return self.store(kb).optimize()
