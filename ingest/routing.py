"""Which engine reads each page, and why: every page records both."""

from __future__ import annotations

from dataclasses import dataclass

from .engines.base import PageEngine, parse_many
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
        return self.parse_many([page], document_id)[0]

    def parse_many(self, pages: list[SourcePage], document_id: str) -> list[PageLayout]:
        """Pages grouped by engine, so that a batching engine sees all of its pages at once."""
        routes = [self.route(p) for p in pages]
        out: dict[int, PageLayout] = {}
        for engine in {id(r.engine): r.engine for r in routes}.values():
            mine = [(p, r) for p, r in zip(pages, routes, strict=True) if r.engine is engine]
            if engine is None:
                layouts = [PageLayout(page=p.number, width_pt=p.width_pt, height_pt=p.height_pt, engine="none",
                                      engine_version="0") for p, _ in mine]
            else:
                layouts = parse_many(engine, [p for p, _ in mine], document_id)
            for (p, r), layout in zip(mine, layouts, strict=True):
                # The route says why this engine; the engine may add what happened (a retry, a fallback).
                if layout.reason and layout.reason != r.reason:
                    layout.reason = f"{r.reason}; {layout.reason}"
                else:
                    layout.reason = r.reason
                out[p.number] = layout
        return [out[p.number] for p in pages]
