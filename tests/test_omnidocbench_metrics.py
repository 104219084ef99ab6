"""OmniDocBench's metrics (docground_testing/omnidocbench.py) on hand-made inputs: the edges where a slip
would not show in a table of averages (TEDS at its bounds, what normalization makes equal, a paragraph the
prediction split in two)."""

from __future__ import annotations

import pytest

from docground_testing.omnidocbench import Match, normalized_table, quick_match, score_page, teds

SPANNED = ('<table><tr><td rowspan="2">year</td><td colspan="2">pages</td></tr>'
           "<tr><td>read</td><td>unread</td></tr><tr><td>2025</td><td>12</td><td>3</td></tr></table>")


def test_teds_of_a_table_with_itself_is_one_and_of_nothing_is_zero():
    table = normalized_table(SPANNED)
    assert teds(table, table) == 1.0 and teds(table, table, structure_only=True) == 1.0
    assert teds("", table) == 0.0 and teds(table, "") == 0.0
    assert normalized_table("no table here") == "" and teds(normalized_table("no table here"), table) == 0.0


def test_teds_sees_text_and_spans_apart():
    truth = normalized_table(SPANNED)
    other_text = normalized_table(SPANNED.replace("2025", "1999"))
    assert teds(other_text, truth, structure_only=True) == 1.0
    assert teds(other_text, truth) == pytest.approx(0.9)  # one of 10 nodes (3 rows, 7 cells) wholly wrong
    no_span = normalized_table(SPANNED.replace(' colspan="2"', ""))
    assert teds(no_span, truth, structure_only=True) < 1.0


def test_header_cells_groups_and_styling_normalize_away():
    styled = ('<table class="x" style="width:5px"><thead><tr><th>year</th><th>pages</th></tr></thead>'
              "<tbody><tr><td><span>2025</span></td><td><sup>12</sup></td></tr></tbody></table>")
    plain = "<table><tr><td>year</td><td>pages</td></tr><tr><td>2025</td><td>12</td></tr></table>"
    assert normalized_table(styled) == normalized_table(plain)
    assert teds(normalized_table(styled), normalized_table(plain)) == 1.0


def test_a_paragraph_the_prediction_split_is_matched_whole():
    truths = ["thequickbrownfoxjumpsoverthelazydogandrunsaway", "anotherparagraphentirely"]
    preds = ["anotherparagraphentirely", "thequickbrownfoxjumps", "overthelazydogandrunsaway"]
    matches = quick_match(truths, [False, False], preds)
    assert sorted((m.truths, m.preds) for m in matches) == [([0], [1, 2]), ([1], [0])]


def test_predictions_close_to_a_header_leave_the_pool():
    truths = ["runningheaderofthejournal", "bodytextofthepage", "secondbodyparagraph"]
    preds = ["runningheaderofthejournal", "bodytextofthepage", "secondbodyparagraph"]
    matches = quick_match(truths, [True, False, False], preds)
    assert sorted((m.truths, m.preds) for m in matches) == [([1], [1]), ([2], [2])]
    assert all(isinstance(m, Match) for m in matches)


def page(*blocks: dict, relations: tuple = ()) -> dict:
    dets = [{"anno_id": i, "order": i + 1, **b} for i, b in enumerate(blocks)]
    return {"page_info": {"image_path": "p.jpg"}, "layout_dets": dets,
            "extra": {"relation": [{"relation_type": "truncated", "source_anno_id": a, "target_anno_id": b}
                                   for a, b in relations]}}


def test_a_perfect_page_scores_perfectly_and_headers_do_not_count():
    truth = page({"category_type": "header", "text": "Journal of Tests 12"},
                 {"category_type": "title", "text": "Results"},
                 {"category_type": "text_block", "text": "We measured the speed of $x^2$ light."},
                 {"category_type": "equation_isolated", "latex": "E = m c^{2}"},
                 {"category_type": "table", "html": SPANNED})
    markdown = ("# Results\n\nWe measured the speed of $x^2$ light.\n\n$$\nE = mc^2\n$$\n\n"
                "<table><tr><td rowspan=\"2\">year</td><td colspan=\"2\">pages</td></tr><tr><td>read</td>"
                "<td>unread</td></tr><tr><td>2025</td><td>12</td><td>3</td></tr></table>\n")
    score = score_page(truth, markdown)
    assert [(s.truth, s.pred) for s in score.text] == [("Results", "Results"),  # inline LaTeX as text: x^2
                                                      ("Wemeasuredthespeedofx2light", "Wemeasuredthespeedofx2light")]
    assert [(s.truth, s.pred) for s in score.formulas] == [("e=mc^{2}", "e=mc^2")]  # LaTeX is compared as written
    [(truth_table, pred_table)] = score.tables
    assert teds(pred_table, truth_table) == 1.0
    assert score.order == ([2, 3], [2, 3])


def test_truncated_blocks_are_scored_as_one_and_reading_order_counts_swaps():
    truth = page({"category_type": "text_block", "text": "First part of a paragraph that"},
                 {"category_type": "text_block", "text": " goes on in the next column."},
                 {"category_type": "text_block", "text": "Then a second paragraph follows."},
                 relations=((0, 1),))
    score = score_page(truth, "Then a second paragraph follows.\n\n"
                              "First part of a paragraph that goes on in the next column.\n")
    assert {s.truth for s in score.text} == {"Firstpartofaparagraphthatgoesoninthenextcolumn",
                                             "Thenasecondparagraphfollows"}
    assert all(s.truth == s.pred for s in score.text)
    assert score.order == ([1, 3], [3, 1])  # two blocks given in the wrong order: one edit per block
