"""Scoring of the olmOCR-bench sample's unit tests (present, absent, order, table, math, baseline).

A reimplementation of the published semantics of olmocr/bench/tests.py for this benchmark, with two
simplifications stated here: `order` compares the best fuzzy match position of each side (olmOCR tries
every pair of near matches), and `math` passes only on an exact LaTeX match (olmOCR renders both sides
with KaTeX; no renderer is available offline). Both systems are scored by the same code.
"""

from __future__ import annotations

import html
import re
import unicodedata
from html.parser import HTMLParser

from rapidfuzz import fuzz

_REPLACE = {"‘": "'", "’": "'", "‚": "'", "“": '"', "”": '"', "„": '"', "＿": "_", "–": "-", "—": "-", "‑": "-",
            "‒": "-", "−": "-", "\u00b5": "\u03bc"}


def normalize(text: str) -> str:
    text = re.sub(r"<br/?>", " ", text)
    text = re.sub(r"(\*\*|__)(.*?)\1", r"\2", text)
    text = re.sub(r"</?[bi]>", "", text)
    text = re.sub(r"(\*|_)(.*?)\1", r"\2", text)
    text = unicodedata.normalize("NFC", re.sub(r"\s+", " ", text))
    for a, b in _REPLACE.items():
        text = text.replace(a, b)
    return text


def _threshold(text: str, max_diffs: int) -> float:
    return 1.0 - max_diffs / max(len(text), 1)


def presence(test: dict, md: str) -> bool:
    ref, content = normalize(test["text"]), normalize(md)
    if test.get("first_n") and test.get("last_n"):
        content = content[: test["first_n"]] + content[-test["last_n"]:]
    elif test.get("first_n"):
        content = content[: test["first_n"]]
    elif test.get("last_n"):
        content = content[-test["last_n"]:]
    diffs = test.get("max_diffs", 0)
    if len(content) < len(ref) - diffs:
        return test["type"] == "absent"
    found = fuzz.partial_ratio(ref, content) / 100.0 >= _threshold(ref, diffs)
    return found if test["type"] == "present" else not found


def _position(needle: str, hay: str, max_diffs: int) -> int | None:
    if max_diffs == 0:
        i = hay.find(needle)
        return i if i >= 0 else None
    align = fuzz.partial_ratio_alignment(needle, hay)
    if align is None or align.score / 100.0 < _threshold(needle, max_diffs):
        return None
    return align.dest_start


def order(test: dict, md: str) -> bool:
    content = normalize(md)
    before = _position(normalize(test["before"]), content, test.get("max_diffs", 0))
    after = _position(normalize(test["after"]), content, test.get("max_diffs", 0))
    return before is not None and after is not None and before < after


class _HtmlTables(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self._row = []
            self.tables[-1].append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def tables(md: str) -> list[list[list[str]]]:
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in md.split("\n") + [""]:
        s = line.strip()
        if s.startswith("|") and s.endswith("|") and len(s) > 1:
            cells = [html.unescape(c.strip().replace("\\|", "|")) for c in re.split(r"(?<!\\)\|", s[1:-1])]
            if not all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    parser = _HtmlTables()
    parser.feed(md)
    return found + [t for t in parser.tables if t]


def table(test: dict, md: str) -> bool:
    diffs = test.get("max_diffs", 0)
    target = normalize(test["cell"])

    def similar(a: str, b: str) -> bool:
        return fuzz.ratio(a, normalize(b)) / 100.0 >= max(0.5, _threshold(a, diffs))

    for rows in tables(md):
        for r, row in enumerate(rows):
            for c, cell in enumerate(row):
                if not similar(target, cell):
                    continue
                relations = {
                    "up": [rows[r - 1][c]] if r > 0 and c < len(rows[r - 1]) else [],
                    "down": [rows[r + 1][c]] if r + 1 < len(rows) and c < len(rows[r + 1]) else [],
                    "left": [row[c - 1]] if c > 0 else [],
                    "right": [row[c + 1]] if c + 1 < len(row) else [],
                    "top_heading": [rows[i][c] for i in range(r) if c < len(rows[i]) and rows[i][c]][:3],
                    "left_heading": [row[0]] if c > 0 else [],
                }
                if all(any(similar(normalize(test[k]), v) for v in relations[k])
                       for k in relations if test.get(k)):
                    return True
    return False


def math(test: dict, md: str) -> bool:
    equations = re.findall(r"\\\((.+?)\\\)|\\\[(.+?)\\\]|\$\$(.+?)\$\$|\$(.+?)\$", md, re.DOTALL)
    want = re.sub(r"\s+", "", test["math"])
    return any(re.sub(r"\s+", "", "".join(g)) == want for g in equations)


def baseline(test: dict, md: str) -> bool:
    chars = sum(1 for c in md if c.isalnum())
    if test.get("max_length") is not None:
        return chars <= test["max_length"]
    return chars > 0


CHECKS = {"present": presence, "absent": presence, "order": order, "table": table, "math": math,
          "baseline": baseline}


def run(test: dict, md: str) -> bool:
    return CHECKS[test["type"]](test, md)
