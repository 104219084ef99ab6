"""bytes → pages → layouts → chunks: the ingestion stages, callable one page at a time or whole."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

from docground.errors import NoReadablePages

from .chunking import Chunker, ChunkerConfig, TokenCounter, fingerprint
from .processors.furniture import mark_furniture
from .providers import PageLimits, Source, is_skipped, open_source
from .routing import Router
from .schema import Chunk, PageLayout

PARSER_VERSION = "2"

ProgressCallback = Callable[[int, int], None]


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def document_id(kb: str, sha256: str) -> str:
    """A document's id: its content within its knowledge base."""
    return hashlib.sha256(f"{kb}\x00{sha256}".encode()).hexdigest()[:32]


class Pipeline:
    def __init__(self, router: Router, count_tokens: TokenCounter, chunker: ChunkerConfig, embedder_name: str,
                 limits: PageLimits | None = None, batch_size: int = 0):
        self.router = router
        self.batch_size = batch_size or router.pages_at_once
        self.chunker = Chunker(chunker, count_tokens)
        self.limits = limits or PageLimits()
        engines = ",".join(f"{e.name}:{e.version}" for e in router.engines)
        self.fingerprint = fingerprint(PARSER_VERSION, engines, chunker.max_tokens, chunker.overlap_tokens,
                                       chunker.min_tokens, embedder_name)

    def open(self, data: bytes) -> Source:
        """The document's pages within the limits: a DocgroundError for a file they refuse whole; pages
        the guard refuses are parsed as skipped, with the reason (providers/guard.py)."""
        return open_source(data, self.limits)

    def parse_pages(self, source: Source, doc_id: str, pages: Iterable[int] | None = None,
                    progress: ProgressCallback | None = None) -> list[PageLayout]:
        numbers = list(pages) if pages is not None else list(range(1, source.page_count + 1))
        layouts: list[PageLayout] = []
        for i in range(0, len(numbers), self.batch_size):
            batch = [source.page(n) for n in numbers[i:i + self.batch_size]]
            layouts += self.router.parse_many(batch, doc_id)
            if progress:
                progress(len(layouts), len(numbers))
        return layouts

    def chunk(self, layouts: list[PageLayout], doc_id: str) -> list[Chunk]:
        layouts = sorted(layouts, key=lambda lay: lay.page)
        if layouts and all(is_skipped(lay.reason) for lay in layouts):
            raise NoReadablePages(f"no page could be read; page {layouts[0].page}: {layouts[0].reason}")
        mark_furniture(layouts)
        return self.chunker.chunk(layouts, doc_id, self.fingerprint)
