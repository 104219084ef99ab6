"""Ruled tables from the text layer, as markdown tables whose rows keep their boxes.

PyMuPDF's `find_tables` costs 0.2-2 s a page, so it runs only inside regions where the page's vector
graphics look like a table (several long horizontal rules stacked over one another); everywhere else
the page pays only for one pass over its drawings.
"""

from __future__ import annotations

import pymupdf

from ..builders import BlockDraft, TextLine
from ..geometry import coverage, union
from ..schema import BBox, BlockKind, Line

MIN_RULES = 3
MIN_RULE_PT = 40.0
MAX_RULE_THICKNESS = 3.0


def _rules(pdf_page: pymupdf.Page) -> list[pymupdf.Rect]:
    rules = []
    for path in pdf_page.get_cdrawings():
        for item in path.get("items", ()):
            if item[0] == "l":
                p, q = item[1], item[2]
                if abs(p[1] - q[1]) <= 1.0 and abs(p[0] - q[0]) >= MIN_RULE_PT:
                    rules.append(pymupdf.Rect(min(p[0], q[0]), p[1] - 0.5, max(p[0], q[0]), p[1] + 0.5))
            elif item[0] == "re":
                r = pymupdf.Rect(item[1])
                if r.height <= MAX_RULE_THICKNESS and r.width >= MIN_RULE_PT:
                    rules.append(r)
                elif r.width >= MIN_RULE_PT and r.height >= 8:  # cell borders drawn as rectangles
                    rules.append(pymupdf.Rect(r.x0, r.y0, r.x1, r.y0 + 0.5))
                    rules.append(pymupdf.Rect(r.x0, r.y1 - 0.5, r.x1, r.y1))
    return rules


def _merge_collinear(rules: list[pymupdf.Rect]) -> list[pymupdf.Rect]:
    """Segments on one height that touch become one rule (grids are often drawn cell by cell)."""
    merged: list[pymupdf.Rect] = []
    for r in sorted(rules, key=lambda r: (round(r.y0), r.x0)):
        last = merged[-1] if merged else None
        if last is not None and abs(last.y0 - r.y0) <= 1.0 and r.x0 - last.x1 <= 3.0:
            merged[-1] = last | r
        else:
            merged.append(pymupdf.Rect(r))
    return merged


def candidate_regions(pdf_page: pymupdf.Page) -> list[pymupdf.Rect]:
    """Clusters of stacked, horizontally overlapping rules, in unrotated page space."""
    clusters: list[pymupdf.Rect] = []
    counts: list[set[int]] = []
    for r in sorted(_merge_collinear(_rules(pdf_page)), key=lambda r: r.y0):
        for i, hull in enumerate(clusters):
            overlap = min(hull.x1, r.x1) - max(hull.x0, r.x0)
            if overlap >= 0.5 * min(hull.width, r.width) and r.y0 - hull.y1 < 120:
                clusters[i] = hull | r
                counts[i].add(round(r.y0))
                break
        else:
            clusters.append(pymupdf.Rect(r))
            counts.append({round(r.y0)})
    return [hull + (-2, -14, 2, 4) for hull, ys in zip(clusters, counts, strict=True) if len(ys) >= MIN_RULES]


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _cell_texts(table, words: list[tuple]) -> list[list[str]]:
    """Each cell's words in reading order. (Table.extract() orders characters by their tops, which
    moves punctuation: '1,204' came out as '1204 ,'.)"""
    rows = []
    for row in table.rows:
        texts = []
        for cell in row.cells:
            if cell is None:
                texts.append("")
                continue
            x0, y0, x1, y1 = cell
            inside = [w for w in words if x0 <= (w[0] + w[2]) / 2 <= x1 and y0 <= (w[1] + w[3]) / 2 <= y1]
            texts.append(_cell(" ".join(w[4] for w in sorted(inside, key=lambda w: (w[5], w[6], w[7])))))
        rows.append(texts)
    return rows


def _plausible(table) -> bool:
    """Forms drawn with rules make 'tables' whose cells hold whole paragraphs: those stay text."""
    heights = sorted(r.bbox[3] - r.bbox[1] for r in table.rows)
    if not heights:
        return False
    median = heights[len(heights) // 2]
    return heights[-1] <= max(4 * median, 40.0)


def _column_spans(table) -> list[tuple] | None:
    """Each column's x-range, from cells that do not span into the next column."""
    n = max(len(r.cells) for r in table.rows)
    spans: list[tuple | None] = [None] * n
    for row in table.rows:
        cells = list(row.cells) + [None] * (n - len(row.cells))
        for j, cell in enumerate(cells):
            if cell is not None and (j == n - 1 or cells[j + 1] is not None):
                prev = spans[j]
                spans[j] = cell if prev is None else (min(prev[0], cell[0]), 0, max(prev[2], cell[2]), 0)
    return spans if n >= 2 and all(s is not None for s in spans) else None


def _header_above(table, words: list[tuple]) -> tuple[list[str], tuple] | None:
    """The row right above a table whose words fall into its columns, apart by column-wide gaps: a
    header left outside the rules (booktabs draws a rule above the header, and the finder often starts
    one row late). An ordinary sentence above the table has even word gaps and is left alone."""
    first = _column_spans(table)
    if first is None:
        return None
    top = table.bbox[1]
    row_h = table.rows[0].bbox[3] - table.rows[0].bbox[1]
    above = [w for w in words if top - 1.8 * row_h <= w[3] <= top + 1 and w[0] >= table.bbox[0] - 2
             and w[2] <= table.bbox[2] + 2]
    if not above:
        return None
    nearest = max(above, key=lambda w: w[3])
    mid, half = (nearest[1] + nearest[3]) / 2, (nearest[3] - nearest[1]) / 2
    row = sorted((w for w in above if abs((w[1] + w[3]) / 2 - mid) <= half), key=lambda w: w[0])
    cols: list[list[str]] = [[] for _ in first]
    for w in row:
        cx = (w[0] + w[2]) / 2
        inside = [k for k, c in enumerate(first) if c[0] <= cx <= c[2]]
        if not inside:
            return None
        cols[inside[0]].append(w[4])
    populated = sum(1 for c in cols if c)
    height = nearest[3] - nearest[1]
    # A word space is about a quarter of the line height; a column gap is several of them.
    wide = sum(1 for a, b in zip(row, row[1:]) if b[0] - a[2] > 0.6 * height)
    if populated < 2 or wide < populated - 1:
        return None
    box = (row[0][0], min(w[1] for w in row), row[-1][2], max(w[3] for w in row))
    return [_cell(" ".join(c)) for c in cols], box


def _markdown(table, words: list[tuple]) -> tuple[str, list[Line], list[BBox]] | None:
    if not _plausible(table):
        return None
    cells = _cell_texts(table, words)
    row_boxes = [tuple(r.bbox) for r in table.rows]
    header = _header_above(table, words)
    if header is not None and len(header[0]) == len(cells[0]):
        cells.insert(0, header[0])
        row_boxes.insert(0, header[1])
    if len(cells) < 2 or max(len(r) for r in cells) < 2:
        return None
    if sum(1 for row in cells for c in row if c) < 4:
        return None
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for i, row in enumerate(cells):
        line = "| " + " | ".join(row) + " |"
        if i == 1:
            sep = "| " + " | ".join("---" for _ in row) + " |\n"
            parts.append(sep)
            pos += len(sep)
        spans.append((pos + 2, pos + len(line) - 2))
        parts.append(line + "\n")
        pos += len(line) + 1
    markdown = "".join(parts).rstrip("\n")
    return markdown, [Line(bbox=(0, 0, 0, 0), start=s, end=e) for s, e in spans], row_boxes


def find_table_drafts(pdf_page: pymupdf.Page, box, textpage: pymupdf.TextPage) -> list[BlockDraft]:
    """Tables as blocks: `box` maps an unrotated PyMuPDF rect to the one coordinate form. Cell words come
    from the text page the engine reads its lines from, so that a cell and a line spell text alike
    (ligatures, right-to-left scripts in logical order)."""
    drafts: list[BlockDraft] = []
    regions = candidate_regions(pdf_page)
    words = pdf_page.get_text("words", textpage=textpage) if regions else []
    for region in regions:
        try:
            found = pdf_page.find_tables(clip=region, use_layout=False)
        except Exception:  # a table finder failure costs the table, never the page
            continue
        for table in found.tables:
            made = _markdown(table, words)
            if made is None:
                continue
            markdown, lines, row_boxes = made
            boxes = [box(rb) for rb in row_boxes]
            for ln, b in zip(lines, boxes, strict=False):
                ln.bbox = b
            lines = [ln for ln in lines if ln.end > ln.start and ln.bbox != (0, 0, 0, 0)]
            tbox = union([box(table.bbox)] + boxes)
            if any(coverage(tbox, d.bbox) > 0.5 or coverage(d.bbox, tbox) > 0.5 for d in drafts):
                continue  # the same table found again from an overlapping region
            drafts.append(BlockDraft(BlockKind.table, [TextLine(text=markdown, bbox=tbox)],
                                     markdown_override=(markdown, lines)))
    return drafts
