"""DeepSeek-OCR-2's grounded output → blocks: recorded output, truncated and malformed output, properties."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docground.ingest.engines.deepseek_ocr2.output import (
    block_kind,
    parse_grounded,
    parse_plain,
    split_by_area,
    to_blocks,
)
from docground.ingest.schema import BlockKind
from docground_testing.citecheck import assert_block_on_page

RECORDED = Path("/work/shared/eval/dsocr2/news_902x565_grounding.txt")
CANDIDATES = [Path(__file__).resolve().parents[2] / "shared" / "eval" / "dsocr2" / RECORDED.name, RECORDED]

# The first blocks of the recorded output (the first DeepSeek-OCR on a 902x565 news screenshot), verbatim.
NEWS = (
    "<|ref|>sub_title<|/ref|><|det|>[[5, 12, 152, 60]]<|/det|>\n## 观点·深度》》\n"
    "<|ref|>image<|/ref|><|det|>[[5, 95, 528, 560]]<|/det|>\n"
    "<|ref|>sub_title<|/ref|><|det|>[[5, 608, 352, 656]]<|/det|>\n## 用精品标注时代文艺创作的高度\n"
    "<|ref|>text<|/ref|><|det|>[[5, 707, 525, 920]]<|/det|>\n"
    "近日揭晓的第十八届文华奖,作为文化和旅游部设立的专业舞台艺术领域政府最高奖项。\n"
)


def box999(x0, y0, x1, y1):
    return tuple(round(v / 999, 6) for v in (x0, y0, x1, y1))


def test_inline_recording_becomes_blocks_with_box_over_999():
    blocks = to_blocks(parse_grounded(NEWS), page=1, document_id="doc")
    assert [b.kind for b in blocks] == [BlockKind.heading, BlockKind.figure, BlockKind.heading, BlockKind.text]
    assert [b.bbox for b in blocks] == [box999(5, 12, 152, 60), box999(5, 95, 528, 560),
                                        box999(5, 608, 352, 656), box999(5, 707, 525, 920)]
    heading, figure, _, text = blocks
    assert heading.markdown == "## 观点·深度》》" and heading.level == 2
    assert heading.markdown[heading.lines[0].start:heading.lines[0].end] == "观点·深度》》"
    assert figure.markdown == "" and figure.lines == []
    assert text.markdown.startswith("近日揭晓") and text.lines[0].bbox == box999(5, 707, 525, 920)
    assert (text.lines[0].start, text.lines[0].end) == (0, len(text.markdown))
    assert [b.id for b in blocks] == [f"doc-p1-b{i}" for i in range(4)]


def test_recorded_file_parses_whole():
    path = next((p for p in CANDIDATES if p.exists()), None)
    if path is None:
        pytest.skip("recorded DeepSeek-OCR output not present (../shared/eval/dsocr2)")
    text = path.read_text()
    grounded = parse_grounded(text)
    assert len(grounded) == text.count("<|ref|>") == 13
    blocks = to_blocks(grounded, page=1, document_id="d")
    kinds = [b.kind for b in blocks]
    assert (kinds.count(BlockKind.heading) == 6 and kinds.count(BlockKind.text) == 6
            and kinds.count(BlockKind.figure) == 1)
    assert blocks[-1].markdown == "查看更多深度评论" and blocks[-1].bbox == box999(592, 920, 720, 954)


def test_several_boxes_make_one_block_with_a_line_per_box():
    out = "<|ref|>text<|/ref|><|det|>[[100, 100, 480, 900], [520, 100, 900, 300]]<|/det|>\n" + "word " * 60
    (block,) = to_blocks(parse_grounded(out), 2, "d")
    assert block.bbox == box999(100, 100, 900, 900)
    assert [ln.bbox for ln in block.lines] == [box999(100, 100, 480, 900), box999(520, 100, 900, 300)]
    first, second = block.lines
    assert first.start == 0 and first.end == second.start and second.end == len(block.markdown)
    assert block.markdown[second.start - 1] == " "  # cut at a word boundary
    assert first.end - first.start > second.end - second.start  # the larger box gets more of the text


def test_tables_and_formulas_keep_their_markup():
    table = "<table><tr><td>a</td><td>b</td></tr></table>"
    out = (f"<|ref|>table<|/ref|><|det|>[[10, 10, 500, 200]]<|/det|>\n{table}\n"
           "<|ref|>equation<|/ref|><|det|>[[10, 300, 500, 340]]<|/det|>\n\\[ a \\coloneqq b^2 \\]\n")
    tbl, formula = to_blocks(parse_grounded(out), 1, "d")
    assert tbl.kind == BlockKind.table and tbl.markdown == table and tbl.lines == []
    assert formula.kind == BlockKind.formula and formula.markdown == "\\[ a := b^2 \\]"


@pytest.mark.parametrize(("label", "kind"), [
    ("title", BlockKind.title), ("sub_title", BlockKind.heading), ("image", BlockKind.figure),
    ("image_caption", BlockKind.caption), ("table_caption", BlockKind.caption),
    ("table_footnote", BlockKind.footnote), ("equation", BlockKind.formula), ("TABLE", BlockKind.table),
    ("something_new", BlockKind.text),
])
def test_label_mapping(label, kind):
    assert block_kind(label) == kind


def test_title_is_a_level_one_heading_whatever_its_hashes():
    (block,) = to_blocks(parse_grounded("<|ref|>title<|/ref|><|det|>[[1, 1, 900, 50]]<|/det|>\n### Annual  Report\n"),
                         1, "d")
    assert block.kind == BlockKind.title and block.markdown == "# Annual Report" and block.level == 1


def test_truncated_output_keeps_what_is_complete():
    out = ("<|ref|>text<|/ref|><|det|>[[10, 10, 200, 40]]<|/det|>\nFirst paragraph.\n"
           "<|ref|>text<|/ref|><|det|>[[10, 50, 200, 80]]<|/det|>\nSecond par")
    blocks = to_blocks(parse_grounded(out), 1, "d")
    assert [b.markdown for b in blocks] == ["First paragraph.", "Second par"]
    for cut in ("<|ref|>te", "<|ref|>text<|/ref|><|det|>[[10, 90, 2", "<|ref|>text<|/ref|><|det|>[[10, 90, 200, 99]"):
        grounded = parse_grounded(out + "\n" + cut)
        assert [g.content for g in grounded][:2] == ["First paragraph.", "Second par"]
    tail = parse_grounded(out + "\n<|ref|>text<|/ref|><|det|>[[10, 90, 200, 99], [3, 4")[-1]
    assert tail.boxes == [(10, 90, 200, 99)] and tail.malformed_boxes == 1 and tail.content == ""


def test_malformed_boxes_are_counted_not_evaluated():
    out = "<|ref|>text<|/ref|><|det|>[[1, 2, 3], [__import__('os'), 1, 2, 3], [5, 5, 50, 50]]<|/det|>\nx"
    (g,) = parse_grounded(out)
    assert g.boxes == [(5, 5, 50, 50)] and g.malformed_boxes == 2


def test_eos_and_stray_tags_are_removed():
    out = "<|ref|>text<|/ref|><|det|>[[1, 1, 99, 99]]<|/det|>\nHello <|det|>world<｜end▁of▁sentence｜>junk"
    (g,) = parse_grounded(out)
    assert g.content == "Hello world"


def test_text_outside_refs_and_blocks_without_boxes_cover_the_page():
    blocks = to_blocks(parse_grounded("Preamble text\n<|ref|>text<|/ref|>\nno det here"), 1, "d")
    assert [b.markdown for b in blocks] == ["Preamble text", "no det here"]
    assert all(b.bbox == (0.0, 0.0, 1.0, 1.0) and b.lines == [] for b in blocks)


def test_free_ocr_output_becomes_paragraph_blocks():
    blocks = parse_plain("# Title\n\nA paragraph\nwrapped.\n\n<table><tr><td>1</td></tr></table>\n\n\\[x\\]")
    assert [(b.label, b.content) for b in blocks] == [
        ("sub_title", "# Title"), ("text", "A paragraph\nwrapped."),
        ("table", "<table><tr><td>1</td></tr></table>"), ("equation", "\\[x\\]")]


def test_split_by_area_covers_the_text_in_order():
    text = "a" * 10 + " " + "b" * 10
    assert split_by_area(text, 0, [(0, 0, 0.5, 0.1)]) == [(0, len(text))]
    ranges = split_by_area(text, 0, [(0, 0, 0.5, 0.1), (0, 0.2, 0.5, 0.3)])
    assert ranges == [(0, 11), (11, 21)]


TAGS = ["<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>", "[[", "]]", "[", "]", ", ", "\n", "<｜end▁of▁sentence｜>"]
pieces = st.one_of(st.sampled_from(TAGS), st.integers(-5000, 5000).map(str), st.sampled_from(
    ["text", "title", "image", "table", "sub_title", "## H", "<table>", "x"]), st.text(max_size=6))


@settings(max_examples=300, deadline=None)
@given(st.lists(pieces, max_size=60).map("".join))
def test_any_output_parses_without_raising_and_boxes_stay_on_the_page(out):
    for grounded in (parse_grounded(out), parse_plain(out)):
        for block in to_blocks(grounded, 1, "d"):
            assert_block_on_page(block)
