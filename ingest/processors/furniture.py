"""Page furniture: running headers and footers, page numbers and margin stamps stay out of chunks.

Across a document, a short block in the top or bottom band whose text (digits aside) repeats on many
pages is furniture. On any page, a short block alone in the outermost band, above or below all body
text, is furniture too ("Downloaded from ...", "Page 3 of 9"), unless it reads as a footnote (a marker, small
type): footnotes answer questions.
"""

from __future__ import annotations

import re
from collections import Counter

from ..classify import PAGE_NUMBER
from ..schema import FURNITURE, BlockKind, PageLayout

REPEAT_BAND = 0.14
MARGIN_BAND = 0.075
OUTER_LINE_BAND = 0.12  # a lone short line this close to the edge, set apart from the body
SIDE_MARGIN = 0.08
MAX_CHARS = 200


_DIGITS = re.compile(r"\d+")


def _key(text: str) -> str:
    return _DIGITS.sub("#", " ".join(text.lower().split()))[:80]


def _band(bbox) -> str | None:
    if bbox[3] <= REPEAT_BAND:
        return "top"
    if bbox[1] >= 1 - REPEAT_BAND:
        return "bottom"
    return None


def _furniture_kind(band: str) -> BlockKind:
    return BlockKind.page_header if band == "top" else BlockKind.page_footer


def mark_furniture(layouts: list[PageLayout]) -> None:
    _mark_repeated(layouts)
    for layout in layouts:
        _mark_margins(layout)


def _mark_repeated(layouts: list[PageLayout]) -> None:
    if len(layouts) < 3:
        return
    seen: Counter = Counter()
    for layout in layouts:
        keys = {(band, _key(b.markdown)) for b in layout.blocks
                if len(b.markdown) <= MAX_CHARS and (band := _band(b.bbox))}
        seen.update(keys)
    threshold = max(3, int(0.4 * len(layouts)))
    for layout in layouts:
        for b in layout.blocks:
            band = _band(b.bbox)
            if band and b.kind not in FURNITURE and seen[(band, _key(b.markdown))] >= threshold:
                b.kind = _furniture_kind(band)


def _mark_margins(layout: PageLayout) -> None:
    def content():
        return [b for b in layout.blocks if b.kind not in FURNITURE and b.kind != BlockKind.figure]

    if len(content()) < 3:
        return
    # A footnote ("1 The '.m' suffix was chosen ...") sits where footers do, in small type: it is text.
    small = [b for b in content()
             if len(b.markdown) <= MAX_CHARS and len(b.lines) <= 4 and b.kind != BlockKind.footnote]
    # Outermost first, so that a stack of two header lines is peeled one by one.
    for b in sorted((b for b in small if b.bbox[3] <= MARGIN_BAND), key=lambda b: b.bbox[1]):
        if all(o.bbox[1] >= b.bbox[3] - 0.002 for o in content() if o is not b):
            b.kind = BlockKind.page_header
    for b in sorted((b for b in small if b.bbox[1] >= 1 - MARGIN_BAND), key=lambda b: -b.bbox[3]):
        if all(o.bbox[3] <= b.bbox[1] + 0.002 for o in content() if o is not b):
            b.kind = BlockKind.page_footer
    _mark_outermost(layout, content())
    for b in content():
        # Text set sideways in a side margin: "Downloaded from ... on <date>" stamps.
        w, h = b.bbox[2] - b.bbox[0], b.bbox[3] - b.bbox[1]
        if h > 5 * w and (b.bbox[2] <= SIDE_MARGIN or b.bbox[0] >= 1 - SIDE_MARGIN):
            b.kind = BlockKind.page_header


def _mark_outermost(layout: PageLayout, content: list) -> None:
    """The last (first) block of a page is a page number when it is one, wherever the body ends; and a
    single short line near the edge, set apart from the body by a gap, is a footer (header)."""
    if len(content) < 3:
        return
    bottom = max(content, key=lambda b: b.bbox[3])
    top = min(content, key=lambda b: b.bbox[1])
    for b, band in ((bottom, "bottom"), (top, "top")):
        text = b.markdown.lstrip("#").strip()
        others = [o for o in content if o is not b]
        if band == "bottom":
            gap = b.bbox[1] - max(o.bbox[3] for o in others)
            near_edge = b.bbox[1] >= 1 - OUTER_LINE_BAND
        else:
            gap = min(o.bbox[1] for o in others) - b.bbox[3]
            near_edge = b.bbox[3] <= OUTER_LINE_BAND
        if gap < -0.002:
            continue
        if PAGE_NUMBER.match(text):
            b.kind = BlockKind.page_number
        elif b.kind != BlockKind.footnote and near_edge and len(b.lines) <= 1 and len(text) <= 80 and gap >= 0.01:
            b.kind = _furniture_kind(band)
