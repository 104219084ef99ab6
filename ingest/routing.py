"""Which engine reads each page, and why: every page records both."""

from __future__ import annotations

from dataclasses import dataclass

from .engines.base import PageEngine
from .engines.textlayer import TextLayerEngine
from .providers import SourcePage
from .providers.pdf import PdfPage
from .schema import PageLayout

MIN_TEXT_CHARS = 16


@dataclass
class Route:
    engine: PageEngine | None
    reason: str


class Router:
    """Text layer for born-digital pages; pages without one go to the OCR engine, when there is one."""

    def __init__(self, ocr: PageEngine | None = None):
        self.textlayer = TextLayerEngine()
        self.ocr = ocr

    @property
    def engines(self) -> list[PageEngine]:
        return [e for e in (self.textlayer, self.ocr) if e is not None]

    def route(self, page: SourcePage) -> Route:
        if isinstance(page, PdfPage):
            chars = len(page.pdf_page.get_text("text").strip())
            if chars >= MIN_TEXT_CHARS:
                return Route(self.textlayer, "text layer")
            reason = "no text layer" if chars == 0 else f"text layer nearly empty ({chars} characters)"
        else:
            reason = "image page"
        if self.ocr is None:
            return Route(None, f"{reason}; no OCR engine available")
        return Route(self.ocr, reason)

    def parse(self, page: SourcePage, document_id: str) -> PageLayout:
        route = self.route(page)
        if route.engine is None:
            return PageLayout(page=page.number, width_pt=page.width_pt, height_pt=page.height_pt,
                              engine="none", engine_version="0", reason=route.reason)
        layout = route.engine.parse(page, document_id)
        layout.reason = route.reason
        return layout
