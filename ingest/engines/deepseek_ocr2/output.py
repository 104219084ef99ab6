"""DeepSeek-OCR-2's output → blocks in the one coordinate form.

Grounded output is a run of `<|ref|>label<|/ref|><|det|>[[x0,y0,x1,y1], ...]<|/det|>` headers, each followed by
the block's markdown, in reading order. Box numbers are integers 0..999 per axis of the image the model saw,
which is the whole page as displayed, so `normalize(..., 999, 999)` is the whole conversion (done here, once).
The box list is read with a regex, never evaluated; truncated and malformed output parses as far as it goes,
and nothing here raises on any text.
"""

from __future__ import annotations

import itertools
import math
import re

from ...builders import BlockDraft, TextLine, build_block
from ...geometry import area, normalize
from ...schema import BBox, Block, BlockKind, Line
from ..base import block_id
from .prompt import EOS_TEXT
from .schema import GroundedBlock, TextSink

BOX_SCALE = 999
FULL_PAGE: BBox = (0.0, 0.0, 1.0, 1.0)

REF, REF_END, DET, DET_END = "<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>"

LABEL_KINDS: dict[str, BlockKind] = {
    "title": BlockKind.title,
    "sub_title": BlockKind.heading,
    "subtitle": BlockKind.heading,
    "heading": BlockKind.heading,
    "text": BlockKind.text,
    "list": BlockKind.list,
    "table": BlockKind.table,
    "image": BlockKind.figure,
    "figure": BlockKind.figure,
    "image_caption": BlockKind.caption,
    "figure_caption": BlockKind.caption,
    "table_caption": BlockKind.caption,
    "caption": BlockKind.caption,
    "table_footnote": BlockKind.footnote,
    "footnote": BlockKind.footnote,
    "equation": BlockKind.formula,
    "formula": BlockKind.formula,
    "code": BlockKind.code,
    "header": BlockKind.page_header,
    "page_header": BlockKind.page_header,
    "footer": BlockKind.page_footer,
    "page_footer": BlockKind.page_footer,
    "page_number": BlockKind.page_number,
}

_BOX = re.compile(r"\[([^\[\]]*)\]")
_OPEN_BOX = re.compile(r"\[[^\[\]]*$")
_STRAY_TAG = re.compile(r"<\|/?(?:ref|det|grounding)\|>")
_DANGLING_TAG = re.compile(r"<(?:\|[a-z/_]*\|?)?$")  # cut inside a tag, as early as its "<"
_EXTRA_NEWLINES = re.compile(r"\n{3,}")
_HEADING = re.compile(r"^(#{1,6})[ \t]+")


def block_kind(label: str) -> BlockKind:
    """Labels the model invents fall back to text: its label set is not documented."""
    return LABEL_KINDS.get(label.strip().lower(), BlockKind.text)


def strip_eos(text: str) -> str:
    cut = text.find(EOS_TEXT)
    return text if cut < 0 else text[:cut]


def clean_content(text: str) -> str:
    """A block's markdown as the authors post-process it, minus any grounding tags left inside it."""
    # Until nothing changes: removing "<|ref|>" from "<<|ref|>|ref|>" forms another tag (or an EOS).
    while (cleaned := _STRAY_TAG.sub("", strip_eos(text))) != text:
        text = cleaned
    text = _DANGLING_TAG.sub("", text)  # a tag the model spelled out in plain tokens and did not finish
    text = text.replace("\\coloneqq", ":=").replace("\\eqqcolon", "=:")
    return _EXTRA_NEWLINES.sub("\n\n", text).strip()


def parse_boxes(det: str) -> tuple[list[tuple[float, float, float, float]], int]:
    """The boxes of one det list, and how many entries were not four finite numbers."""
    boxes: list[tuple[float, float, float, float]] = []
    malformed = 0
    for match in _BOX.finditer(det):
        numbers = _numbers(match.group(1))
        if numbers is None:
            malformed += 1
        else:
            boxes.append(numbers)
    if _OPEN_BOX.search(det) and any(ch.isdigit() for ch in det[det.rfind("["):]):
        malformed += 1  # the list was cut off inside a box
    return boxes, malformed


def _numbers(text: str) -> tuple[float, float, float, float] | None:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        return None
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in values):
        return None
    return values[0], values[1], values[2], values[3]


def parse_grounded(text: str) -> list[GroundedBlock]:
    """Grounded output → blocks in the model's order (its reading order). Text outside any ref is kept too."""
    text = strip_eos(text)
    pieces = text.split(REF)
    blocks: list[GroundedBlock] = []
    if lead := clean_content(pieces[0]):
        blocks.append(GroundedBlock(label="text", boxes=[], content=lead))
    for piece in pieces[1:]:
        label, closed, rest = piece.partition(REF_END)
        if not closed:
            continue  # cut off inside the label: no content follows
        rest = rest.lstrip()
        boxes: list[tuple[float, float, float, float]] = []
        malformed = 0
        if rest.startswith(DET):
            det, _, rest = rest[len(DET):].partition(DET_END)
            boxes, malformed = parse_boxes(det)
        blocks.append(GroundedBlock(label=label.strip().lower(), boxes=boxes, content=clean_content(rest),
                                    malformed_boxes=malformed))
    return blocks


def parse_plain(text: str) -> list[GroundedBlock]:
    """Free OCR output (markdown without boxes) → one block per paragraph."""
    blocks = []
    for para in re.split(r"\n\s*\n", clean_content(text)):
        if para := para.strip():
            blocks.append(GroundedBlock(label=_plain_label(para), boxes=[], content=para))
    return blocks


def _plain_label(para: str) -> str:
    if _HEADING.match(para):
        return "sub_title"
    if para.lower().startswith("<table"):
        return "table"
    if para.startswith(("\\[", "$$")):
        return "equation"
    return "text"


def page_boxes(block: GroundedBlock) -> list[BBox]:
    """The block's boxes in the one coordinate form; those with no area after clamping are left out."""
    out = []
    for x0, y0, x1, y1 in block.boxes:
        box = normalize(x0, y0, x1, y1, BOX_SCALE, BOX_SCALE)
        if area(box) > 0:
            out.append(box)
    return out


def to_blocks(grounded: list[GroundedBlock], page: int, document_id: str) -> list[Block]:
    """Blocks in the model's reading order, built through the project's builders.

    A block without any usable box (Free OCR, or text outside a ref) gets the whole page as its box and no
    line boxes: its text is on this page, and nothing narrower would be honest.
    """
    drafts = [d for g in grounded if (d := to_draft(g)) is not None]
    return [build_block(d, block_id(document_id, page, i), page) for i, d in enumerate(drafts)]


def to_draft(block: GroundedBlock) -> BlockDraft | None:
    kind = block_kind(block.label)
    boxes = page_boxes(block)
    markdown, text_start, level = _markdown(kind, block.content)
    if not markdown and kind is not BlockKind.figure:
        return None  # a box with no text: nothing to cite
    if not boxes:
        return BlockDraft(kind, [TextLine(text=markdown, bbox=FULL_PAGE)], level=level,
                          markdown_override=(markdown, []))
    ranges = split_by_area(markdown, text_start, boxes)
    text_lines = [TextLine(text=markdown[s:e], bbox=b) for (s, e), b in zip(ranges, boxes, strict=True)]
    # A table's markdown is HTML: the chunker keeps it whole under the union box (it packs row by row
    # only markdown tables whose lines are rows).
    lines = [] if kind is BlockKind.table else [Line(bbox=b, start=s, end=e)
                                                for (s, e), b in zip(ranges, boxes, strict=True) if e > s]
    return BlockDraft(kind, text_lines, level=level, markdown_override=(markdown, lines))


def _markdown(kind: BlockKind, content: str) -> tuple[str, int, int | None]:
    """The block's markdown, where its text starts (after a heading's #s), and its heading level."""
    if kind not in (BlockKind.title, BlockKind.heading):
        return content, 0, None
    match = _HEADING.match(content)
    text = content[match.end():] if match else content.lstrip("#").strip()
    text = " ".join(text.split())
    if not text:
        return "", 0, None
    level = 1 if kind is BlockKind.title else (len(match.group(1)) if match else 2)
    prefix = "#" * level + " "
    return prefix + text, len(prefix), level


def split_by_area(markdown: str, start: int, boxes: list[BBox]) -> list[tuple[int, int]]:
    """The block's text shared among its boxes in order, in proportion to their areas, cut at spaces.

    The model gives one box per region of a block (a paragraph that continues in the next column) but not
    which characters fall in which; area is the best estimate it leaves, and a cut lands on a word boundary.
    """
    end = len(markdown)
    if len(boxes) == 1:
        return [(start, end)]
    weights = [area(b) for b in boxes]
    total = sum(weights)
    cuts = [start]
    running = 0.0
    for w in weights[:-1]:
        running += w
        cuts.append(max(cuts[-1], _word_boundary(markdown, start + round((end - start) * running / total), end)))
    cuts.append(end)
    return list(itertools.pairwise(cuts))


def _word_boundary(text: str, pos: int, end: int, reach: int = 24) -> int:
    for d in range(reach):
        for p in (pos + d, pos - d):
            if 0 < p < end and text[p - 1].isspace():
                return p
    return min(pos, end)


# ---- streaming: what a reader sees of grounded output while the model is still writing it

_TAGS = (REF, REF_END, DET, DET_END, "<|grounding|>")
MAX_HEADER_CHARS = 1024  # a grounding header not closed by then is garbage: its tag is dropped, its text shown


class MarkdownStream:
    """Grounded output → its markdown, handed to `sink` piece by piece as the model writes it: grounding
    headers become paragraph breaks, other tags vanish, the end-of-sentence token ends the page. Nothing is
    handed on that a later piece could still change (half a tag, whitespace that may grow into a paragraph
    break), and each piece is read once, so a long page streams in linear time. What `parse_grounded` keeps
    as a block's content is what shows here; a header cut off at the end shows nothing, as it parses."""

    def __init__(self, sink: TextSink):
        self.sink = sink
        self.pending = ""  # from a "<" that may start a tag, until the tag is complete
        self.space = ""  # whitespace held until the next visible character decides what it becomes
        self.started = False  # anything shown yet (leading whitespace is dropped)
        self.ended = False  # the end-of-sentence token came

    def feed(self, piece: str) -> None:
        if self.ended:
            return
        self.pending += piece
        while self.pending and not self.ended:
            cut = self.pending.find("<")
            if cut != 0:  # plain text up to the next "<" (or all of it)
                text, self.pending = (self.pending, "") if cut < 0 else (self.pending[:cut], self.pending[cut:])
                self._show(text)
                continue
            taken = self._tag()
            if taken is None:
                return  # a tag still being written: wait for the next piece
            self.pending = self.pending[taken:]

    def close(self) -> None:
        """The model is done: a tag left unfinished is dropped, and the markdown ends with one newline."""
        self.pending, self.space = "", ""
        if self.started:
            self.sink("\n")
            self.started = False

    def _tag(self) -> int | None:
        """How much of `pending` (which starts with "<") is consumed now; None to wait for more."""
        text = self.pending
        if text.startswith(EOS_TEXT):
            self.ended = True
            return len(text)
        if text.startswith(REF):
            header = _header_end(text)
            if header is None and len(text) <= MAX_HEADER_CHARS:
                return None
            if header is not None:
                self.space += "\n\n"  # a new block starts
                return header
            return len(REF)  # never closed: drop the tag alone
        for tag in _TAGS:
            if text.startswith(tag):
                return len(tag)
        if any(tag.startswith(text) for tag in (*_TAGS, EOS_TEXT)):
            return None  # a tag cut in half so far
        self._show("<")
        return 1

    def _show(self, text: str) -> None:
        for run in re.findall(r"\s+|\S+", text):
            if run.isspace():
                self.space += run
                continue
            if self.started:
                self.sink("\n\n" if self.space.count("\n") >= 2 else self.space)
            self.sink(run)
            self.space, self.started = "", True


def _header_end(text: str) -> int | None:
    """The end of the `<|ref|>label<|/ref|><|det|>[...]<|/det|>` header `text` starts with; None while
    it is not complete (the label or the box list still open, or a box list that may still follow)."""
    label_end = text.find(REF_END, len(REF))
    if label_end < 0:
        return None
    after = label_end + len(REF_END)
    rest = text[after:].lstrip()
    if not rest or (DET.startswith(rest) and rest != DET):
        return None
    if not rest.startswith(DET):
        return after  # a label with no box list
    det_end = text.find(DET_END, len(text) - len(rest))
    return None if det_end < 0 else det_end + len(DET_END)
