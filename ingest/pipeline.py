"""bytes → pages → layouts → chunks: the ingestion stages, callable one page at a time or whole."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

from docground.errors import TooManyPages

from .chunking import Chunker, ChunkerConfig, TokenCounter, fingerprint
from .processors.furniture import mark_furniture
from .providers import Source, open_source
from .routing import Router
from .schema import Chunk, PageLayout

PARSER_VERSION = "1"

ProgressCallback = Callable[[int, int], None]


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def document_id(kb: str, sha256: str) -> str:
    """A document's id: its content within its knowledge base."""
    return hashlib.sha256(f"{kb}\x00{sha256}".encode()).hexdigest()[:32]


class Pipeline:
    def __init__(self, router: Router, count_tokens: TokenCounter, chunker: ChunkerConfig, embedder_name: str,
                 max_pages: int = 5000, batch_size: int = 0):
        self.router = router
        self.batch_size = batch_size or router.pages_at_once
        self.chunker = Chunker(chunker, count_tokens)
        self.max_pages = max_pages
        engines = ",".join(f"{e.name}:{e.version}" for e in router.engines)
        self.fingerprint = fingerprint(PARSER_VERSION, engines, chunker.max_tokens, chunker.overlap_tokens,
                                       chunker.min_tokens, embedder_name)

    def open(self, data: bytes) -> Source:
        source = open_source(data)
        if source.page_count > self.max_pages:
            source.close()
            raise TooManyPages(f"the document has {source.page_count} pages; the limit is {self.max_pages}")
        return source

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
        mark_furniture(layouts)
        return self.chunker.chunk(layouts, doc_id, self.fingerprint)
