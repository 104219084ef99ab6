"""bytes → pages → layouts → chunks: the ingestion stages, callable one page at a time or whole."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

from docground.errors import NoReadablePages

from .chunking import Chunker, ChunkerConfig, TokenCounter, fingerprint
from .processors import across_pages
from .providers import PageLimits, Source, open_source
from .routing import Router
from .schema import Chunk, PageLayout, PageOutcome

PARSER_VERSION = "6"

ProgressCallback = Callable[[int, int], None]


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def document_id(kb: str, sha256: str) -> str:
    """A document's id: its content within its knowledge base."""
    return hashlib.sha256(f"{kb}\x00{sha256}".encode()).hexdigest()[:32]


def require_readable(layouts: list[PageLayout]) -> None:
    """A document none of whose pages could be read (every page refused) is an error, not an empty result."""
    if layouts and all(lay.outcome is PageOutcome.SKIPPED for lay in layouts):
        first = min(layouts, key=lambda lay: lay.page)
        raise NoReadablePages(f"no page could be read; page {first.page}: {first.reason}")


class PageParser:
    """bytes → pages → layouts through the router: what ingestion and `docground convert` share."""

    def __init__(self, router: Router, limits: PageLimits | None = None, batch_size: int = 0):
        self.router = router
        self.batch_size = batch_size or router.pages_at_once
        self.limits = limits or PageLimits()
        self.engine_versions = ",".join([f"{e.name}:{e.version}" for e in router.engines]
                                        + ([router.policy] if router.policy else []))

    def open(self, data: bytes, rendition: bytes | None = None) -> Source:
        """The document's pages within the limits: a DocgroundError for a file they refuse whole; pages
        the guard refuses are parsed as skipped, with the reason (providers/guard.py). An Office, web or
        text document is converted to PDF unless the PDF of its first conversion is given."""
        return open_source(data, self.limits, rendition)

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


class Pipeline(PageParser):
    def __init__(self, router: Router, count_tokens: TokenCounter, chunker: ChunkerConfig, embedder_name: str,
                 limits: PageLimits | None = None, batch_size: int = 0):
        super().__init__(router, limits, batch_size)
        self.chunker = Chunker(chunker, count_tokens)
        self.fingerprint = fingerprint(PARSER_VERSION, self.engine_versions, chunker.max_tokens, chunker.overlap_tokens,
                                       chunker.min_tokens, embedder_name)

    def chunk(self, layouts: list[PageLayout], doc_id: str) -> list[Chunk]:
        layouts = sorted(layouts, key=lambda lay: lay.page)
        require_readable(layouts)
        across_pages(layouts)
        return self.chunker.chunk(layouts, doc_id, self.fingerprint)
