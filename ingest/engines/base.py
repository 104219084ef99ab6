from __future__ import annotations

from abc import ABC, abstractmethod

from ..providers import SourcePage
from ..schema import PageLayout


def block_id(document_id: str, page: int, index: int) -> str:
    """Stable within a document: the document's content id, the page and the block's place in reading order."""
    return f"{document_id}-p{page}-b{index}"


class PageEngine(ABC):
    """What the router, the workers and the tasks need of a page engine: its name and version (part of
    every page's record and of the pipeline fingerprint), how many pages it wants per call (enough to keep
    its workers or GPU busy), the queue its pages go to, and a warm-up before the first page."""

    name: str
    version: str
    pages_at_once: int = 16
    queue: str = "cpu"  # "gpu": its pages go to the GPU workers
    reads_structure: bool = False  # a vision model that gives layout, tables and formulas (DOCGROUND_VLM_PAGES)

    @abstractmethod
    def parse_many(self, pages: list[SourcePage], document_id: str) -> list[PageLayout]:
        """One layout per page, in order."""

    def parse(self, page: SourcePage, document_id: str) -> PageLayout:
        return self.parse_many([page], document_id)[0]

    def warm_up(self) -> None:
        """Load what the first page would (models, workers); engines with nothing to load do nothing."""
