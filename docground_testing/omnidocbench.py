"""OmniDocBench's end-to-end metrics (text, formula, table TEDS, reading order), as its evaluation code
defines them; bench/omnidocbench.py runs them on `docground convert` output. How each follows the benchmark:


Every page image of the OmniDocBench demo (../shared/eval/corpus/groundtruth/omnidocbench_demo) is converted
by `docground convert --format md`, and each page's markdown is scored against the human annotation with
OmniDocBench's end-to-end metrics, as its evaluation code defines them (opendatalab/OmniDocBench; the
snapshot read is the fork invofox/OmniDocBench@33a5f76, whose demo data the corpus holds):

- the page's markdown is cut into text blocks, display formulas and tables (utils/extract.py: md_tex_filter);
- ground-truth blocks (truncated ones joined, dataset/end2end_dataset.py) are matched to predicted blocks
  with the "quick match" (utils/match_quick.py): captions, headers, footers and page numbers first take the
  predictions within 0.25 normalized edit distance of them; then a Hungarian assignment on normalized edit
  distance, with runs of consecutive predictions joined where together they match one block better (a block
  the prediction split), pairs above 0.7 unmatched, and unmatched blocks found inside a longer prediction
  (fuzzy substring under 0.4) joined to it; what is left is paired by a last assignment;
- text edit distance: Levenshtein distance over the normalized text (utils/data_preprocess.py: only letters,
  digits and CJK kept, inline LaTeX as Unicode), summed per page over the sum of the longer lengths, averaged
  over pages (metrics/cal_metric.py: Edit_dist, "ALL_page_avg"); headers, footers, page numbers, captions and
  footnotes are left out; a display formula read as text counts as text;
- display formula edit distance: the same over the normalized LaTeX (normalized_formula); CDM, which needs
  a LaTeX and rendering toolchain, is not computed here;
- reading order: per page, the Levenshtein distance between the ground-truth order of the matched text blocks
  and the order in which the prediction gives them, over the longer length; averaged over pages;
- tables: ground-truth tables matched to predicted HTML tables by edit distance (utils/match.py:
  match_gt2pred_simple), both normalized (normalized_html_table), TEDS and structure-only TEDS per table
  averaged over tables (metrics/table_metric.py), and the per-page edit distance of the normalized HTML.

The code below is written anew from those files, not copied. Where OmniDocBench's code does something its
own description would not lead one to expect, the comment says so and it is kept, so that the figures are
the benchmark's. LaTeX tables in a prediction are left to the text (OmniDocBench converts them with
LaTeXML; docground writes HTML tables). Checked against OmniDocBench's own evaluation at that commit (its
pdf_validation.py with configs/end2end.yaml, CDM off): on the demo's sample predictions (demo_data/end2end)
and on docground's Tesseract output, every per-page figure of all four metrics agrees.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rapidfuzz.distance import Levenshtein
from scipy.optimize import linear_sum_assignment

TEXT_CATEGORIES = ("text_block", "title", "code_txt", "code_txt_caption", "reference")
IGNORED_CATEGORIES = ("figure_caption", "figure_footnote", "table_caption", "table_footnote", "code_algorithm",
                      "code_algorithm_caption", "header", "footer", "page_footnote", "page_number",
                      "equation_caption")
FORMULA = "equation_isolated"
INLINE = "equation_inline"
TEXT, TABLE = "text_all", "html_table"


# ---- normalization (utils/data_preprocess.py)

_INLINE_MATH = re.compile(r"\$(.*?)\$|\\\((.*?)\\\)")
_ESCAPED = re.compile(r"\\([\\_&%^])")
_FORMULA_FILLERS = ("\\mathbf", "\\mathrm", "\\mathnormal", "\\mathit", "\\mathbb", "\\mathcal", "\\mathscr",
                    "\\mathfrak", "\\mathsf", "\\mathtt", "\\textbf", "\\text", "\\boldmath", "\\boldsymbol",
                    "\\operatorname", "\\bm", "\\symbfit", "\\mathbfcal", "\\symbf", "\\scriptscriptstyle",
                    "\\notag", "\\setlength", "\\coloneqq", "\\space", "\\thickspace", "\\thinspace", "\\medspace",
                    "\\nobreakspace", "\\negmedspace", "\\quad", "\\qquad", "\\enspace", "\\substackw", " ", "$$",
                    "\\left", "\\right", "\\displaystyle")
_FORMULA_MARKUP = re.compile(r"\\tag\{.*?\}|\\hspace\{.*?\}|\\begin\{.*?\}|\\end\{.*?\}|\\arraycolsep.*?\}")
_BRACKETED = re.compile(r"\\\[(.+?)(?<!\\)\\\]")


def latex_to_text(latex: str) -> str:
    from pylatexenc.latex2text import LatexNodes2Text

    return LatexNodes2Text().latex_to_text(latex)


def inline_math_as_unicode(text: str) -> str:
    """Inline formulas with sub/superscripts or commands, as the Unicode text they show (textblock2unicode)."""
    def unicode(match: re.Match) -> str:
        body = _ESCAPED.sub("", match.group(1) if match.group(1) is not None else match.group(2))
        if not any(c in body for c in "\\^_"):
            return match.group(0)
        try:
            return latex_to_text(body + " " if body.endswith("\\") else body).strip()
        except Exception:  # pylatexenc gives up on some input: the formula stays as written
            return match.group(0)

    return _INLINE_MATH.sub(unicode, text)


def clean_string(text: str) -> str:
    """Letters, digits and CJK only (clean_string)."""
    for junk in ("\\t", "\\n", "\t", "\n", "/t", "/n"):
        text = text.replace(junk, "")
    return re.sub(r"[^\w\u4e00-\u9fff]", "", text)


def normalized_text(text: str) -> str:
    return clean_string(inline_math_as_unicode(text))


def normalized_formula(latex: str) -> str:
    text = latex.strip().strip("$").strip("\n")
    if match := _BRACKETED.search(text):
        text = match.group(1).strip()
    text = _FORMULA_MARKUP.sub("", text).strip(".")
    for filler in _FORMULA_FILLERS:
        text = text.replace(filler, "")
    return text.lower()


def normalized_table(table: str) -> str:
    """An HTML table reduced to its structure and cell text (normalized_html_table): `th` as `td`, no head or
    body groups, MathML as its LaTeX, no styling attributes, inline markup or line breaks; "" without a table."""
    if "<table" not in table.replace(" ", "").replace("'", '"'):
        return ""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(table, "html.parser")
    for cell in soup.find_all("th"):
        cell.name = "td"
    for node in soup.find_all("thead"):
        node.unwrap()
    for node in soup.find_all("math"):
        node.replace_with(f"${node.get('alttext', '')}$")
    for node in soup.find_all("span"):
        node.unwrap()
    text = unicodedata.normalize("NFKC", html.unescape(str(soup)).replace("\n", "")).strip()
    text = "".join(re.findall(r"<table\b[^>]*>(.*)</table>", text, re.S | re.I))
    text = re.sub(r'( (?:style|height|width|align|class)=".*?")|</?tbody>', "", text)
    text = re.sub(r"\s+", " ", text)
    for tag in ("sup", "sub", "span", "div", "p"):
        text = text.replace(f"<{tag}>", "").replace(f"</{tag}>", "")
    text = re.sub(r"<colgroup>.*?</colgroup>", "", text.replace('<spandata-span-identity="">', ""))
    return f'<html><body><table border="1" >{text}</table></body></html>'


# ---- the prediction's blocks (utils/extract.py: md_tex_filter)

@dataclass
class Block:
    kind: str  # text_all | equation_isolated | html_table
    content: str
    position: int  # where it starts in the page's markdown: the prediction's reading order
    fine_kind: str = ""  # equation_inline for a `$...$` formula kept inside its text

    @property
    def category(self) -> str:
        return self.fine_kind or self.kind


_IMAGE = re.compile(r"!\[.*?\]\(.*?\)")
_FENCES = re.compile(r"^```(?:markdown|html|latex)\n?|```\n?$", re.M)
_DISPLAY = re.compile(r"\$\$(.*?)\$\$|\\\[(.*?)\\\]|\$(.*?)\$|\\\((.*?)\\\)", re.S)
_DOLLARS = re.compile(r"\$\$(.*?)\$\$|\$(.*?)\$|\\\((.*?)\\\)", re.S)
_TABLE_OPEN, _TABLE_CLOSE = re.compile(r"<table(?:[^>]*)>"), re.compile(r"</table>")
_LATEX_STYLE = re.compile(r"\\(?:title|text|section\*?)\s*\{\s*(.*?)\s*\}", re.S)  # \title{x} → x
_ARRAY = re.compile(r"\\begin\{array\}\{(?P<spec>[^}]*)\}(?P<body>.*?)\\end\{array\}", re.S)


def blank(text: str, start: int, end: int) -> str:
    return text[:start] + " " * (end - start) + text[end:]


def outer_tables(text: str) -> list[tuple[int, int]]:
    """Spans of the outermost `<table>...</table>` elements, nested tables inside them."""
    spans, depth, start = [], 0, 0
    for match in sorted([*_TABLE_OPEN.finditer(text), *_TABLE_CLOSE.finditer(text)], key=lambda m: m.start()):
        if match.group(0).startswith("</"):
            if depth == 1:
                spans.append((start, match.end()))
            depth = max(0, depth - 1)
        else:
            start = match.start() if depth == 0 else start
            depth += 1
    return spans


def markdown_tables_as_html(text: str) -> str:
    """Runs of two or more `| ... |` lines become an HTML table, the `|---|` separator row dropped, every cell
    spelled out as one column and one row wide (as table_utils.py: convert_table writes them). The line
    just before a table goes with it, as OmniDocBench's conversion (utils/table_utils.py:
    replace_table_with_placeholder) swallows it; kept, so that the figures are the benchmark's."""
    def table(match: re.Match) -> str:
        rows = [line.strip() for line in match.group("rows").strip("\n").split("\n")]
        cells = ["".join(f'<td colspan="1" rowspan="1">{c.strip()}</td>' for c in row.strip("|").split("|"))
                 for row in rows if not re.fullmatch(r"\|?[\s:|-]*-[\s:|-]*\|?", row)]
        return '\n\n<table border="1" >' + "".join(f"<tr>{c}</tr>" for c in cells) + "</table>\n\n"

    return re.sub(r"(?:^(?![ \t]*\|)[^\n]*\n)?(?P<rows>(?:^[ \t]*\|.*\|[ \t]*(?:\n|$)){2,})", table, text,
                  flags=re.M)


def prediction_blocks(markdown: str) -> list[Block]:
    """A page's markdown cut into tables, display formulas (inline ones too, kept in their text) and text
    blocks, in the order OmniDocBench gives them."""
    text = _IMAGE.sub("", markdown)
    text = _FENCES.sub("", text)
    text = re.sub(r" {4,}", "    ", re.sub(r"_{4,}", "____", text))
    for tag in ("<html>", "</html>", "<body>", "</body>"):
        text = text.replace(tag, "")
    blocks: list[Block] = []
    text = _take_tables(text, blocks)
    for match in _DISPLAY.finditer(text):
        line = " ".join(match.group(0).strip().split("\n"))
        dollars = _DOLLARS.search(line)
        if dollars is None or dollars.group(1):  # \[...\] or $$...$$: a display formula, as \[...\]
            blocks.append(Block(FORMULA, _DOLLARS.sub(r"\\[\1\\]", line), match.start()))
            text = blank(text, match.start(), match.end())
        else:  # $...$ or \(...\): recorded as a formula, and left in its text too
            blocks.append(Block(FORMULA, _DOLLARS.sub(r"\\[\2\3\\]", line), match.start(), INLINE))
    if len(re.findall(r"\|\s*.*?\s*\|\n", text + "\n", re.S)) >= 2:
        text = _take_tables(markdown_tables_as_html(text), blocks)
    text = _LATEX_STYLE.sub(r"\1", text)
    parts = text.split("\n\n")
    position = 0
    for part in parts if len(parts) > 1 else text.split("\n"):
        # OmniDocBench counts positions without the separators, so text drifts ahead of formulas and tables
        start, position = position, position + len(part)
        part = "\n".join(line.strip() for line in part.strip().split("\n") if line.strip())
        if not part:
            continue
        if part.startswith("<table") and part.endswith("</table>"):
            blocks.append(Block(TABLE, part, start))
        elif part.startswith("$") and part.endswith("$"):
            if part.replace("$", "").strip():
                blocks.append(Block(FORMULA, part, start))
        else:
            blocks.append(Block(TEXT, part, start))
    return sorted(blocks, key=lambda b: b.position)


def _take_tables(text: str, blocks: list[Block]) -> str:
    for start, end in outer_tables(text):
        blocks.append(Block(TABLE, text[start:end], start))
        text = blank(text, start, end)
    return text


# ---- the ground truth's blocks (dataset/end2end_dataset.py)

@dataclass
class Truth:
    category: str
    text: str  # text, or the LaTeX of a formula, or the HTML of a table
    order: float | None


def page_truth(page: dict) -> list[Truth]:
    """The page's annotated blocks, those joined by `truncated` relations (a paragraph cut by a column or page
    break) as one block in the place and category of its first part. As in get_page_elements, a relation is
    added to every group that holds either of its blocks, repeats and all, so a block in the middle of a chain
    of three is in the joined text twice; kept, so that the figures are the benchmark's."""
    groups: list[list[int]] = []
    for relation in page.get("extra", {}).get("relation", []):
        if relation.get("relation_type") != "truncated":
            continue
        pair = [relation["source_anno_id"], relation["target_anno_id"]]
        holding = [g for g in groups if pair[0] in g or pair[1] in g]
        for group in holding:
            group.extend(pair)
        if not holding:
            groups.append(pair)
    grouped = {anno for g in groups for anno in g}
    by_id = {item["anno_id"]: item for item in page["layout_dets"]}
    items = [truth(item) for item in page["layout_dets"] if item["anno_id"] not in grouped]
    for group in groups:
        parts = sorted((by_id[a] for a in group), key=lambda item: item["order"])
        items.append(Truth(parts[0]["category_type"], "".join(str(p.get("text", "")) for p in parts),
                           parts[0]["order"]))
    return items


def truth(item: dict) -> Truth:
    category = item["category_type"]
    text = item.get("latex", "") if category == FORMULA else item.get("html", "") if category == "table" else \
        item.get("text", "")
    return Truth(category, str(text), item.get("order"))


def split_arrays(latexes: list[tuple[str, float | None]]) -> list[tuple[str, float | None]]:
    """A formula written as a one-column `array` is one formula per row (match_quick.py), numbered N.1, N.2..."""
    out = []
    for latex, order in latexes:
        match = _ARRAY.search(latex)
        spec = re.sub(r"\s+|\||@\{[^}]*\}|!\{[^}]*\}", "", match.group("spec")) if match else ""
        if not match or spec not in ("l", "c", "r"):
            out.append((latex, order))
            continue
        rows = [row.strip() for row in re.split(r"\\\\", match.group("body")) if row.strip()]
        out += [(f"\\[{row}\\]", round(float(order or 0) + i / 10, 1)) for i, row in enumerate(rows, start=1)]
    return out


# ---- matching (utils/match_quick.py)

def edit(a, b) -> float:
    """Levenshtein distance over the longer length; two empty sequences are equal."""
    return Levenshtein.distance(a, b) / max(len(a), len(b)) if (a or b) else 0.0


def edit_matrix(rows: list[str], columns: list[str]) -> np.ndarray:
    return np.array([[edit(r, c) for c in columns] for r in rows]).reshape(len(rows), len(columns))


def best_window(short: str, long: str) -> float:
    """The smallest edit distance of `short` to a window of its length in `long` (over its length)."""
    n = len(short)
    return min(Levenshtein.distance(long[i:i + n], short) for i in range(len(long) - n + 1)) / n


@dataclass
class Match:
    truths: list[int]  # indices into the page's ground-truth lines; empty: predictions nothing matched
    preds: list[int]  # indices into the page's prediction lines, in order; empty: nothing predicted


def quick_match(truth_lines: list[str], truth_ignored: list[bool], pred_lines: list[str]) -> list[Match]:
    """Ground-truth lines matched to predicted lines (both normalized), as OmniDocBench's quick match pairs
    them. Lines of ignored categories only take the predictions close to them out of the pool."""
    if not truth_lines or not pred_lines:
        return [Match([t], []) for t in range(len(truth_lines))]
    if len(truth_lines) == 1 and len(pred_lines) == 1:
        return [Match([0], [0])]
    ignored = [t for t, flag in enumerate(truth_ignored) if flag]
    kept = [t for t, flag in enumerate(truth_ignored) if not flag]
    taken = {int(p) for _, p in np.argwhere(edit_matrix([truth_lines[t] for t in ignored], pred_lines) < 0.25)}
    pool = [p for p in range(len(pred_lines)) if p not in taken]
    matches = _match_pool([truth_lines[t] for t in kept], [pred_lines[p] for p in pool])
    return [Match([kept[t] for t in m.truths], [pool[p] for p in m.preds]) for m in matches]


def _match_pool(truths: list[str], preds: list[str]) -> list[Match]:
    if not truths:
        return [Match([], list(range(len(preds))))] if preds else []
    if not preds:
        return [Match([t], []) for t in range(len(truths))]
    runs = _split_predictions(truths, preds)  # each a run of consecutive predictions
    joined = [" ".join(preds[p] for p in run) for run in runs]
    cost = edit_matrix(truths, joined)
    by_preds: dict[tuple[int, ...], list[int]] = {}
    unmatched: list[int] = []
    rows, cols = linear_sum_assignment(cost)
    assigned = dict(zip(rows.tolist(), cols.tolist()))
    for t in range(len(truths)):
        if t in assigned and cost[t, assigned[t]] <= 0.7:
            by_preds.setdefault(tuple(runs[assigned[t]]), []).append(t)
        else:
            unmatched.append(t)
    # blocks a prediction holds inside a longer one of its own (one prediction, several blocks); a block found in
    # several goes to the first, and the later ones count as matched all the same, with no block (merge_matches)
    found = {p: inside for p, pred in enumerate(preds)
             if (inside := [t for t in unmatched if 0 < len(truths[t]) <= len(pred)
                            and best_window(truths[t], pred) < 0.4])}
    for p, inside in found.items():
        by_preds.setdefault((p,), []).extend(t for t in inside if t in unmatched)
        unmatched = [t for t in unmatched if t not in inside]
    used = {p for key in by_preds for p in key}
    left = [p for p in range(len(preds)) if p not in used]
    matches = [Match(sorted(ts), list(key)) for key, ts in by_preds.items() if ts]
    if left and unmatched:  # what is left is paired once more, however far apart
        rows, cols = linear_sum_assignment(edit_matrix([truths[t] for t in unmatched], [preds[p] for p in left]))
        matches += [Match([unmatched[r]], [left[c]]) for r, c in zip(rows.tolist(), cols.tolist())]
        paired = {unmatched[r] for r in rows.tolist()}
        matches += [Match([t], []) for t in unmatched if t not in paired]
    elif left:
        matches.append(Match([], left))
    else:
        matches += [Match([t], []) for t in unmatched]
    return matches


def _split_predictions(truths: list[str], preds: list[str]) -> list[list[int]]:
    """The predictions as runs: consecutive predictions joined where together they match a block that no
    prediction matches alone (deal_with_truncated), each run at most once."""
    close = edit_matrix(truths, preds) < 0.25
    free_truths = [t for t in range(len(truths)) if not close[t].any()]
    free_preds = [p for p in range(len(preds)) if not close[:, p].any()]
    chosen: list[tuple[list[int], float]] = []
    for t in free_truths:
        best: tuple[list[int], float] | None = None
        for p in free_preds:
            run = [p]
            while run[-1] + 1 < len(preds) and run[-1] + 1 in free_preds:
                grow, go_on = _joins(truths[t], [preds[q] for q in run] + [preds[run[-1] + 1]])
                if not grow:
                    break
                run.append(run[-1] + 1)
                if not go_on:
                    break
            cost = edit(truths[t], " ".join(preds[q] for q in run))
            if best is None or cost < best[1]:
                best = (run, cost)
        if best is not None:
            chosen.append(best)
    runs = [run for run in _disjoint(chosen) if len(run) > 1]
    starts = {run[0]: run for run in runs}
    inside = {p for run in runs for p in run}
    return [starts[p] if p in starts else [p] for p in range(len(preds)) if p in starts or p not in inside]


def _joins(truth_line: str, run: list[str], threshold: float = 0.6) -> tuple[bool, bool]:
    """Whether the run's last prediction belongs with the ones before it (judge_pred_merge), and whether the
    run may grow further (it is still no longer than the block)."""
    before, merged = " ".join(run[:-1]), " ".join(run)
    if edit(truth_line, merged) > edit(truth_line, before):
        return False, False
    def within(part: str) -> float | None:
        return best_window(part, truth_line) if 0 < len(part) <= len(truth_line) else None
    if any((d := within(part)) is None or d > threshold for part in run[:-1]):
        return False, False
    last = within(run[-1])
    if last is None:
        return False, False
    return last < threshold, len(merged) <= len(truth_line)


def _disjoint(chosen: list[tuple[list[int], float]]) -> list[list[int]]:
    """Runs chosen by different blocks that share predictions: of each group of overlapping runs, the set of
    mutually disjoint runs with the lowest mean cost (get_final_subset)."""
    out: list[list[int]] = []
    for group in _overlapping_groups(sorted(chosen, key=lambda c: c[0][0])):
        if len(group) == 1:
            out.append(group[0][0])
            continue
        paths: list[list[tuple[list[int], float]]] = [[group[0]]]
        for candidate in group[1:]:
            new_path = True
            for path in paths:
                same = next((i for i, (run, _) in enumerate(path) if run == candidate[0]), None)
                if same is not None:
                    if path[same][1] > candidate[1]:
                        path[same] = candidate
                    new_path = False
                elif not any(set(run) & set(candidate[0]) for run, _ in path):
                    path.append(candidate)
                    new_path = False
            if new_path:
                paths.append([candidate])
        best = min(paths, key=lambda path: sum(cost for _, cost in path) / len(path))
        out += [run for run, _ in best]
    return out


def _overlapping_groups(chosen: list[tuple[list[int], float]]) -> list[list[tuple[list[int], float]]]:
    groups: list[list[tuple[list[int], float]]] = []
    for item in chosen:
        if groups and any(set(item[0]) & set(run) for run, _ in groups[-1]):
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


# ---- one page's samples (dataset/end2end_dataset.py: process_get_matched_elements)

@dataclass
class Sample:
    page: str
    truth: str  # normalized
    pred: str  # normalized


@dataclass
class PageScore:
    text: list[Sample] = field(default_factory=list)
    formulas: list[Sample] = field(default_factory=list)
    tables: list[tuple[str, str]] = field(default_factory=list)  # (truth, prediction) normalized HTML
    order: tuple[list[float], list[float]] | None = None  # ground-truth order, the prediction's order


def score_page(page: dict, markdown: str) -> PageScore:
    name = Path(page["page_info"]["image_path"]).name
    blocks = prediction_blocks(markdown)
    truths = page_truth(page)
    score = PageScore()
    score.tables, cells = _match_tables([t for t in truths if t.category == "table"],
                                        [b for b in blocks if b.kind == TABLE])
    # grouped by kind, kinds in the order they first appear, then table cells: ties in position keep this order
    kinds = list(dict.fromkeys(b.kind for b in blocks if b.kind != TABLE))
    preds = _prediction_lines([b for kind in kinds for b in blocks if b.kind == kind] + cells)
    lines = _truth_lines(truths)
    matches = quick_match([line.norm for line in lines], [line.category in IGNORED_CATEGORIES for line in lines],
                          [norm for _, norm, _ in preds])
    ordered: list[tuple[list[float | None], int]] = []
    for m in matches:
        if not m.truths:
            continue  # predictions that match nothing do not count against the text (OmniDocBench drops them)
        category = Counter(lines[t].category for t in m.truths).most_common(1)[0][0]
        truth_text = "".join(lines[t].norm for t in m.truths)
        pred_text = "".join(preds[p][1] for p in m.preds)
        pred_category = preds[m.preds[0]][0] if m.preds else ""
        if category in TEXT_CATEGORIES:
            score.text.append(Sample(name, truth_text, pred_text))
            ordered.append(([lines[t].order for t in m.truths], preds[m.preds[0]][2] if m.preds else -1))
        elif category == FORMULA and pred_category in (FORMULA, INLINE, ""):
            score.formulas.append(Sample(name, truth_text, pred_text))
        elif category == FORMULA:  # a formula the prediction wrote as text is scored as text, as its Unicode
            raw = lines[m.truths[0]].raw if len(m.truths) == 1 else "\\begin{array}{l} " + " \\\\ ".join(
                "{" + lines[t].raw.strip("$").strip("\n") + "}" for t in m.truths) + " \\end{array}"
            score.text.append(Sample(name, clean_string(latex_to_text(raw)), pred_text))
    score.order = _reading_order(ordered)
    return score


@dataclass
class TruthLine:
    category: str
    raw: str
    norm: str
    order: float | None


def _truth_lines(truths: list[Truth]) -> list[TruthLine]:
    """The blocks text and formulas are matched against, in reading order, each normalized as what it is,
    those with nothing left to compare dropped; their order numbers are looked up by index in the list from
    before the drop, as OmniDocBench does (see _prediction_lines)."""
    mixed = sorted((t for t in truths if t.category in (*TEXT_CATEGORIES, *IGNORED_CATEGORIES, FORMULA)),
                   key=lambda t: t.order or 0)
    items = []
    for t in mixed:
        if t.category == FORMULA:
            items += [TruthLine(FORMULA, latex, normalized_formula(latex), order)
                      for latex, order in split_arrays([(t.text, t.order)])]
        else:
            items.append(TruthLine(t.category, t.text, normalized_text(t.text), t.order))
    kept = [line for line in items if line.raw and line.norm]
    return [TruthLine(line.category, line.raw, line.norm, items[i].order) for i, line in enumerate(kept)]


def _prediction_lines(pool: list[Block]) -> list[tuple[str, str, int]]:
    """The predictions in OmniDocBench's order (inline formulas last), formulas written as one-column arrays
    split into rows, each normalized as what it is: (category, normalized line, position) of those that keep
    something. OmniDocBench drops the empty lines but then looks categories and positions up by index in the
    list from before the drop (utils/match.py: get_gt_pred_lines hands back the unfiltered items), so after an
    empty line they come from a neighbour; kept as it is, so that the figures are the benchmark's."""
    items: list[tuple[str, str, int]] = []  # (category, content, position)
    for block in sorted(pool, key=lambda b: (b.fine_kind == INLINE, b.position)):
        match = _ARRAY.search(block.content) if block.kind == FORMULA else None
        spec = re.sub(r"\s+|\||@\{[^}]*\}|!\{[^}]*\}", "", match.group("spec")) if match else ""
        rows = [r.strip() for r in re.split(r"\\\\", match.group("body")) if r.strip()] if match else []
        for content in [f"\\[{row}\\]" for row in rows] if spec in ("l", "c", "r") else [block.content]:
            items.append((block.category, content, block.position))
    kept = [norm for category, content, _ in items
            if content and (norm := normalized_formula(content) if category in (FORMULA, INLINE)
                            else normalized_text(content) if category != TABLE else content)]
    return [(items[i][0], norm, items[i][2]) for i, norm in enumerate(kept)]


def _match_tables(truths: list[Truth], preds: list[Block]) -> tuple[list[tuple[str, str]], list[Block]]:
    """Ground-truth tables paired with predicted ones by edit distance on the raw HTML, every ground-truth
    table scored (an unmatched one against nothing); cells of predicted tables nothing matched become text."""
    truths = sorted(truths, key=lambda t: t.order or 0)
    truths = [t for t in truths if t.text]
    if not truths:
        return [], []
    if not preds:
        return [(normalized_table(t.text), "") for t in truths], []
    rows, cols = linear_sum_assignment(edit_matrix([t.text for t in truths], [p.content for p in preds]))
    paired = dict(zip(rows.tolist(), cols.tolist()))
    pairs = [(normalized_table(t.text), normalized_table(preds[paired[i]].content) if i in paired else "")
             for i, t in enumerate(truths)]
    cells = []
    for p, table in enumerate(preds):
        if p not in paired.values():
            cells += [Block(TEXT, text, table.position) for text in _cell_texts(table.content)]
    return pairs, cells


def _cell_texts(table: str) -> list[str]:
    """The text of each `td` that holds only text (BeautifulSoup's `.string`), as match_gt2pred_simple hands a
    table nothing matched to the text."""
    from bs4 import BeautifulSoup

    return [text for cell in BeautifulSoup(table, "html.parser").find_all("td")
            if cell.string and (text := re.sub(r"\$\\cdot\$", "", cell.string).strip())]


def _reading_order(ordered: list[tuple[list[float | None], int]]) -> tuple[list, list] | None:
    """The ground-truth order of the matched text blocks, and the same blocks in the order the prediction
    gives them (get_order_paired); blocks without an order number are left out."""
    truth_order = sorted(o for orders, _ in ordered for o in orders if o)
    by_prediction = sorted((pos, orders) for orders, pos in ordered if pos >= 0)
    pred_order = [o for _, orders in sorted(by_prediction, key=lambda x: x[0]) for o in orders if o]
    return (truth_order, pred_order) if truth_order or pred_order else None


# ---- TEDS (metrics/table_metric.py, after PubTabNet's)

def teds(pred: str, truth: str, structure_only: bool = False) -> float:
    """Tree-edit-distance similarity of two HTML tables: 1 - distance / nodes of the larger tree, where
    renaming a cell costs the normalized edit distance of its contents (0 or 1 for structure only)."""
    if not pred or not truth:
        return 0.0
    from apted import APTED, Config
    from lxml import html as lxml_html

    parser = lxml_html.HTMLParser(remove_comments=True, encoding="utf-8")
    tables = [lxml_html.fromstring(t, parser=parser).xpath("body/table") for t in (pred, truth)]
    if not all(tables):
        return 0.0
    pred_table, truth_table = (t[0] for t in tables)

    class CellConfig(Config):
        def rename(self, a, b):
            if (a.tag, a.colspan, a.rowspan) != (b.tag, b.colspan, b.rowspan):
                return 1.0
            if a.tag == "td" and (a.content or b.content):
                return edit(a.content, b.content)
            return 0.0

        def children(self, node):
            return node.children

    nodes = max(len(pred_table.xpath(".//*")), len(truth_table.xpath(".//*")))
    distance = APTED(_tree(pred_table, structure_only), _tree(truth_table, structure_only),
                     CellConfig()).compute_edit_distance()
    return 1.0 - distance / nodes


@dataclass
class _Node:
    tag: str
    colspan: int | None = None
    rowspan: int | None = None
    content: list[str] | None = None
    children: list[_Node] = field(default_factory=list)


def _tree(element, structure_only: bool) -> _Node:
    if element.tag == "td":
        return _Node("td", int(element.get("colspan", "1")), int(element.get("rowspan", "1")),
                     [] if structure_only else _cell_tokens(element)[1:-1])
    return _Node(element.tag, children=[_tree(child, structure_only) for child in element])


def _cell_tokens(element) -> list[str]:
    """A cell as tags and characters: `<td>`, its text, its children's tokens, `</td>`."""
    tokens = [f"<{element.tag}>", *(element.text or "")]
    for child in element:
        tokens += _cell_tokens(child)
    if element.tag != "unk":
        tokens.append(f"</{element.tag}>")
    if element.tag != "td":
        tokens += list(element.tail or "")
    return tokens


# ---- the benchmark's figures (metrics/cal_metric.py)

@dataclass
class Scores:
    text: float | None
    formula: float | None
    table_teds: float | None
    table_teds_structure: float | None
    table_edit: float | None
    reading_order: float | None
    pages: int
    counts: dict[str, int] = field(default_factory=dict)  # what each figure is over


def page_average(samples: list[tuple[str, str, str]]) -> float | None:
    """Edit distance per page (the page's summed distances over its summed longer lengths), averaged over
    the pages that have something to compare."""
    per_page: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for page, truth_text, pred in samples:
        if truth_text or pred:
            per_page[page][0] += Levenshtein.distance(pred, truth_text)
        per_page[page][1] += max(len(pred), len(truth_text))
    ratios = [d / n for d, n in per_page.values() if n]
    return sum(ratios) / len(ratios) if ratios else None


def aggregate(pages: list[PageScore], names: list[str]) -> Scores:
    text = [(s.page, s.truth, s.pred) for p in pages for s in p.text]
    formulas = [(s.page, s.truth, s.pred) for p in pages for s in p.formulas]
    tables = [(name, truth_table, pred) for name, p in zip(names, pages, strict=True) for truth_table, pred in p.tables]
    orders = [(name, p.order[0], p.order[1]) for name, p in zip(names, pages, strict=True) if p.order]
    structure = [teds(pred, truth_table, structure_only=True) for _, truth_table, pred in tables]
    full = [teds(pred, truth_table) for _, truth_table, pred in tables]
    return Scores(text=page_average(text), formula=page_average(formulas),
                  table_teds=sum(full) / len(full) if full else None,
                  table_teds_structure=sum(structure) / len(structure) if structure else None,
                  table_edit=page_average(tables), reading_order=page_average(orders), pages=len(pages),
                  counts={"text": len(text), "formula": len(formulas), "table": len(tables), "order": len(orders)})


def score_folder(truth: list[dict], predictions: Path) -> tuple[Scores, list[str]]:
    """Scores of the NAME.md beside each page image's name; pages without one are named and left out, as
    OmniDocBench leaves them out."""
    pages, names, missing = [], [], []
    for page in truth:
        name = Path(page["page_info"]["image_path"]).name
        found = next((p for p in (predictions / f"{Path(name).stem}.md", predictions / f"{name}.md") if p.is_file()),
                     None)
        if found is None:
            missing.append(name)
            continue
        markdown = re.sub(r"^<!-- page \d+ -->\n?", "", found.read_text(encoding="utf-8"), flags=re.M)
        pages.append(score_page(page, markdown))
        names.append(name)
    return aggregate(pages, names), missing


# ---- running docground convert
