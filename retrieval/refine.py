"""Fine citation boxes: the quote's own characters on the page, not every whole line its spans touch.

A chunk's spans are line boxes (text layer, OCR lines) or block boxes (engines without line boxes, such
as DeepSeek-OCR-2). Where the original PDF has a text layer, the span's text is aligned character by
character with the text layer's characters inside the span's box, and the quote becomes one rectangle
per visual line it covers: a quote that starts mid-line starts where its first word starts, and a
DeepSeek block box shrinks to the lines the quote is on. Where there is no text layer (scans, images)
or the alignment is poor (a noisy OCR layer), the span's own box stands: never something wrong.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np
import pymupdf

from docground.ingest.engines.textlayer import FLAGS
from docground.ingest.geometry import displayed_boxes, union
from docground.ingest.schema import BBox

# Share of the quote's characters the text layer must confirm before its boxes replace the span's.
MIN_CONFIRMED = 0.8
# A confirmed stretch may hold this much more text-layer text than the quote (hyphens, table pipes).
MAX_STRETCH = 1.5
# Matches shorter than this are coincidences ("e", "th"), not alignment.
MIN_MATCH_CHARS = 3
# A character belongs to a span when its centre lies in the span's box grown by this share of its height.
GROW_Y = 0.25
GROW_X = 0.004
PAGES_CACHED = 48
MARKUP = frozenset("|#*_`$")
DOCUMENTS_OPEN = 8


@dataclass
class PageChars:
    """A page's text-layer characters in the one coordinate form, in extraction order."""

    chars: list[str]  # casefolded, whitespace removed
    boxes: np.ndarray  # (n, 4) normalized boxes
    lines: np.ndarray  # (n,) the text-layer line each character sits on

    @property
    def centers(self) -> tuple[np.ndarray, np.ndarray]:
        return (self.boxes[:, 0] + self.boxes[:, 2]) / 2, (self.boxes[:, 1] + self.boxes[:, 3]) / 2


def _fold(ch: str) -> str:
    folded = ch.casefold()
    return folded if len(folded) == 1 else ch


def page_chars(page: pymupdf.Page) -> PageChars:
    """Every visible character with its box; the boxes are mapped to the displayed page all at once (a
    Rect per character in Python took ~20 ms for a page of 2,000 characters, the array ~2 ms)."""
    chars: list[str] = []
    raw: list[tuple[float, float, float, float]] = []
    lines: list[int] = []
    line_no = 0
    for block in page.get_text("rawdict", flags=FLAGS)["blocks"]:
        for line in block.get("lines", ()):
            line_no += 1
            for span in line["spans"]:
                for c in span["chars"]:
                    if not c["c"].isspace():
                        chars.append(_fold(c["c"]))
                        raw.append(c["bbox"])
                        lines.append(line_no)
    boxes = displayed_boxes(np.asarray(raw, dtype=np.float64).reshape(-1, 4), tuple(page.rotation_matrix),
                            float(page.rect.width), float(page.rect.height))
    keep = boxes[:, 2] > boxes[:, 0]  # a character with no width is no place to point at
    return PageChars([c for c, k in zip(chars, keep, strict=True) if k], boxes[keep],
                     np.asarray(lines, dtype=np.int64)[keep])


class TextLayer:
    """Text-layer characters of stored originals, page by page, cached (MuPDF objects are not thread-safe)."""

    def __init__(self, blob_root: Path):
        self.blob_root = blob_root
        self._lock = threading.Lock()
        self._docs: OrderedDict[str, pymupdf.Document | None] = OrderedDict()
        self._pages: OrderedDict[tuple[str, int], PageChars | None] = OrderedDict()

    def page(self, document_id: str, page: int) -> PageChars | None:
        key = (document_id, page)
        with self._lock:
            if key in self._pages:
                self._pages.move_to_end(key)
                return self._pages[key]
            doc = self._document(document_id)
            chars = page_chars(doc[page - 1]) if doc is not None and 0 < page <= doc.page_count else None
            self._pages[key] = chars if chars is None or chars.chars else None
            if len(self._pages) > PAGES_CACHED:
                self._pages.popitem(last=False)
            return self._pages[key]

    def _document(self, document_id: str) -> pymupdf.Document | None:
        if document_id in self._docs:
            self._docs.move_to_end(document_id)
            return self._docs[document_id]
        path = self.blob_root / document_id / "original.pdf"
        doc = None
        if "/" not in document_id and path.is_file():
            try:
                doc = pymupdf.open(path)
            except (RuntimeError, ValueError):  # a damaged original keeps its span boxes
                doc = None
        self._docs[document_id] = doc
        if len(self._docs) > DOCUMENTS_OPEN:
            _, old = self._docs.popitem(last=False)
            if old is not None:
                old.close()
        return doc

    def close(self) -> None:
        with self._lock:
            for doc in self._docs.values():
                if doc is not None:
                    doc.close()
            self._docs.clear()
            self._pages.clear()


def _grown(box: BBox) -> BBox:
    dy = GROW_Y * (box[3] - box[1])
    return (box[0] - GROW_X, box[1] - dy, box[2] + GROW_X, box[3] + dy)


def _nonspace(text: str) -> tuple[str, list[int]]:
    """The text without whitespace or markdown syntax (a page shows neither), casefolded, and where each
    kept character sat in the text."""
    kept = [(i, _fold(ch)) for i, ch in enumerate(text) if not ch.isspace() and ch not in MARKUP]
    return "".join(c for _, c in kept), [i for i, _ in kept]


def snap(span_text: str, span_box: BBox, lo: int, hi: int, page: PageChars) -> list[BBox] | None:
    """Boxes of span_text[lo:hi] on the page, one per text-layer line, or None when the text layer cannot
    confirm them (no characters in the box, or too few of the quote's characters found in order)."""
    x0, y0, x1, y1 = _grown(span_box)
    cx, cy = page.centers
    inside = np.nonzero((cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1))[0]
    if inside.size == 0:
        return None
    layer = "".join(page.chars[i] for i in inside)
    text, where = _nonspace(span_text)
    wanted = [k for k, pos in enumerate(where) if lo <= pos < hi]
    if not wanted:
        return None
    to_layer: dict[int, int] = {}
    for a, b, size in SequenceMatcher(None, text, layer, autojunk=False).get_matching_blocks():
        if size >= MIN_MATCH_CHARS:
            to_layer.update((a + k, b + k) for k in range(size))
    found = [to_layer[k] for k in wanted if k in to_layer]
    if len(found) < MIN_CONFIRMED * len(wanted):
        return None
    first, last = min(found), max(found)
    if last - first + 1 > MAX_STRETCH * len(wanted) + 2:
        return None
    chosen = inside[first:last + 1]
    boxes: list[BBox] = []
    for line in dict.fromkeys(page.lines[chosen].tolist()):
        members = chosen[page.lines[chosen] == line]
        boxes.append(tuple(round(float(v), 6) for v in union(map(tuple, page.boxes[members]))))
    return boxes


def covered_spans(payload: dict, start: int, end: int) -> Iterator[tuple[dict, int, int]]:
    """The spans chunk text [start, end) covers, each with the covered stretch [lo, hi): a span counts only
    if the range covers real text of it, not just the separator next to it."""
    text = payload.get("text", "")
    for span in payload.get("spans", []):
        lo, hi = max(start, span["char_start"]), min(end, span["char_end"])
        if hi > lo and text[lo:hi].strip():
            yield span, lo, hi


def quote_boxes(payload: dict, start: int, end: int, layer: TextLayer | None = None) -> dict[int, list[BBox]]:
    """Boxes of chunk text [start, end), page by page: snapped to the text layer where it confirms the
    quote, else the boxes of the spans the range covers."""
    text = payload.get("text", "")
    doc_id = payload.get("document_id", "")
    pages: dict[int, list[BBox]] = {}
    for span, lo, hi in covered_spans(payload, start, end):
        cs, ce = span["char_start"], span["char_end"]
        box = tuple(span["bbox"])
        chars = layer.page(doc_id, span["page"]) if layer is not None else None
        fine = snap(text[cs:ce], box, lo - cs, hi - cs, chars) if chars is not None else None
        out = pages.setdefault(span["page"], [])
        for b in fine or [box]:
            if b not in out:
                out.append(b)
    return pages
