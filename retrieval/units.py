"""Citable units of chunk text, as a reader sees them: sentences of paragraphs, rows of tables.

Chunk text is blocks' markdown separated by blank lines; a paragraph's lines are already joined, so
a sentence ends at a sentence end, never at a line end: ". " before a capital, a digit or a quote
(not after "e.g.", "Fig.", "et al." or an initial), "。！？" in CJK text, or the end of the block. A
table row is one unit that knows its table's header row, so "the year of the PhD" matches the row that
holds "PhD" under the header "YEAR".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from docground.ingest.pipe_tables import is_rule, is_title_row

MIN_UNIT_CHARS = 2
LONG_SENTENCE = 400
# Korean (and CJK text with Latin stops) ends a sentence with ". " before the next sentence's first syllable.
_END = re.compile(r"[.!?](?=[\"'”’)\]]*\s+[\"'“‘(\[]*[A-Z0-9À-ÖØ-Þ\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af])|[。！？]|"
                  r"[.!?](?=[\u3000-\u9fff\uac00-\ud7af])")
_SOFT_END = re.compile(r"[;；](?=\s)")
# Words after which a full stop does not end the sentence.
ABBREVIATIONS = frozenset("""e.g i.e etc fig figs eq eqs al cf vs dr mr mrs ms prof no nos sec secs ch vol pp p
    resp approx ca incl ref refs tab st jr sr inc ltd co corp dept univ est min max z.b d.h bzw usw vgl nr s ggf
    u.a evtl bspw abb abs art ca. env p.ex cf. mme m mm éd""".split())
_WORD_BEFORE = re.compile(r"([\w.]+)$")
WORD_WINDOW = 24
_MARKUP_LEAD = "#>-*+| \t"
# Rows of cells set apart on one line that make a paragraph a table: at least this many rows...
GRID_MIN_ROWS = 3
# ...of at least this many cells (line spans side by side), and most of its rows so...
GRID_MIN_CELLS = 2
GRID_ROW_SHARE = 0.6
# ...and at most this many leading rows of names (a title, the column names) heading it.
GRID_HEADER_ROWS = 2
# A table's caption: it names what the table holds, the answer is in the table (a figure's caption is
# often the answer itself: what the figure shows is not in the text).
_CAPTION = re.compile(r"(table|tab\.|tableau|tabelle|表|표)\s*"
                      r"[A-Z]?[\dIVX]+([.\-–]\d+)*\s*[:.\s]", re.IGNORECASE)
DIGIT = re.compile(r"\d")
YEAR = re.compile(r"\b(1[5-9]|20)\d\d\b")  # a year, which names a time, not an amount
# a cell that is only a figure (an amount, a count, a percentage): a header row has none
_FIGURE = re.compile(r"^[\s\d.,%()$€£¥+\-–]*\d[\s\d.,%()$€£¥+\-–]*$")


@dataclass(frozen=True)
class Unit:
    """A stretch [start, end) of chunk text: a sentence, a table row or a table's header row."""

    start: int
    end: int
    kind: str  # "sentence", "heading", "caption", "row", "header"
    block: int  # index of the block in the chunk
    header: str = ""  # a row's table header text
    key_end: int = 0  # a row's first cell, which names the row, is [start, key_end) (0: no cells known)


def _ends_sentence(text: str, dot: int) -> bool:
    if text[dot] != ".":
        return True
    # the word before the dot, looked for in a short window: searching the whole prefix for a match that
    # ends at its end is quadratic, and a word longer than the window is no abbreviation and no initial
    word = _WORD_BEFORE.search(text, max(0, dot - WORD_WINDOW), dot)
    if not word:
        return True
    w = word.group(1).lower().rstrip(".")
    if w in ABBREVIATIONS:
        return False
    if w.replace(".", "").isdigit() and opens_line(text, word.start(1), _MARKUP_LEAD):
        return False  # the number a line opens with: "6.2.2. Where do the code names come from?", "1. We apply..."
    return not (len(w) == 1 and w.isalpha())  # an initial: "S. Chapman"


def opens_line(text: str, pos: int, lead: str = " ") -> bool:
    """Whether only `lead` characters (spaces; markup) stand between the start of pos's line and pos. It looks
    back over those alone, not over the whole line: a paragraph is one long line."""
    while pos > 0 and text[pos - 1] in lead:
        pos -= 1
    return pos == 0 or text[pos - 1] == "\n"


def _trimmed(text: str, s: int, e: int) -> tuple[int, int]:
    seg = text[s:e]
    lead = len(seg) - len(seg.lstrip(_MARKUP_LEAD))
    trail = len(seg) - len(seg.rstrip("| \t"))
    return s + lead, e - trail


def _sentences(text: str, s: int, e: int, block: int) -> list[Unit]:
    out, pos = [], s
    cuts = [m.end() for m in _END.finditer(text, s, e) if _ends_sentence(text, m.start())] + [e]
    for cut in cuts:
        a, b = _trimmed(text, pos, cut)
        if b - a > LONG_SENTENCE:  # a run-on sentence: its clauses are citable on their own
            inner = [m.end() for m in _SOFT_END.finditer(text, a, b)] + [b]
            for c in inner:
                x, y = _trimmed(text, a, c)
                if y - x >= MIN_UNIT_CHARS:
                    out.append(Unit(x, y, "sentence", block))
                a = c
        elif b - a >= MIN_UNIT_CHARS:
            out.append(Unit(a, b, "sentence", block))
        pos = cut
    return out


def _table(text: str, s: int, e: int, block: int) -> list[Unit]:
    out, header, pos, titled = [], "", s, False
    for i, line in enumerate(text[s:e].split("\n")):
        a, b = _trimmed(text, pos, pos + len(line))
        pos += len(line) + 1
        if is_rule(line) or b - a < 1:
            continue
        if i == 0 or titled:
            titled = i == 0 and is_title_row(line)
            header = f"{header} {text[a:b]}".strip()
            out.append(Unit(a, b, "caption" if titled else "header", block))  # a title row names the table
        else:
            bar = text.find("|", a, b)
            out.append(Unit(a, b, "row", block, header, bar if bar > a else 0))
    return out


def _same_row(a: dict, b: dict) -> bool:
    if a["page"] != b["page"]:
        return False
    (_, a0, _, a1), (_, b0, _, b1) = a["bbox"], b["bbox"]
    return min(a1, b1) - max(a0, b0) > 0.6 * min(a1 - a0, b1 - b0)


def _grid_rows(spans: list[dict], s: int, e: int) -> list[list[tuple[int, int]]]:
    """The visual rows (cell ranges) of a paragraph whose line spans sit side by side in columns;
    none when the paragraph reads as prose (one span per visual line)."""
    inside = sorted((sp for sp in spans if s <= sp["char_start"] and sp["char_end"] <= e),
                    key=lambda sp: sp["char_start"])
    rows: list[list[dict]] = []
    for sp in inside:
        if rows and _same_row(rows[-1][-1], sp):
            rows[-1].append(sp)
        else:
            rows.append([sp])
    gridded = sum(1 for r in rows if len(r) >= GRID_MIN_CELLS)
    if gridded < GRID_MIN_ROWS or gridded < GRID_ROW_SHARE * len(rows):
        return []
    return [[(sp["char_start"], sp["char_end"]) for sp in r] for r in rows]


def _figures(text: str, cells: list[tuple[int, int]]) -> int:
    return sum(1 for a, b in cells if _FIGURE.match(text[a:b]))


def _names_columns(text: str, cells: list[tuple[int, int]]) -> bool:
    """A row that can head a table: no figure cells, and no number but a year ("Budget 2014")."""
    return not _figures(text, cells) and not DIGIT.search(YEAR.sub("", text[cells[0][0]:cells[-1][1]]))


def _header_rows(text: str, rows: list[list[tuple[int, int]]]) -> int:
    """How many leading rows (a title, the column names) head a grid whose other rows mostly hold numbers."""
    body = rows[GRID_HEADER_ROWS:]
    if sum(1 for r in body if DIGIT.search(text[r[0][0]:r[-1][1]])) < 0.5 * len(body):
        return 0
    n = 0
    while n < min(GRID_HEADER_ROWS, len(rows) - 1) and _names_columns(text, rows[n]):
        n += 1
    return n


def _grid(text: str, rows: list[list[tuple[int, int]]], block: int) -> list[Unit]:
    """Row units of a paragraph set in columns; its leading rows of names (a title, the column names) are
    their header."""
    out: list[Unit] = []
    header = ""
    heads = _header_rows(text, rows)
    for i, cells in enumerate(rows):
        a, b = _trimmed(text, cells[0][0], cells[-1][1])
        if b - a < MIN_UNIT_CHARS:
            continue
        if i < heads:
            header = f"{header} {text[a:b]}".strip()
            out.append(Unit(a, b, "header", block))
        else:
            out.append(Unit(a, b, "row", block, header, cells[0][1] if len(cells) > 1 else 0))
    return out


def units(text: str, spans: list[dict] | None = None) -> list[Unit]:
    """The chunk's citable units in text order (with the chunk's line spans, paragraphs set in columns
    are cut into their rows)."""
    out: list[Unit] = []
    pos = 0
    for n, block in enumerate(re.split(r"(\n{2,})", text)):
        if n % 2:  # a separator
            pos += len(block)
            continue
        start, end = pos, pos + len(block)
        pos = end
        lines = block.split("\n")
        if lines and lines[0].lstrip().startswith("|"):
            out += _table(text, start, end, n // 2)
            continue
        if block.startswith("#"):
            a, b = _trimmed(text, start, end)
            out.append(Unit(a, b, "heading", n // 2))
            continue
        rows = _grid_rows(spans, start, end) if spans else []
        if rows:
            out += _grid(text, rows, n // 2)
            continue
        line_pos = start
        for line in lines:  # a block's lines are list items, code lines or OCR lines: never one sentence
            found = _sentences(text, line_pos, line_pos + len(line), n // 2)
            if found and _CAPTION.match(text, found[0].start):
                found[0] = replace(found[0], kind="caption")
            out += found
            line_pos += len(line) + 1
    return out
