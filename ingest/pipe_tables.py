"""Rows of the markdown pipe tables the engines write ("| a | b |", a rule "| --- | --- |" under the header):
read by the step that joins a table across a page break and by the answer stage that cites rows."""

from __future__ import annotations


def cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def is_rule(row: str) -> bool:
    return bool(row) and set(row.replace(" ", "")) <= set("|-:")


def is_title_row(row: str) -> bool:
    """A table's first row holding only a title ("| Liste des services |  |  |"): the column names follow."""
    names = cells(row)
    return len(names) > 1 and bool(names[0]) and not any(names[1:])
