"""Ruled tables from the text layer, as markdown tables whose rows keep their boxes.

PyMuPDF's `find_tables` costs 0.2-2 s a page, so it runs only inside regions where the page's vector
graphics look like a table (several long horizontal rules stacked over one another); everywhere else
the page pays only for one pass over its drawings.
"""

from __future__ import annotations

import pymupdf

from ..builders import BlockDraft, TextLine
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


def candidate_regions(pdf_page: pymupdf.Page) -> list[pymupdf.Rect]:
    """Clusters of stacked, horizontally overlapping rules, in unrotated page space."""
    rules = sorted(_rules(pdf_page), key=lambda r: r.y0)
    clusters: list[list[pymupdf.Rect]] = []
    for r in rules:
        for c in clusters:
            hull = c[0] | c[-1]
            for other in c[1:-1]:
                hull |= other
            overlap = min(hull.x1, r.x1) - max(hull.x0, r.x0)
            if overlap >= 0.5 * min(hull.width, r.width) and r.y0 - hull.y1 < 120:
                c.append(r)
                break
        else:
            clusters.append([r])
    regions = []
    for c in clusters:
        ys = {round(r.y0) for r in c}
        if len(ys) >= MIN_RULES:
            hull = pymupdf.Rect(c[0])
            for r in c[1:]:
                hull |= r
            regions.append(hull + (-2, -14, 2, 4))
    return regions


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _markdown(table) -> tuple[str, list[Line], list[BBox]] | None:
    rows = table.extract()
    if len(rows) < 2 or max(len(r) for r in rows) < 2:
        return None
    cells = [[_cell(c) for c in row] for row in rows]
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
    row_boxes = [tuple(r.bbox) for r in table.rows]
    return markdown, [Line(bbox=(0, 0, 0, 0), start=s, end=e) for s, e in spans], row_boxes


def find_table_drafts(pdf_page: pymupdf.Page, box) -> list[BlockDraft]:
    """Tables as blocks: `box` maps an unrotated PyMuPDF rect to the one coordinate form."""
    drafts: list[BlockDraft] = []
    for region in candidate_regions(pdf_page):
        try:
            found = pdf_page.find_tables(clip=region, use_layout=False)
        except Exception:  # a table finder failure costs the table, never the page
            continue
        for table in found.tables:
            made = _markdown(table)
            if made is None:
                continue
            markdown, lines, row_boxes = made
            boxes = [box(rb) for rb in row_boxes]
            for ln, b in zip(lines, boxes, strict=False):
                ln.bbox = b
            lines = [ln for ln in lines if ln.end > ln.start and ln.bbox != (0, 0, 0, 0)]
            tbox = box(table.bbox)
            drafts.append(BlockDraft(BlockKind.table, [TextLine(text=markdown, bbox=tbox)],
                                     markdown_override=(markdown, lines)))
    return drafts
