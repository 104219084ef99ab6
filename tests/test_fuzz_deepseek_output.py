"""Fuzzing DeepSeek-OCR-2's output path beyond tests/test_deepseek_output.py (which throws token soup at
the parser): well-formed pages are generated from known blocks and must parse back into exactly those
blocks and pass validation; then they are damaged the ways a model or a transport damages them (cut
anywhere, loops, stray and broken tags, absurd numbers) and the whole path the engine runs (parse,
validate, build blocks) must keep its contract. Outputs of a model stuck for its whole token budget
must parse within the test timeout."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docground.ingest.engines.deepseek_ocr2.output import (
    BOX_SCALE,
    LABEL_KINDS,
    block_kind,
    parse_grounded,
    parse_plain,
    to_blocks,
)
from docground.ingest.engines.deepseek_ocr2.prompt import EOS_TEXT
from docground.ingest.engines.deepseek_ocr2.schema import FINISH_LENGTH, FINISH_STOP, Generation
from docground.ingest.engines.deepseek_ocr2.validate import problems
from docground.ingest.geometry import normalize, union
from docground.ingest.schema import BlockKind
from docground_testing.citecheck import assert_block_on_page

pytestmark = pytest.mark.timeout(120)

WORDS = ["harbour", "tide", "keeper", "ledger", "cargo", "quay", "crane", "vessel", "港口", "潮汐", "항구",
         "ñandú", "zürich", "façade"]
TEXT_LABELS = [label for label, kind in LABEL_KINDS.items() if kind not in (BlockKind.figure, BlockKind.table)]


@dataclass(frozen=True)
class Drawn:
    label: str
    boxes: tuple[tuple[int, int, int, int], ...]
    content: str

    def render(self) -> str:
        boxes = ", ".join(f"[{x0}, {y0}, {x1}, {y1}]" for x0, y0, x1, y1 in self.boxes)
        return f"<|ref|>{self.label}<|/ref|><|det|>[{boxes}]<|/det|>\n{self.content}\n"


@st.composite
def boxes(draw) -> tuple[int, int, int, int]:
    x0, y0 = draw(st.integers(0, BOX_SCALE - 1)), draw(st.integers(0, BOX_SCALE - 1))
    return x0, y0, draw(st.integers(x0 + 1, BOX_SCALE)), draw(st.integers(y0 + 1, BOX_SCALE))


@st.composite
def pages(draw) -> list[Drawn]:
    """A page of blocks; every word is numbered, so no block repeats another and no text ends in a loop
    (either would rightly fail validation)."""
    count = iter(range(10_000))
    blocks = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["text", "heading", "table", "figure"]))
        where = tuple(draw(st.lists(boxes(), min_size=1, max_size=3)))
        words = " ".join(f"{w}{next(count)}" for w in draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=25)))
        if kind == "figure":
            blocks.append(Drawn("image", where, ""))
        elif kind == "table":
            cells = "".join(f"<td>{w}</td>" for w in words.split())
            blocks.append(Drawn("table", where, f"<table><tr>{cells}</tr></table>"))
        elif kind == "heading":
            blocks.append(Drawn(draw(st.sampled_from(["title", "sub_title"])), where, f"## {words}"))
        else:
            blocks.append(Drawn(draw(st.sampled_from(TEXT_LABELS)), where, words))
    return blocks


def page_text(blocks: list[Drawn], eos: bool = True) -> str:
    return "".join(b.render() for b in blocks) + (EOS_TEXT if eos else "")


@settings(max_examples=200, deadline=None)
@given(pages())
def test_a_well_formed_page_parses_back_into_its_blocks_and_passes_validation(drawn):
    out = page_text(drawn)
    parsed = parse_grounded(out)
    assert [(g.label, g.boxes, g.content) for g in parsed] == [
        (d.label, [tuple(float(v) for v in box) for box in d.boxes], d.content) for d in drawn]
    assert problems(Generation(out, FINISH_STOP, tokens=len(out) // 3), parsed, grounded=True) == []
    blocks = to_blocks(parsed, 4, "doc")
    assert len(blocks) == len(drawn)
    for block, d in zip(blocks, drawn, strict=True):
        assert block.kind == block_kind(d.label) and block.page == 4
        assert block.bbox == pytest.approx(union(normalize(*box, BOX_SCALE, BOX_SCALE) for box in d.boxes))
        text = d.content.removeprefix("## ")
        assert text in block.markdown  # headings are re-levelled, all else is kept as written


@settings(max_examples=200, deadline=None)
@given(pages(), st.data())
def test_a_page_cut_anywhere_keeps_every_block_completed_before_the_cut(drawn, data):
    out = page_text(drawn, eos=False)
    cut = data.draw(st.integers(0, len(out)))
    starts = [len(page_text(drawn[:i], eos=False)) for i in range(1, len(drawn) + 1)]
    complete = sum(1 for start in starts if start <= cut)  # blocks whose successor had begun by the cut
    full = [(g.label, g.boxes, g.content) for g in parse_grounded(out)]
    kept = [(g.label, g.boxes, g.content) for g in parse_grounded(out[:cut])]
    assert kept[:complete] == full[:complete]
    assert len(kept) <= len(drawn)


DAMAGE = st.one_of(
    st.tuples(st.just("cut"), st.integers(0, 10**6)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.sampled_from(
        ["<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>", "[[", "]]", "[", "]", ",", "<|", "|>", EOS_TEXT, "\n\n\n",
         "nan", "inf", "-1e309", "99999999999999999999", "1e-400", "-0", "<table>", "</td>", "##", "\x00", "\ufffd"])),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 40)),
    st.tuples(st.just("loop"), st.integers(0, 10**6), st.integers(1, 300), st.integers(2, 40)),
    st.tuples(st.just("text"), st.integers(0, 10**6), st.text(max_size=12)),
)


def damage(out: str, steps: list[tuple]) -> str:
    for how, at, *args in steps:
        at = at % (len(out) + 1)
        if how == "cut":
            out = out[:at]
        elif how == "insert" or how == "text":
            out = out[:at] + args[0] + out[at:]
        elif how == "delete":
            out = out[:at] + out[at + args[0]:]
        else:  # the model copies a stretch over and over: its known failure
            size, times = args
            out = out[:at] + out[at:at + size] * times + out[at:]
    return out


@settings(max_examples=300, deadline=None)
@given(pages(), st.lists(DAMAGE, min_size=1, max_size=5), st.booleans(), st.text(max_size=80))
def test_damaged_output_keeps_the_engines_contract(drawn, steps, ended, layer_text):
    out = damage(page_text(drawn, eos=ended), steps)
    generation = Generation(out, FINISH_STOP if ended else FINISH_LENGTH, tokens=len(out) // 3)
    for grounded in (True, False):
        parsed = parse_grounded(out) if grounded else parse_plain(out)
        found = problems(generation, parsed, grounded, layer_text or None)
        assert all(isinstance(p, str) and p for p in found)
        if not ended:
            assert any("no EOS" in p for p in found)
        for block in to_blocks(parsed, 1, "doc"):
            assert_block_on_page(block)
            assert EOS_TEXT not in block.markdown and "<|ref|>" not in block.markdown


TOKEN_BUDGET_CHARS = 8192 * 4  # DOCGROUND_OCR_MAX_TOKENS at a few characters a token


@pytest.mark.parametrize("stuck", [
    "[" * TOKEN_BUDGET_CHARS,
    "<|det|>[[" + "1, " * (TOKEN_BUDGET_CHARS // 3),
    "<|ref|>" * (TOKEN_BUDGET_CHARS // 7),
    "<|ref|>text<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\nsame line\n" * (TOKEN_BUDGET_CHARS // 50),
    "<|ref|>text<|/ref|><|det|>[" + "[1, 2, 300, 400], " * (TOKEN_BUDGET_CHARS // 18),
    "word " * (TOKEN_BUDGET_CHARS // 5),
    "<td>" * (TOKEN_BUDGET_CHARS // 4),
    "<|" * (TOKEN_BUDGET_CHARS // 2),
    "<|" * (TOKEN_BUDGET_CHARS // 14) + "<|ref|>" + "ref|>" * (TOKEN_BUDGET_CHARS // 14),
    "".join(chr(0x4E00 + i % 2000) for i in range(TOKEN_BUDGET_CHARS)),
], ids=["brackets", "numbers", "ref-tags", "block-loop", "box-loop", "word-loop", "cells", "tag-starts",
        "nested-tags", "cjk"])
@pytest.mark.timeout(60)
def test_a_model_stuck_for_its_whole_budget_is_parsed_and_flagged(stuck):
    generation = Generation(stuck, FINISH_LENGTH, tokens=8192)
    for parsed in (parse_grounded(stuck), parse_plain(stuck)):
        found = problems(generation, parsed, grounded=True)
        assert any("no EOS" in p for p in found)
        to_blocks(parsed, 1, "doc")
