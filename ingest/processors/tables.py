"""Tables that run on over a page break: the part on the next page gets the column names back.

A table finder reads each page alone, so the part of a table on the next page comes out as a table of
its own whose first row (a row of data) stands as the header, and its rows lose their column names:
"Verzeichnisdienst | OpenLDAP | ldap" read as the names of the columns below it. Where a page ends with
a table and the next page opens with a table of as many columns, under a first row that is not the same
header again (a document that repeats its header on every page keeps it), the second part gets the
first part's header row on top and its own first row back as a row. The header row added has no line
box on this page: it is context for the rows under it, never a citable line of this page.
"""

from __future__ import annotations

from ..pipe_tables import cells, is_rule, is_title_row
from ..schema import FURNITURE, Block, BlockKind, Line, PageLayout


def _body(layout: PageLayout) -> list[Block]:
    return [b for b in layout.blocks if b.kind not in FURNITURE and b.kind != BlockKind.footnote and b.markdown.strip()]


def _pipe_rows(block: Block) -> list[str] | None:
    """The rows of a pipe table with row boxes (header, rule, rows...), or None for anything else."""
    if block.kind != BlockKind.table or not block.lines:
        return None
    rows = block.markdown.split("\n")
    if len(rows) < 3 or not all(r.startswith("|") for r in rows) or not is_rule(rows[1]):
        return None
    return rows


def repeat_continued_headers(layouts: list[PageLayout]) -> None:
    """Give each table that goes on from the previous page that table's header row (layouts in page order)."""
    for before, after in zip(layouts, layouts[1:]):
        if after.page != before.page + 1:
            continue
        ending, opening = _body(before), _body(after)
        if not ending or not opening:
            continue
        first, second = _pipe_rows(ending[-1]), _pipe_rows(opening[0])
        if first is None or second is None or len(cells(first[0])) != len(cells(second[0])):
            continue
        header = _header_rows(first)
        if _plain(second[0]) in {_plain(h) for h in header}:
            continue  # the header is repeated on each page already
        _put_header_on(opening[0], header, second)


def _plain(row: str) -> str:
    return " ".join(row.split())


def _header_rows(rows: list[str]) -> list[str]:
    """A table's header: its first row, and the column names under it when that row is only a title
    ("| Liste des services |  |  |")."""
    return [rows[0], rows[2]] if is_title_row(rows[0]) and len(rows) > 3 else [rows[0]]


def _put_header_on(block: Block, header: list[str], rows: list[str]) -> None:
    """`header` rows and the rule above the block's rows, its first row now one of them; line offsets follow."""
    rule, own_first = rows[1], rows[0]
    block.markdown = "\n".join([header[0], rule, *header[1:], own_first, *rows[2:]])
    added = len(header[0]) + 1 + sum(len(h) + 1 for h in header[1:])
    first_shift = added + len(rule) + 1  # the old first row now sits under the new header and its rule
    rest_shift = added  # the rows after it: the rule only moved above them
    first_end = len(own_first)
    block.lines = [_moved(ln, first_shift if ln.start < first_end else rest_shift) for ln in block.lines]


def _moved(line: Line, shift: int) -> Line:
    return line.model_copy(update={"start": line.start + shift, "end": line.end + shift})
