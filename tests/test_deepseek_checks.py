"""The repetition guard (incremental n-gram ban) and the page validation that drives the retry ladder."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docground.ingest.engines.deepseek_ocr2.ngram import NGramGuard
from docground.ingest.engines.deepseek_ocr2.output import parse_grounded
from docground.ingest.engines.deepseek_ocr2.schema import Generation
from docground.ingest.engines.deepseek_ocr2.validate import problems, tail_period, text_agreement


def scanned_bans(ids, size, window, exempt=()):
    """The authors' processor, verbatim in effect: rescan the window for n-grams with the current prefix."""
    if len(ids) < size:
        return set()
    prefix = tuple(ids[len(ids) - size + 1:])
    found = {ids[i + size - 1] for i in range(max(0, len(ids) - window), len(ids) - size + 1)
             if tuple(ids[i:i + size - 1]) == prefix}
    return found - set(exempt)


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 6), st.integers(1, 30), st.lists(st.integers(0, 4), min_size=0, max_size=120))
def test_incremental_bans_equal_the_window_scan_at_every_step(size, window, ids):
    guard = NGramGuard(size, window, exempt={3})
    for end in range(len(ids) + 1):
        assert set(guard.banned(ids[:end])) == scanned_bans(ids[:end], size, window, {3})


def test_guard_survives_skipped_steps_and_taken_back_tokens():
    rng = random.Random(7)
    ids = [rng.randrange(3) for _ in range(300)]
    guard = NGramGuard(4, 20)
    for end in (10, 11, 50, 51, 200, 120, 121, 300):  # jumps ahead, then back (a preempted request)
        assert set(guard.banned(ids[:end])) == scanned_bans(ids[:end], 4, 20)


def test_table_cells_are_exempt_and_bad_arguments_refused():
    ids = [5, 128821, 5, 128821, 5]  # next would repeat "5 <td>": a table row
    assert NGramGuard(2, 90, exempt=(128821, 128822)).banned(ids) == []
    assert NGramGuard(2, 90).banned(ids) == [128821]
    with pytest.raises(ValueError):
        NGramGuard(0, 10)


def ok(text: str) -> Generation:
    return Generation(text=text, finish_reason="stop", tokens=len(text))


PAGE = "<|ref|>title<|/ref|><|det|>[[100, 40, 900, 90]]<|/det|>\n# Report\n" + "".join(
    f"<|ref|>text<|/ref|><|det|>[[100, {100 + 60 * i}, 900, {150 + 60 * i}]]<|/det|>\nParagraph {i} says something.\n"
    for i in range(6))


def test_a_clean_page_has_no_problems():
    assert problems(ok(PAGE), parse_grounded(PAGE), grounded=True) == []


def test_missing_eos_is_a_problem():
    found = problems(Generation(PAGE, "length", 8192), parse_grounded(PAGE), grounded=True)
    assert found == ["no EOS after 8192 tokens"]


def test_a_block_copied_over_and_over_is_repetition():
    looped = PAGE + "<|ref|>text<|/ref|><|det|>[[100, 500, 900, 540]]<|/det|>\nQuarterly header line\n" * 6
    assert any(p.startswith("repetition (a block 6 times)") for p in problems(ok(looped), parse_grounded(looped), True))


def test_a_text_ending_in_a_cycle_is_repetition():
    looped = PAGE + "the same words again and " * 20
    assert tail_period(looped) == len("the same words again and ")
    assert any("loop" in p for p in problems(Generation(looped, "length", 8192), parse_grounded(looped), True))
    assert tail_period("a normal ending that does not repeat itself at all.") is None


def test_box_problems():
    out = ("<|ref|>text<|/ref|><|det|>[[10, 10, 1200, 50]]<|/det|>\nfar right\n"
           "<|ref|>text<|/ref|><|det|>[[10, 60, 10, 90]]<|/det|>\nflat\n")
    found = problems(ok(out), parse_grounded(out), grounded=True)
    assert "boxes out of range (1 of 2)" in found
    assert "degenerate boxes (1 of 2)" in found
    assert "1 blocks without a box" in found
    assert problems(ok("Plain text, no grounding"), parse_grounded("Plain text, no grounding"), True) == ["no boxes"]


def test_free_ocr_is_not_asked_for_boxes():
    assert problems(ok("Plain text"), parse_grounded("Plain text"), grounded=False) == []


def test_agreement_with_the_text_layer():
    layer = "The committee approved the budget for the next fiscal year and the new investment plan."
    assert text_agreement(layer.upper(), layer) == pytest.approx(1.0)
    assert text_agreement("Zebra quartz vexing jumpy fog " * 3, layer) < 0.3
    assert text_agreement("anything", "short") is None  # too little text layer to judge
    assert text_agreement("anything", "\ufffd" * 20 + layer) is None  # a broken text layer says nothing
    wrong = "<|ref|>text<|/ref|><|det|>[[1, 1, 900, 900]]<|/det|>\nZebra quartz vexing jumpy fog wolf\n"
    found = problems(ok(wrong), parse_grounded(wrong), grounded=True, layer_text=layer)
    assert len(found) == 1 and found[0].startswith("disagrees with the text layer")


def test_a_failed_request_says_why():
    assert problems(Generation.failed("HTTP 500: boom"), [], grounded=True) == ["request failed: HTTP 500: boom"]


def scanned_period(text, min_span=120, min_repeats=3, max_period=1000):
    n = len(text)
    for p in range(1, max_period + 1):
        repeats = max(min_repeats, -(-min_span // p))
        if repeats * p <= n and text[n - repeats * p:] == text[n - p:] * repeats:
            return p
    return None


@settings(max_examples=300, deadline=None)
@given(st.text("ab ", max_size=200), st.text("ab ", min_size=1, max_size=70), st.integers(1, 12), st.integers(0, 70))
def test_loop_detection_equals_trying_every_period(prefix, unit, times, cut):
    text = prefix + unit * times + unit[:cut]
    assert tail_period(text) == scanned_period(text)
