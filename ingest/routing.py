"""Which engine reads each page, and why: every page records both.

The text layer when it is present and sane; OCR when the page is an image, or its text layer is empty,
garbled (glyphs without a Unicode mapping, private-use codes, `(cid:N)` runs, symbol soup from a broken
font encoding) or covers only part of the visible text (a page of little text whose images or vector
glyph outlines hold the rest). The OCR engine is what the factory built: DeepSeek-OCR-2 when configured,
else the CPU engine.

The check must stay cheap on born-digital pages (ingest speed is benchmarked against pymupdf4llm): it reads
the plain text once and the page's image list (a resource lookup); images are placed and drawings counted
only on pages with little text. Nothing is rendered.

With a vision model that reads structure configured (DeepSeek-OCR-2), DOCGROUND_VLM_PAGES says which
born-digital pages it also gets: `needed` none (only pages without a usable text layer), `complex` those whose
structure the text layer cannot give (ingest/page_structure.py: tables without rules, formulas, multi-column
pages with figures, forms), `all` every page. The model's output on such a page is held to its text layer
(engines/textlayer_check.py): it gives the structure, the text layer the characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import pymupdf

from .engines.base import PageEngine
from .engines.textlayer import TextLayerEngine
from .engines.textlayer_check import hold_to_text_layer
from .geometry import area, normalize, union
from .page_structure import complex_structure
from .providers import SourcePage
from .providers.pdf import PdfPage
from .schema import PageLayout, PageOutcome

MIN_TEXT_CHARS = 16
# Share of non-space characters that may be unreadable before the text layer counts as garbled.
MAX_UNREADABLE_SHARE = 0.1
# Below this share of letters and digits, the text is symbol soup (a font whose encoding maps glyphs to
# the wrong codes); judged only on pages with enough text to tell.
MIN_ALNUM_SHARE = 0.4
MIN_CHARS_TO_JUDGE = 50
# Pages with less text than this are checked for text the layer does not hold.
SPARSE_TEXT_CHARS = 400
# Images covering this much of a sparse page probably hold its text (a screenshot, a pasted scan).
MIN_IMAGE_SHARE = 0.2
# A sparse page with this many glyph-sized vector paths has text drawn as curves.
MIN_GLYPH_PATHS = 300
MAX_GLYPH_SIDE = 0.04  # of the page's longer side
# Why a page whose text layer holds some of its text goes to OCR: the reading keeps the layer's own text.
PARTIAL = "text layer covers part of the page"

_CID = re.compile(r"\(cid:\d+\)")
_UNREADABLE = re.compile("[\ufffd\ue000-\uf8ff\U000f0000-\U0010ffff\x00-\x08\x0e-\x1f\x7f-\x9f]")


VlmPages = Literal["needed", "complex", "all"]
VLM_PAGES: tuple[VlmPages, ...] = ("needed", "complex", "all")


@dataclass
class Route:
    engine: PageEngine | None
    reason: str
    outcome: PageOutcome = PageOutcome.READ  # for a route to no engine: skipped or unread
    refusal: str | None = None
    layer_checked: bool = False  # a born-digital page sent to the vision model: its text layer vouches
    # A page whose text layer holds part of its text (the rest in images or drawn as curves): where the layer
    # has text, the reading takes the layer's; elsewhere the engine's reading stands.
    layer_partial: bool = False


def unreadable_share(text: str) -> float:
    """Share of non-space characters no one can read: U+FFFD, private-use codes, controls, `(cid:N)` runs."""
    total = _non_space(text)
    if total == 0:
        return 0.0
    bad = sum(len(m) for m in _CID.findall(text)) + len(_UNREADABLE.findall(_CID.sub("", text)))
    return bad / total


def alnum_share(text: str) -> float:
    total = _non_space(text)
    return sum(map(str.isalnum, text)) / total if total else 0.0


def _non_space(text: str) -> int:
    return len(text) - sum(map(str.isspace, text))


def text_layer_problem(pdf_page: pymupdf.Page) -> str | None:
    """Why this page's text layer cannot be trusted to hold its text; None when it can."""
    text = pdf_page.get_text("text")
    chars = len(text.strip())
    if chars == 0:
        return "no text layer"
    if chars < MIN_TEXT_CHARS:
        return f"text layer nearly empty ({chars} characters)"
    bad = unreadable_share(text)
    if bad > MAX_UNREADABLE_SHARE:
        return f"text layer garbled ({bad:.0%} unmapped or private-use glyphs)"
    if chars >= MIN_CHARS_TO_JUDGE and (share := alnum_share(text)) < MIN_ALNUM_SHARE:
        return f"text layer garbled (only {share:.0%} letters or digits)"
    if chars < SPARSE_TEXT_CHARS:
        return _hidden_text(pdf_page, chars)
    return None


def _hidden_text(pdf_page: pymupdf.Page, chars: int) -> str | None:
    """On a page of little text: images or glyph outlines that probably hold the text the layer lacks."""
    w, h = pdf_page.rect.width, pdf_page.rect.height
    if pdf_page.get_images():
        shown = [pymupdf.Rect(info["bbox"]) * pdf_page.rotation_matrix for info in pdf_page.get_image_info()]
        boxes = [normalize(r.x0, r.y0, r.x1, r.y1, w, h) for r in shown]
        share = min(1.0, sum(area(b) for b in boxes), area(union(boxes))) if boxes else 0.0
        if share >= MIN_IMAGE_SHARE:
            return f"{PARTIAL} ({chars} characters; images cover {share:.0%})"
    side = MAX_GLYPH_SIDE * max(w, h)
    glyphs = sum(1 for d in pdf_page.get_cdrawings()
                 if (r := d.get("rect")) is not None and 0 < r[2] - r[0] < side and 0 < r[3] - r[1] < side)
    if glyphs >= MIN_GLYPH_PATHS:
        return f"{PARTIAL} ({chars} characters; {glyphs} glyph-sized vector paths)"
    return None


class Router:
    """Text layer for born-digital pages (or, by DOCGROUND_VLM_PAGES, the vision model held to the text
    layer); everything else goes to the OCR engine, when there is one."""

    def __init__(self, ocr: PageEngine | None = None, vlm_pages: VlmPages = "needed"):
        if vlm_pages not in VLM_PAGES:
            raise ValueError(f"vlm_pages must be one of {', '.join(VLM_PAGES)}; got {vlm_pages!r}")
        self.textlayer = TextLayerEngine()
        self.ocr = ocr
        self.vlm_pages: VlmPages = vlm_pages if ocr is not None and ocr.reads_structure else "needed"

    @property
    def policy(self) -> str:
        """What, beyond the engines, decides which engine reads a page (part of the pipeline fingerprint)."""
        return "" if self.vlm_pages == "needed" else f"vlm_pages={self.vlm_pages}"

    @property
    def engines(self) -> list[PageEngine]:
        return [e for e in (self.textlayer, self.ocr) if e is not None]

    @property
    def pages_at_once(self) -> int:
        return max(e.pages_at_once for e in self.engines)

    def route(self, page: SourcePage) -> Route:
        if page.refused is not None:  # kept from every engine (providers/guard.py)
            refused = page.refused
            return Route(None, f"skipped ({refused.code}): {refused.message}", PageOutcome.SKIPPED, refused.code)
        if not isinstance(page, PdfPage):
            reason = "image page"
        elif (problem := text_layer_problem(page.pdf_page)) is None:
            return self._born_digital(page)
        else:
            reason = problem
        if self.ocr is not None:
            return Route(self.ocr, reason, layer_partial=reason.startswith(PARTIAL))
        if isinstance(page, PdfPage) and reason != "no text layer":
            # Some text beats none: without OCR, even a doubtful text layer is read.
            return Route(self.textlayer, f"{reason}; no OCR engine available, text layer used")
        return Route(None, f"{reason}; no OCR engine available", PageOutcome.UNREAD)

    def _born_digital(self, page: PdfPage) -> Route:
        if self.vlm_pages == "needed":
            return Route(self.textlayer, "text layer")
        checked = "its text layer checks the characters"
        if self.vlm_pages == "all":
            return Route(self.ocr, f"every page to the vision model (DOCGROUND_VLM_PAGES=all); {checked}",
                         layer_checked=True)
        if (why := complex_structure(page.pdf_page)) is None:
            return Route(self.textlayer, "text layer")
        return Route(self.ocr, f"{why}: structure the text layer cannot give; {checked}", layer_checked=True)

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
                                      engine_version="0", outcome=r.outcome, refusal=r.refusal) for p, r in mine]
            else:
                layouts = engine.parse_many([p for p, _ in mine], document_id)
            for (p, r), layout in zip(mine, layouts, strict=True):
                if (r.layer_checked or r.layer_partial) and layout.engine == r.engine.name \
                        and layout.outcome is PageOutcome.READ:
                    layout = hold_to_text_layer(layout, p, document_id, keep_unvouched=r.layer_partial)
                # The route says why this engine; the engine may add what happened (a retry, a fallback).
                if layout.reason and layout.reason != r.reason:
                    layout.reason = f"{r.reason}; {layout.reason}"
                else:
                    layout.reason = r.reason
                out[p.number] = layout
        return [out[p.number] for p in pages]
