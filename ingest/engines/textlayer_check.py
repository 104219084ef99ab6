"""A vision model's reading of a born-digital page, held to the page's own text layer.

Pages with a usable text layer reach DeepSeek-OCR-2 for their structure (layout, block kinds, reading order,
table structure, LaTeX: ingest/routing.py, DOCGROUND_VLM_PAGES). Their characters are the text layer's to
vouch for: the model may not invent any. Each of the model's blocks is compared with the text layer's words
under it, character for character (letters and digits; LaTeX command names and markup do not count):

- it agrees (not one letter or digit the layer lacks, little of the layer left out): the model's markdown stays, and its
  box and line boxes snap to the layer's words and lines;
- the layer contradicts it: the block keeps its kind and place in the model's reading order, but its text
  becomes the layer's lines under it (a table or formula whose cells or symbols disagree becomes text);
- no layer text under it: kept only where it lies over a picture (text in an image), else dropped;
- layer lines under no block (the model skipped them) are added as text blocks where they stand.

So every character of the result is in the text layer, and every line of the text layer is in the result.

The same check holds an OCR engine's reading of a page whose text layer holds only part of its text (the rest
in images or drawn as curves: ingest/routing.py): where the layer has text, the layer's text wins over the
reading (Tesseract in Korean reads Latin words as noise); where it has none, the reading is all there is.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

import pymupdf

from ..builders import BlockDraft, TextLine, build_block, clean_line_text
from ..geometry import area, normalize, union
from ..providers.pdf import PdfPage
from ..schema import BBox, Block, BlockKind, Line, PageLayout
from .base import block_id

MAX_MISSING_SHARE = 0.1  # of the layer's characters under the block that the model may leave out
MARGIN = 0.005  # a word whose centre is this close outside a box (of the page) still belongs to it

_TAG = re.compile(r"<[^>]*>")
_GREEK = {name: chr(code) for name, code in (
    ("alpha", 0x3b1), ("beta", 0x3b2), ("gamma", 0x3b3), ("delta", 0x3b4), ("epsilon", 0x3b5), ("varepsilon", 0x3b5),
    ("zeta", 0x3b6), ("eta", 0x3b7), ("theta", 0x3b8), ("vartheta", 0x3d1), ("iota", 0x3b9), ("kappa", 0x3ba),
    ("lambda", 0x3bb), ("mu", 0x3bc), ("nu", 0x3bd), ("xi", 0x3be), ("pi", 0x3c0), ("rho", 0x3c1), ("sigma", 0x3c3),
    ("tau", 0x3c4), ("upsilon", 0x3c5), ("phi", 0x3c6), ("varphi", 0x3c6), ("chi", 0x3c7), ("psi", 0x3c8),
    ("omega", 0x3c9), ("Gamma", 0x393), ("Delta", 0x394), ("Theta", 0x398), ("Lambda", 0x39b), ("Xi", 0x39e),
    ("Pi", 0x3a0), ("Sigma", 0x3a3), ("Phi", 0x3a6), ("Psi", 0x3a8), ("Omega", 0x3a9))}
_OPERATOR_NAMES = frozenset("sin cos tan cot sec csc log ln exp lim max min sup inf det arg deg dim gcd hom ker "
                            "Pr sinh cosh tanh arcsin arccos arctan".split())
_COMMAND = re.compile(r"\\([A-Za-z]+)")


@dataclass
class _Word:
    text: str
    bbox: BBox
    line: tuple[int, int]  # (block, line) of the text layer


@dataclass
class _Claim:
    words: list[_Word] = field(default_factory=list)


def characters(text: str) -> Counter:
    """The letters and digits a text commits to: compatibility-normalized (ligatures, math alphabets,
    superscripts), without accents and case (a model writing "Resume" for "RÉSUMÉ" invents nothing)."""
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    return Counter(ch for ch in folded if ch.isalnum())


def model_characters(markdown: str) -> Counter:
    """The characters of a block's markdown: HTML tags and LaTeX command names are markup, except Greek
    letters (\\alpha is α) and operator names (\\sin is sin)."""

    def command(m: re.Match) -> str:
        name = m.group(1)
        if name in _GREEK:
            return _GREEK[name]
        return name if name in _OPERATOR_NAMES else " "

    return characters(_COMMAND.sub(command, _TAG.sub(" ", markdown)))


def contradicts(model: Counter, layer: Counter) -> bool:
    """Any letter or digit the layer lacks, or more than a little of the layer left out."""
    invented = sum((model - layer).values())
    missing = sum((layer - model).values())
    return invented > 0 or missing > max(1, MAX_MISSING_SHARE * sum(layer.values()))


def hold_to_text_layer(layout: PageLayout, page: PdfPage, document_id: str, keep_unvouched: bool = False) -> PageLayout:
    """The layout with every block checked against the page's text layer (see the module's docstring); its
    reason says what the check did. With keep_unvouched (an OCR reading of a page whose layer holds only part
    of its text), a block with no layer text under it stays wherever it lies: it reads what the layer lacks."""
    pdf_page = page.pdf_page
    words = _layer_words(pdf_page, layout.width_pt, layout.height_pt)
    pictures = _picture_boxes(pdf_page, layout.width_pt, layout.height_pt)
    claims = [_Claim() for _ in layout.blocks]
    orphans: list[_Word] = []
    for word in words:
        owner = _owner(word, layout.blocks)
        (orphans if owner is None else claims[owner].words).append(word)
    out: list[Block | BlockDraft] = []
    kept = replaced = dropped = 0
    for block, claim in zip(layout.blocks, claims, strict=True):
        if block.kind is BlockKind.figure:
            out.append(block)
            continue
        if not claim.words:
            if keep_unvouched or any(area(_intersection(block.bbox, p)) > 0.5 * area(block.bbox) for p in pictures):
                out.append(block)  # text in a picture: the layer can neither vouch for it nor contradict it
            else:
                dropped += 1
            continue
        if contradicts(model_characters(block.markdown), characters(" ".join(w.text for w in claim.words))):
            replaced += 1
            kind = BlockKind.text if block.kind in (BlockKind.table, BlockKind.formula) else block.kind
            out.append(BlockDraft(kind, _text_lines(claim.words), level=block.level))
        else:
            kept += 1
            out.append(_snapped(block, claim.words))
    added = _insert_orphans(out, orphans)
    blocks = [_built(b, document_id, layout.page, i) for i, b in enumerate(out)]
    reader = "the reading" if keep_unvouched else "the model"
    note = (f"text layer check: {kept} blocks kept {reader}'s text, {replaced} took the text layer's, "
            f"{dropped} without text layer under them dropped, {added} lines {reader} skipped added")
    return layout.model_copy(update={"blocks": blocks, "reason": f"{layout.reason}; {note}" if layout.reason
                                     else note})


def _layer_words(pdf_page: pymupdf.Page, w: float, h: float) -> list[_Word]:
    matrix = pdf_page.rotation_matrix
    out = []
    for x0, y0, x1, y1, text, block_no, line_no, _ in pdf_page.get_text("words", sort=False):
        r = pymupdf.Rect(x0, y0, x1, y1) * matrix
        if text.strip():
            out.append(_Word(text, normalize(r.x0, r.y0, r.x1, r.y1, w, h), (block_no, line_no)))
    return out


def _picture_boxes(pdf_page: pymupdf.Page, w: float, h: float) -> list[BBox]:
    matrix = pdf_page.rotation_matrix
    boxes = []
    for info in pdf_page.get_image_info():
        r = pymupdf.Rect(info["bbox"]) * matrix
        boxes.append(normalize(r.x0, r.y0, r.x1, r.y1, w, h))
    return boxes


def _owner(word: _Word, blocks: list[Block]) -> int | None:
    """The block whose box (or one of its line boxes) holds the word's centre; the smallest such box wins
    (a caption inside a figure's box)."""
    cx, cy = (word.bbox[0] + word.bbox[2]) / 2, (word.bbox[1] + word.bbox[3]) / 2
    best, best_area = None, 2.0
    for i, block in enumerate(blocks):
        if block.kind is BlockKind.figure:
            continue  # a figure's words (axis labels, legends) are its own, not a paragraph's
        for box in [ln.bbox for ln in block.lines] or [block.bbox]:
            if box[0] - MARGIN <= cx <= box[2] + MARGIN and box[1] - MARGIN <= cy <= box[3] + MARGIN \
                    and area(box) < best_area:
                best, best_area = i, area(box)
    return best


def _intersection(a: BBox, b: BBox) -> BBox:
    return (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))


def _text_lines(words: list[_Word]) -> list[TextLine]:
    """The layer's lines that these words make, in the layer's order."""
    by_line: dict[tuple[int, int], list[_Word]] = {}
    for word in words:
        by_line.setdefault(word.line, []).append(word)
    lines = []
    for key in sorted(by_line):
        ws = by_line[key]
        text = clean_line_text(" ".join(w.text for w in ws))
        if text:
            lines.append(TextLine(text=text, bbox=union(w.bbox for w in ws)))
    return lines


def _snapped(block: Block, words: list[_Word]) -> Block:
    """The model's block with its box and line boxes taken from the layer's words and lines under it. A
    line's characters are found in the markdown in order (the model agreed with the layer on them)."""
    layer_lines = _text_lines(words)
    bbox = union(ln.bbox for ln in layer_lines)
    if block.kind in (BlockKind.table, BlockKind.formula):
        return block.model_copy(update={"bbox": bbox, "lines": []})  # cells and symbols are not in line order
    positions = [i for i, ch in enumerate(unicodedata.normalize("NFKC", block.markdown)) if ch.isalnum()]
    if len(unicodedata.normalize("NFKC", block.markdown)) != len(block.markdown):
        positions = [i for i, ch in enumerate(block.markdown) if ch.isalnum()]
    lines: list[Line] = []
    at = 0
    for ln in layer_lines:
        count = sum(characters(ln.text).values())
        if count == 0 or at >= len(positions):
            continue
        first, last = positions[at], positions[min(len(positions), at + count) - 1]
        lines.append(Line(bbox=ln.bbox, start=first, end=last + 1))
        at += count
    return block.model_copy(update={"bbox": bbox, "lines": lines})


def _insert_orphans(out: list[Block | BlockDraft], orphans: list[_Word]) -> int:
    """The layer's lines under no block, as text blocks (one per layer block), each placed after the last
    block that starts above it."""
    by_block: dict[int, list[_Word]] = {}
    for word in orphans:
        by_block.setdefault(word.line[0], []).append(word)
    added = 0
    for key in sorted(by_block):
        lines = [ln for ln in _text_lines(by_block[key]) if any(ch.isalnum() for ch in ln.text)]
        if not lines:
            continue
        added += len(lines)
        top = min(ln.bbox[1] for ln in lines)
        at = 0
        for i, b in enumerate(out):
            if b.bbox[1] <= top:
                at = i + 1
        out.insert(at, BlockDraft(BlockKind.text, lines))
    return added


def _built(item: Block | BlockDraft, document_id: str, page: int, index: int) -> Block:
    if isinstance(item, BlockDraft):
        return build_block(item, block_id(document_id, page, index), page)
    return item.model_copy(update={"id": block_id(document_id, page, index)})
