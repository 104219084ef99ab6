"""Born-digital pages from their own text layer: no model, hundreds of pages a second.

MuPDF's `dict` extraction gives blocks, lines and spans with fonts and boxes in unrotated page space;
the page's rotation matrix maps them to the page as displayed, and normalization happens right here.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import replace

import pymupdf

from ..builders import BlockDraft, TextLine, build_block, clean_line_text, is_unspaced
from ..classify import LIST_START, SENTENCE_END, body_size, classify_block, mark_title
from ..geometry import coverage, normalize, union
from ..providers.pdf import PdfPage
from ..schema import BBox, BlockKind, PageLayout
from .base import PageEngine, block_id
from .reading_order import reading_order
from .textlayer_tables import find_table_drafts

FLAGS = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP
BOLD, MONO = 16, 8




class TextLayerEngine(PageEngine):
    name = "textlayer"
    version = "1"
    pages_at_once = 16

    def parse_many(self, pages: list[PdfPage], document_id: str) -> list[PageLayout]:
        return [self.parse(p, document_id) for p in pages]

    def parse(self, page: PdfPage, document_id: str) -> PageLayout:
        pdf_page = page.pdf_page
        w, h = page.width_pt, page.height_pt
        matrix = pdf_page.rotation_matrix

        def box(rect) -> BBox:
            r = pymupdf.Rect(rect) * matrix
            return normalize(r.x0, r.y0, r.x1, r.y1, w, h)

        textpage = pdf_page.get_textpage(flags=FLAGS)
        tables = find_table_drafts(pdf_page, box, textpage)
        table_boxes = [t.bbox for t in tables]
        raw_blocks = pdf_page.get_text("dict", flags=FLAGS, sort=False, textpage=textpage)["blocks"]
        _respace_glued_words(pdf_page, textpage, raw_blocks)
        turned = pdf_page.rotation in (90, 270)  # text running down the unrotated page reads across the display
        table_cells = [(t.bbox, _cell_text(t)) for t in tables]
        paragraphs = [p for b in raw_blocks if b.get("type") == 0
                      for p in _paragraphs(b, box, table_cells, turned, w)]
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


# Dot leaders and rules drawn with characters are not text; a short run ("...", "-") is: a table's nil.
_DRAWN_RULE = re.compile(r"^([.·_\-–—=~*…])(?:\s*\1){3,}$")


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
    if not text or _DRAWN_RULE.match(text):
        return None
    size, largest, bold, mono = _style(spans)
    dx, dy = raw.get("dir", (1.0, 0.0))
    return TextLine(text=text, bbox=box(raw["bbox"]), size=size, size_max=largest, bold=bold, mono=mono,
                    vertical=(abs(dy) > abs(dx)) != turned)


STYLED_SHARE = 0.8  # of a line's characters in bold (monospace) make it a bold (monospace) line


def _style(spans: list[dict]) -> tuple[float, float, bool, bool]:
    """The size most of the line's characters have, its largest size, and whether the line is set in
    bold or monospace: at least STYLED_SHARE of its characters, so that a phrase in another font (an
    inline path, an emphasised word) leaves the line body text."""
    sizes: Counter = Counter()
    bold = mono = 0
    for s in spans:
        n = len(s["text"].strip())
        sizes[round(s["size"], 1)] += n
        bold += n if s["flags"] & BOLD else 0
        mono += n if s["flags"] & MONO else 0
    total = sum(sizes.values()) or 1
    return sizes.most_common(1)[0][0], max(sizes), bold >= STYLED_SHARE * total, mono >= STYLED_SHARE * total


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


def _is_mark(ln: TextLine) -> bool:
    return len(ln.text) <= 2 and not ln.vertical and not any(ch.isalnum() for ch in ln.text)


def _attach_marks(lines: list[TextLine], width_pt: float) -> list[TextLine]:
    """A bullet that MuPDF reads as a line of its own ('●' set apart from its item) joins the line it
    marks: beside it on the same row, within two ems. A nil cell ('-') a column away stays alone."""
    out: list[TextLine] = []
    for ln in lines:
        mark = out[-1] if out else None
        if mark and _is_mark(mark) and _same_row(mark, ln) and \
                0 <= (ln.bbox[0] - mark.bbox[2]) * width_pt <= 2 * mark.size:
            ln = replace(ln, text=f"{mark.text} {ln.text}", bbox=union([mark.bbox, ln.bbox]))
            out.pop()
        out.append(ln)
    return out


def _cell_text(table: BlockDraft) -> str:
    """A table's cell text run together: words split or glued differently still match within it."""
    return "".join(unicodedata.normalize("NFKC", table.text.replace("|", " ")).split())


def _in_table(ln: TextLine, tables: list[tuple[BBox, str]]) -> bool:
    """A line whose words a table's cells already hold, in any order (right-to-left cells read
    differently). Text inside a table's box that no cell took (a stamp across the page, a note
    between the rules) stays a line of its own."""
    words = unicodedata.normalize("NFKC", ln.text).split()
    return any(coverage(ln.bbox, box) > 0.5 and all(w in cells for w in words) for box, cells in tables)


def _paragraphs(raw_block: dict, box, tables: list[tuple[BBox, str]], turned: bool,
                width_pt: float) -> list[list[TextLine]]:
    """MuPDF's block, split where a gap opens or the font changes between whole lines (a heading
    apart from its body, a code block from prose); a font change inside a sentence splits nothing."""
    lines = [ln for raw in raw_block["lines"] if (ln := _line(raw, box, turned))]
    lines = [ln for ln in lines if not _in_table(ln, tables)]
    lines = _attach_marks(_rows_left_to_right(lines), width_pt)
    paragraphs: list[list[TextLine]] = []
    for i, ln in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else None
        if paragraphs and not _breaks(paragraphs[-1][-1], ln, paragraphs[-1], nxt):
            paragraphs[-1].append(ln)
        else:
            paragraphs.append([ln])
    return paragraphs


def _breaks(prev: TextLine, ln: TextLine, para: list[TextLine], nxt: TextLine | None) -> bool:
    if prev.vertical != ln.vertical:
        return True
    line_h = max(prev.bbox[3] - prev.bbox[1], 1e-4)
    if not ln.vertical and ln.bbox[1] - prev.bbox[3] > 0.9 * line_h:
        return True
    if LIST_START.match(ln.text) and (LIST_START.match(para[0].text) or SENTENCE_END.search(prev.text)):
        return True  # an item starts a block, after another item or a finished sentence
    if prev.mono != ln.mono:
        return _code_edge(prev, ln, para, nxt)
    if not SENTENCE_END.search(prev.text) and (ln.text[:1].islower() or prev.text.endswith(",")):
        return False  # the sentence runs on: a change of font here is emphasis, math or small capitals
    if not _close(prev.size, ln.size) and not _close(prev.size_max, ln.size_max):
        return True
    return prev.bold != ln.bold and (len(prev.text) < 100 or len(ln.text) < 100) and len(para) == 1


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 0.12 * max(a, b)


def _code_edge(prev: TextLine, ln: TextLine, para: list[TextLine], nxt: TextLine | None) -> bool:
    """Whether prose and monospace lines part here. Code is two or more monospace lines, or one after a
    finished sentence; a single monospace line inside a sentence (a wrapped path or URL) is inline."""
    if ln.mono:
        return bool(SENTENCE_END.search(prev.text)) or (nxt is not None and nxt.mono)
    return all(p.mono for p in para)


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
                p[0] = replace(first, text=c.text + first.text, bbox=union([c.bbox, first.bbox]))
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
