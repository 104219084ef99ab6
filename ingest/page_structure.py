"""What a born-digital page's text layer cannot give: tables without ruling lines, formulas, multi-column pages
with figures, forms. Decided from the text layer and the drawings alone, nothing rendered (a few ms a page),
so that with a vision model configured such pages go to it for their structure (ingest/routing.py:
DOCGROUND_VLM_PAGES=complex), while the text layer still vouches for every character (textlayer_check.py).

Each probe returns a phrase that says what it found, for the page's record; None when the text layer's own
structure will do.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import pymupdf

# Fonts that set mathematics: TeX's math italic, symbols and extensions, AMS symbols, and *Math* families
# (Cambria Math, STIX Two Math, Latin Modern Math, PazoMath, ...). Text fonts (CMR, STIXGeneral) are not.
MATH_FONT = re.compile(r"CMMI|CMSY|CMEX|CMBSY|MSAM|MSBM|Math|^Symbol|rsfs|esint|EUSM|EUFM|EUEX|MTMI|MTSY|RTXMI|"
                       r"txsy|txex|pxsy|pxex|LMMath|NewCMMath", re.IGNORECASE)
# Characters that are mathematics wherever they are set: Greek, arrows, operators, the math alphabets.
_MATH_CHAR = re.compile("[\u0391-\u03a9\u03b1-\u03c9\u2190-\u21ff\u2200-\u22ff\u27c0-\u27ef\u2980-\u2aff"
                        "\U0001d400-\U0001d7ff±×÷√∞]")
MIN_MATH_CHARS = 25  # characters in math fonts or math symbols: a few inline symbols are not a formula page

TABLE_MIN_ROWS = 4  # consecutive rows of aligned cells
TABLE_MIN_CELLS = 3  # cells in each such row
CELL_GAP_EM = 1.5  # a gap this many font sizes wide between words separates cells
ALIGN_TOLERANCE_PT = 3.0
ALIGNED_SHARE = 0.6  # of a row's cells that must line up with the rows around it

MIN_COLUMN_SHARE = 0.25  # of the page's text lines in each of two columns
MIN_FIGURE_SHARE = 0.05  # of the page covered by images or vector graphics
GRID = 12  # the page is cut into GRID x GRID cells to find dense vector graphics
FIGURE_PATHS_PER_CELL = 8  # paths in one cell (of 1/144 of the page): part of a chart or diagram

MIN_FORM_FIELDS = 3  # interactive form fields (AcroForm widgets)
MIN_BLANKS = 6  # fill-in blanks: runs of underscores, empty check boxes, or small empty boxes drawn
_BLANK = re.compile(r"_{4,}|[☐□▢❏❑]")


@dataclass
class _Row:
    y: float
    cells: list[tuple[float, float]]  # (x0, x1) of each cell, left to right


def complex_structure(pdf_page: pymupdf.Page) -> str | None:
    """Why the text layer alone would lose this page's structure, or None. The first probe that finds
    something answers (cheapest first): one `dict` extraction serves them all, drawings are read only for
    the last two."""
    lines = [ln for b in pdf_page.get_text("dict", flags=0)["blocks"] if b.get("type") == 0 for ln in b["lines"]]
    if why := _formulas(lines) or _form_fields(pdf_page):
        return why
    drawings = pdf_page.get_cdrawings()
    return (_table_without_rules(lines, drawings) or _columns_with_figures(pdf_page, lines, drawings)
            or _blanks(lines, drawings))


def _formulas(lines: list[dict]) -> str | None:
    math = 0
    for ln in lines:
        for span in ln["spans"]:
            chars = span["text"].strip()
            math += len(chars) if MATH_FONT.search(span["font"]) else len(_MATH_CHAR.findall(chars))
    return f"formulas ({math} characters of mathematics)" if math >= MIN_MATH_CHARS else None


def _table_without_rules(lines: list[dict], drawings: list[dict]) -> str | None:
    """Rows of text set in aligned columns by whitespace alone (no vertical rules between them)."""
    best: list[_Row] = []
    run: list[_Row] = []
    for row in _rows(lines):
        if len(row.cells) >= TABLE_MIN_CELLS and (not run or _aligned(run[-1], row)):
            run.append(row)
        else:
            run = [row] if len(row.cells) >= TABLE_MIN_CELLS else []
        if len(run) > len(best):
            best = list(run)
    if len(best) < TABLE_MIN_ROWS:
        return None
    x0 = min(c[0] for r in best for c in r.cells)
    x1 = max(c[1] for r in best for c in r.cells)
    if _vertical_rules(drawings, x0, best[0].y, x1, best[-1].y) >= 2:
        return None  # a ruled table: the text layer's table finder reads it
    return f"a table without ruling lines ({len(best)} rows of {len(best[0].cells)}+ aligned cells)"


def _rows(lines: list[dict]) -> list[_Row]:
    """Spans grouped into rows by their baseline (within ~2 pt), each row split into cells at wide gaps."""
    by_row: dict[int, list[tuple[float, float, float]]] = {}
    for ln in lines:
        if abs(ln.get("dir", (1, 0))[1]) > 0.1:
            continue  # vertical text sets no table rows
        for span in ln["spans"]:
            if span["text"].strip():
                x0, _, x1, y1 = span["bbox"]
                by_row.setdefault(round(y1 / 2.0), []).append((x0, x1, span["size"]))
    rows = []
    for key, spans in sorted(by_row.items()):
        spans.sort()
        cells: list[list[float]] = []
        for x0, x1, size in spans:
            if cells and x0 - cells[-1][1] <= CELL_GAP_EM * size:
                cells[-1][1] = max(cells[-1][1], x1)
            else:
                cells.append([x0, x1])
        rows.append(_Row(y=key * 2.0, cells=[(c[0], c[1]) for c in cells]))
    return rows


def _aligned(a: _Row, b: _Row) -> bool:
    """Most cells of b start, end or centre where a cell of a does (left, right or centred columns)."""
    def lined_up(c: tuple[float, float]) -> bool:
        return any(abs(c[0] - d[0]) <= ALIGN_TOLERANCE_PT or abs(c[1] - d[1]) <= ALIGN_TOLERANCE_PT
                   or abs((c[0] + c[1]) - (d[0] + d[1])) <= 2 * ALIGN_TOLERANCE_PT for d in a.cells)

    return sum(map(lined_up, b.cells)) >= ALIGNED_SHARE * len(b.cells) and b.y - a.y < 40


def _vertical_rules(drawings: list[dict], x0: float, y0: float, x1: float, y1: float) -> int:
    """Vertical strokes (lines, or thin filled rectangles) crossing most of the region's height."""
    height = max(1.0, y1 - y0)
    count = 0
    for d in drawings:
        for item in d.get("items", ()):
            if item[0] == "l":
                (ax, ay), (bx, by) = item[1], item[2]
            elif item[0] == "re":
                r = pymupdf.Rect(item[1])
                if r.width > 2:
                    continue
                ax, ay, bx, by = r.x0, r.y0, r.x0, r.y1
            else:
                continue
            if abs(ax - bx) < 1 and x0 - 5 <= ax <= x1 + 5 and min(ay, by) <= y0 + 0.5 * height \
                    and max(ay, by) >= y1 - 0.5 * height and abs(ay - by) >= 0.5 * height:
                count += 1
    return count


def _form_fields(pdf_page: pymupdf.Page) -> str | None:
    if pdf_page.first_widget is None:
        return None
    fields = sum(1 for w in pdf_page.widgets() if not w.rect.is_empty)
    return f"a form ({fields} fields)" if fields >= MIN_FORM_FIELDS else None


def _blanks(lines: list[dict], drawings: list[dict]) -> str | None:
    """A form without fields: blanks to fill in (runs of underscores, check boxes as glyphs or drawn)."""
    typed = sum(len(_BLANK.findall(s["text"])) for ln in lines for s in ln["spans"])
    boxes = sum(1 for d in drawings if not d.get("fill") for item in d.get("items", ()) if item[0] == "re"
                and _check_box(pymupdf.Rect(item[1])))
    return f"a form ({typed + boxes} blanks to fill in)" if typed >= MIN_BLANKS or boxes >= 2 * MIN_BLANKS else None


def _check_box(r: pymupdf.Rect) -> bool:
    return 6 <= r.width <= 14 and 6 <= r.height <= 14 and abs(r.width - r.height) < 2


def _columns_with_figures(pdf_page: pymupdf.Page, lines: list[dict], drawings: list[dict]) -> str | None:
    width = pdf_page.rect.width
    narrow = [ln["bbox"] for ln in lines if ln["bbox"][2] - ln["bbox"][0] < 0.55 * width
              and len("".join(s["text"] for s in ln["spans"]).strip()) >= 20]
    if len(narrow) < 10:
        return None
    middle = pdf_page.rect.x0 + width / 2
    sides = Counter("left" if b[2] <= middle + 5 else "right" if b[0] >= middle - 5 else "across" for b in narrow)
    if min(sides["left"], sides["right"]) < MIN_COLUMN_SHARE * len(narrow):
        return None
    share = _figure_share(pdf_page, drawings)
    if share < MIN_FIGURE_SHARE:
        return None
    return f"a multi-column page with figures (figures cover {share:.0%})"


def _figure_share(pdf_page: pymupdf.Page, drawings: list[dict]) -> float:
    """Share of the page under images, or under vector graphics dense enough to be a chart or a diagram
    (counted on a coarse grid: a cell holding FIGURE_PATHS_PER_CELL paths is figure)."""
    page = pdf_page.rect
    page_area = abs(page) or 1.0
    covered = sum(abs(pymupdf.Rect(info["bbox"]) & page) for info in pdf_page.get_image_info())
    cells: Counter = Counter()
    cw, ch = page.width / GRID, page.height / GRID
    for d in drawings:
        x0, y0, x1, y1 = d["rect"]
        if (x1 - x0) * (y1 - y0) < 0.25 * page_area:  # not a page background or frame
            cells[(int((x0 + x1) / 2 / cw), int((y0 + y1) / 2 / ch))] += 1
    covered += sum(cw * ch for n in cells.values() if n >= FIGURE_PATHS_PER_CELL)
    return min(1.0, covered / page_area)
