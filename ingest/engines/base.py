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

    def parse(self, page: SourcePage, document_id: str) -> PageLayout: ...
