"""Born-digital pages from their own text layer: no model, hundreds of pages a second.

MuPDF's `dict` extraction gives blocks, lines and spans with fonts and boxes in unrotated page space;
the page's rotation matrix maps them to the page as displayed, and normalization happens right here.
"""

from __future__ import annotations

import re
from collections import Counter

import pymupdf

from ..builders import BlockDraft, TextLine, build_block, clean_line_text, is_unspaced
from ..classify import LIST_START, body_size, classify_block, mark_title
from ..geometry import coverage, normalize, union
from ..processors.reading_order import reading_order
from ..providers.pdf import PdfPage
from ..schema import BBox, BlockKind, PageLayout
from .base import block_id
from .tables import find_table_drafts

FLAGS = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP
BOLD, MONO = 16, 8




class TextLayerEngine:
    name = "textlayer"
    version = "1"
    pages_at_once = 16

    def parse(self, page: PdfPage, document_id: str) -> PageLayout:
        pdf_page = page.pdf_page
        w, h = page.width_pt, page.height_pt
        matrix = pdf_page.rotation_matrix

        def box(rect) -> BBox:
            r = pymupdf.Rect(rect) * matrix
            return normalize(r.x0, r.y0, r.x1, r.y1, w, h)

        tables = find_table_drafts(pdf_page, box)
        table_boxes = [t.bbox for t in tables]
        textpage = pdf_page.get_textpage(flags=FLAGS)
        raw_blocks = pdf_page.get_text("dict", flags=FLAGS, sort=False, textpage=textpage)["blocks"]
        _respace_glued_words(pdf_page, textpage, raw_blocks)
        turned = pdf_page.rotation in (90, 270)  # text running down the unrotated page reads across the display
        paragraphs = [p for b in raw_blocks if b.get("type") == 0
                      for p in _paragraphs(b, box, table_boxes, turned)]
        body = body_size(paragraphs)
        paragraphs = _attach_drop_caps(paragraphs, body)
        drafts = [classify_block(p, body) for p in paragraphs]
        drafts += tables
        drafts += _figures(pdf_page, box, table_boxes)
        mark_title(drafts, page.number, body)

        drafts = _in_reading_order(drafts)
        blocks = [build_block(d, block_id(document_id, page.number, n), page.number) for n, d in enumerate(drafts)]
        return PageLayout(page=page.number, width_pt=w, height_pt=h, blocks=blocks,
                          engine=self.name, engine_version=self.version, reason="text layer")


_GLUED = re.compile(r"[^\W\d_]{22,}")
WORD_GAP_EM = 0.1


def _respace_glued_words(pdf_page: pymupdf.Page, textpage, blocks: list[dict]) -> None:
    """Some fonts space words by position alone, with no space characters, and MuPDF's gap rule misses
    narrow gaps: 'CompositionofthepretrainingdataforOLMo2'. Such spans are re-spaced from their
    characters' gaps; other pages never pay for the character-level pass."""
    glued = [(bi, li) for bi, b in enumerate(blocks) if b.get("type") == 0 for li, ln in enumerate(b["lines"])
             if ln.get("dir", (1, 0))[0] > 0.99 and any(_GLUED.search(sp["text"]) for sp in ln["spans"])]
    if not glued:
        return
    raw = pdf_page.get_text("rawdict", flags=FLAGS, sort=False, textpage=textpage)["blocks"]
    for bi, li in glued:
        # The whole line is re-spaced: its other spans share the font's spacing ("Table1").
        for span, raw_span in zip(blocks[bi]["lines"][li]["spans"], raw[bi]["lines"][li]["spans"], strict=False):
            chars, out = raw_span["chars"], []
            for i, ch in enumerate(chars):
                if i and ch["c"] != " " and chars[i - 1]["c"] != " " and \
                        ch["bbox"][0] - chars[i - 1]["bbox"][2] > WORD_GAP_EM * raw_span["size"]:
                    out.append(" ")
                out.append(ch["c"])
            span["text"] = "".join(out)


def _in_reading_order(drafts: list[BlockDraft]) -> list[BlockDraft]:
    """Images with text set on top of them (card backgrounds, shaded panels) do not steer the order:
    the rest is ordered, and each such image goes right before the first block it holds."""
    texts = [d for d in drafts if d.kind != BlockKind.figure]
    holders = {id(f): [t for t in texts if coverage(t.bbox, f.bbox) > 0.8]
               for f in drafts if f.kind == BlockKind.figure}
    steering = [d for d in drafts if d.kind != BlockKind.figure or not holders[id(d)]]
    vertical = sum(len(d.text) for d in steering if d.lines and d.lines[0].vertical)
    total = sum(len(d.text) for d in steering) or 1
    ordered = [steering[i] for i in reading_order([d.bbox for d in steering], right_to_left=vertical / total > 0.5)]
    for figure in (d for d in drafts if d.kind == BlockKind.figure and holders[id(d)]):
        at = min(ordered.index(t) for t in holders[id(figure)])
        ordered.insert(at, figure)
    return ordered


def _line(raw: dict, box, turned: bool) -> TextLine | None:
    spans = [s for s in raw["spans"] if s["text"].strip()]
    if not spans:
        return None
    parts: list[str] = []
    prev_x1 = None
    for s in spans:
        text = s["text"]
        if prev_x1 is not None and parts and not parts[-1].endswith(" ") and not text.startswith(" "):
            gap = s["bbox"][0] - prev_x1
            if gap > 0.15 * s["size"] and not (is_unspaced(parts[-1][-1:]) and is_unspaced(text[:1])):
                parts.append(" ")
        parts.append(text)
        prev_x1 = s["bbox"][2]
    text = clean_line_text("".join(parts))
    if not any(ch.isalnum() for ch in text):
        return None  # dot leaders and rules drawn with characters
    chars = Counter()
    for s in spans:
        chars[(round(s["size"], 1), bool(s["flags"] & BOLD), bool(s["flags"] & MONO))] += len(s["text"])
    (size, bold, mono), _ = chars.most_common(1)[0]
    dx, dy = raw.get("dir", (1.0, 0.0))
    return TextLine(text=text, bbox=box(raw["bbox"]), size=size, bold=bold, mono=mono,
                    vertical=(abs(dy) > abs(dx)) != turned)


def _rows_left_to_right(lines: list[TextLine]) -> list[TextLine]:
    """Lines side by side on one row (cells of a form or a table) read left to right, as displayed."""
    if any(ln.vertical for ln in lines):
        return lines
    ordered: list[TextLine] = []
    for ln in lines:
        row_start = len(ordered)
        while row_start > 0 and _same_row(ordered[row_start - 1], ln):
            row_start -= 1
        if row_start < len(ordered):
            row = sorted(ordered[row_start:] + [ln], key=lambda x: x.bbox[0])
            ordered[row_start:] = row
        else:
            ordered.append(ln)
    return ordered


def _same_row(a: TextLine, b: TextLine) -> bool:
    overlap = min(a.bbox[3], b.bbox[3]) - max(a.bbox[1], b.bbox[1])
    return overlap > 0.6 * min(a.bbox[3] - a.bbox[1], b.bbox[3] - b.bbox[1])


def _paragraphs(raw_block: dict, box, table_boxes: list[BBox], turned: bool) -> list[list[TextLine]]:
    """MuPDF's block, split where the font changes or a gap opens: a heading stays apart from its body."""
    lines = [ln for raw in raw_block["lines"] if (ln := _line(raw, box, turned))]
    lines = [ln for ln in lines if not any(coverage(ln.bbox, t) > 0.5 for t in table_boxes)]
    lines = _rows_left_to_right(lines)
    paragraphs: list[list[TextLine]] = []
    for ln in lines:
        if paragraphs and not _breaks(paragraphs[-1][-1], ln, paragraphs[-1]):
            paragraphs[-1].append(ln)
        else:
            paragraphs.append([ln])
    return paragraphs


def _breaks(prev: TextLine, ln: TextLine, para: list[TextLine]) -> bool:
    if prev.vertical != ln.vertical or prev.mono != ln.mono:
        return True
    if abs(prev.size - ln.size) > 0.12 * max(prev.size, ln.size):
        return True
    if prev.bold != ln.bold and (len(prev.text) < 100 or len(ln.text) < 100) and len(para) == 1:
        return True
    line_h = max(prev.bbox[3] - prev.bbox[1], 1e-4)
    if not ln.vertical and ln.bbox[1] - prev.bbox[3] > 0.9 * line_h:
        return True
    return bool(LIST_START.match(ln.text) and LIST_START.match(para[0].text))


def _attach_drop_caps(paragraphs: list[list[TextLine]], body: float) -> list[list[TextLine]]:
    """A large initial letter set beside its paragraph belongs to that paragraph's first word."""
    caps = [p for p in paragraphs if len(p) == 1 and len(p[0].text) <= 2 and p[0].text.isalpha()
            and p[0].size >= 1.8 * body]
    for cap in caps:
        c = cap[0]
        for p in paragraphs:
            if not p or p is cap or p[0].size > 1.3 * body:
                continue  # (an emptied paragraph is a cap already attached elsewhere)
            first = p[0]
            beside = 0 <= first.bbox[0] - c.bbox[2] < 0.03 and abs(first.bbox[1] - c.bbox[1]) < 0.02
            if beside:
                p[0] = TextLine(text=c.text + first.text, bbox=union([c.bbox, first.bbox]), size=first.size,
                                bold=first.bold, mono=first.mono, vertical=first.vertical)
                cap.clear()
                break
    return [p for p in paragraphs if p]


def _figures(pdf_page: pymupdf.Page, box, table_boxes: list[BBox]) -> list[BlockDraft]:
    drafts = []
    for info in pdf_page.get_image_info():
        b = box(info["bbox"])
        area = (b[2] - b[0]) * (b[3] - b[1])
        if 0.01 < area < 0.9 and not any(coverage(b, t) > 0.5 for t in table_boxes):
            drafts.append(BlockDraft(BlockKind.figure, [TextLine(text="", bbox=b)]))
    return drafts
