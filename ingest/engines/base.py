from __future__ import annotations

from typing import Protocol

from ..providers import SourcePage
from ..schema import PageLayout


def block_id(document_id: str, page: int, index: int) -> str:
    """Stable within a document: the document's content id, the page and the block's place in reading order."""
    return f"{document_id}-p{page}-b{index}"


class PageEngine(Protocol):
    name: str
    version: str
    pages_at_once: int  # how many pages the engine wants per call: enough to keep its workers or GPU busy

    def parse(self, page: SourcePage, document_id: str) -> PageLayout: ...


def parse_many(engine: PageEngine, pages: list[SourcePage], document_id: str) -> list[PageLayout]:
    """Engines that batch (a GPU engine keeps every page in flight) define parse_many themselves."""
    batch = getattr(engine, "parse_many", None)
    if batch is not None:
        return batch(pages, document_id)
    return [engine.parse(p, document_id) for p in pages]
