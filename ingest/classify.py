"""What kind of block a paragraph is, from its text, fonts and place on the page: shared by every engine
that reads lines with sizes (the text layer, OCR)."""

from __future__ import annotations

import re
from collections import Counter

from .builders import BlockDraft, TextLine
from .schema import BlockKind

_CAPTION = re.compile(r"^(figure|fig\.|table|tab\.|chart|exhibit|listing|algorithm|图|表)\s*[\dIVX]", re.I)
LIST_START = re.compile(r"^([•◦▪‣∙·●○■□▶►➢✓✔–—*-]\s|\(?\d{1,3}[.)]\s|\(?[a-z][.)]\s)")
PAGE_NUMBER = re.compile(r"^[-–—(\[]?\s*(page|p\.|seite|página)?\s*([0-9]{1,4}|[ivxlcdm]{1,7})"
                          r"(\s*(of|/|von|de)\s*[0-9]{1,4})?\s*[-–—)\]]?$", re.I)
SENTENCE_END = re.compile(r"[.:;!?。！？]$")
_MATH_SYMBOL = re.compile(r"[=∑∫∂∇≤≥≈±×÷√∞∈∀∃⋅−→↦]")
_WORD = re.compile(r"[^\W\d_]{4,}")


def body_size(paragraphs: list[list[TextLine]]) -> float:
    sizes: Counter = Counter()
    for p in paragraphs:
        for ln in p:
            sizes[ln.size] += len(ln.text)
    return sizes.most_common(1)[0][0] if sizes else 10.0


def classify_block(lines: list[TextLine], body: float) -> BlockDraft:
    text = " ".join(ln.text for ln in lines)
    size = max(ln.size for ln in lines)
    top, bottom = lines[0].bbox[1], lines[-1].bbox[3]
    short = len(text) < 160 and len(lines) <= 3
    if all(ln.mono for ln in lines) and len(lines) >= 2:
        return BlockDraft(BlockKind.code, lines)
    if len(lines) <= 2 and len(text) < 40 and PAGE_NUMBER.match(text) and (top > 0.88 or bottom < 0.12):
        return BlockDraft(BlockKind.page_number, lines)
    if _CAPTION.match(text):
        return BlockDraft(BlockKind.caption, lines)
    if _MATH_SYMBOL.search(text) and len(_WORD.findall(text)) < 2 and len(text) < 200:
        return BlockDraft(BlockKind.formula, lines)
    if LIST_START.match(lines[0].text) and not (short and size >= body * 1.15):
        return BlockDraft(BlockKind.list, lines)
    if short and size >= body * 1.15 and not text.endswith(","):
        ratio = size / body
        level = 1 if ratio >= 1.8 else 2 if ratio >= 1.4 else 3
        return BlockDraft(BlockKind.heading, lines, level=level)
    if short and len(lines) <= 2 and all(ln.bold for ln in lines) and not SENTENCE_END.search(text):
        return BlockDraft(BlockKind.heading, lines, level=4)
    if size < body * 0.88 and top > 0.7 and (text[:1].isdigit() or text[:1] in "*†‡§¹²³⁴⁵⁶⁷⁸⁹"):
        return BlockDraft(BlockKind.footnote, lines)
    return BlockDraft(BlockKind.text, lines)


def mark_title(drafts: list[BlockDraft], page: int, body: float) -> None:
    """The document's title: the largest heading high on its first page."""
    if page != 1:
        return
    headings = [d for d in drafts if d.kind == BlockKind.heading and d.bbox[1] < 0.5]
    if not headings:
        return
    top = max(headings, key=lambda d: max(ln.size for ln in d.lines))
    if max(ln.size for ln in top.lines) >= body * 1.4:
        top.kind, top.level = BlockKind.title, 1
