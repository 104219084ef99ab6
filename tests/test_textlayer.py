import pymupdf
import pytest

from docground.ingest.engines.textlayer import TextLayerEngine
from docground.ingest.geometry import coverage, normalize
from docground.ingest.processors.furniture import mark_furniture
from docground.ingest.providers import open_source
from docground.ingest.schema import FURNITURE, BlockKind
from docground_testing.pdfgen import A4, cjk_pdf, rotated_pdf, table_pdf, two_column_pdf


def parse_all(data: bytes):
    src = open_source(data)
    engine = TextLayerEngine()
    return [engine.parse(p, "doc") for p in src.pages()]


def test_two_columns_are_read_column_by_column():
    data, lines = two_column_pdf()
    layout = parse_all(data)[0]
    text = "\n".join(b.markdown for b in layout.blocks)
    positions = [text.index(ln["text"].split(" ", 1)[0]) for ln in lines]
    assert positions == sorted(positions), "left column first, then the right one, top to bottom"


def test_line_boxes_match_where_the_line_was_drawn():
    data, lines = two_column_pdf()
    layout = parse_all(data)[0]
    drawn = {ln["text"]: normalize(*ln["bbox"], *A4) for ln in lines}
    checked = 0
    for block in layout.blocks:
        for line in block.lines:
            text = block.markdown[line.start:line.end]
            if text in drawn:
                assert coverage(drawn[text], line.bbox) > 0.8
                assert coverage(line.bbox, drawn[text]) > 0.5
                checked += 1
    assert checked == len(lines)


def test_title_is_recognised():
    data, _ = two_column_pdf()
    titles = [b for b in parse_all(data)[0].blocks if b.kind == BlockKind.title]
    assert [t.markdown for t in titles] == ["# Grounded Retrieval Study"]


def test_running_headers_and_page_numbers_are_furniture():
    data, _ = two_column_pdf(pages=4, header="Journal of Synthetic Tests")
    layouts = parse_all(data)
    mark_furniture(layouts)
    for layout in layouts:
        furniture = {b.markdown for b in layout.blocks if b.kind in FURNITURE}
        assert "Journal of Synthetic Tests" in furniture
        assert str(layout.page) in furniture
        body = [b for b in layout.blocks if b.kind not in FURNITURE]
        assert all("Journal" not in b.markdown for b in body)


def page_with_a_foot(foot: str) -> bytes:
    """Body paragraphs in 11 pt, then one small line alone at the foot of the page (a footnote or a stamp)."""
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    for n in range(4):
        page.insert_textbox(pymupdf.Rect(72, 90 + 150 * n, 523, 230 + 150 * n),
                            f"Paragraph {n} explains how the engine reads a page of text. " * 4, fontsize=11)
    page.insert_text((80, A4[1] - 88), foot, fontsize=7)
    return doc.tobytes()


@pytest.mark.parametrize(("foot", "kept"), [
    ("1 The '.m' suffix was chosen for compatibility with matlab.", True),  # a footnote answers questions
    ("Downloaded from example.org by a reader", False),  # a stamp does not
])
def test_a_footnote_alone_at_the_foot_of_a_page_is_text_not_a_footer(foot, kept):
    layouts = parse_all(page_with_a_foot(foot))
    mark_furniture(layouts)
    body = " ".join(b.markdown for b in layouts[0].blocks if b.kind not in FURNITURE)
    assert (foot.split()[1] in body and "matlab" in body) if kept else "Downloaded" not in body


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_boxes_follow_page_rotation(rotation):
    data = rotated_pdf(rotation)
    layout = parse_all(data)[0]
    block = next(b for b in layout.blocks if "marker" in b.markdown)
    # The box must cover the text's ink on the page as displayed.
    page = pymupdf.open(stream=data)[0]
    pix = page.get_pixmap(dpi=72)
    x0, y0, x1, y1 = block.bbox
    ink = 0
    for y in range(int(y0 * pix.height), int(y1 * pix.height) + 1):
        for x in range(int(x0 * pix.width), int(x1 * pix.width) + 1):
            if 0 <= x < pix.width and 0 <= y < pix.height and pix.pixel(x, y)[0] < 128:
                ink += 1
    assert ink > 50
    assert (layout.width_pt > layout.height_pt) == (rotation in (90, 270))


def test_cjk_text_has_no_spurious_spaces():
    text = "\n".join(b.markdown for b in parse_all(cjk_pdf())[0].blocks)
    assert "文档理解与检索增强生成系统" in text
    assert "知识库问答" in text
    assert "日本語の文書を検索します" in text
    assert "한국어 문서를 검색합니다" in text  # Korean keeps its word spaces


def test_ruled_table_becomes_a_markdown_table_with_row_boxes():
    data, rows = table_pdf()
    layout = parse_all(data)[0]
    tables = [b for b in layout.blocks if b.kind == BlockKind.table]
    assert len(tables) == 1
    table = tables[0]
    md_rows = [r for r in table.markdown.split("\n") if "---" not in r]
    assert [[c.strip() for c in r.strip("|").split("|")] for r in md_rows] == rows
    assert len(table.lines) == len(rows)
    tops = [ln.bbox[1] for ln in table.lines]
    assert tops == sorted(tops)
    # Cell text is not repeated outside the table.
    assert not any("1,204" in b.markdown for b in layout.blocks if b.kind != BlockKind.table)
    order = [b.kind for b in layout.blocks]
    assert order.index(BlockKind.table) == 1


def test_header_row_above_the_rules_joins_its_table():
    from docground_testing.pdfgen import header_outside_grid_pdf

    data, rows = header_outside_grid_pdf()
    layout = parse_all(data)[0]
    tables = [b for b in layout.blocks if b.kind == BlockKind.table]
    assert len(tables) == 1, [b.markdown for b in layout.blocks]
    md_rows = [r for r in tables[0].markdown.split("\n") if "---" not in r]
    assert [c.strip() for c in md_rows[0].strip("|").split("|")] == rows[0]
    # The sentence above the table stays text.
    assert any(b.kind == BlockKind.text and b.markdown.startswith("The composition") for b in layout.blocks)


def test_many_large_initials_on_a_page_do_not_break_parsing():
    # A map-like page: many one-letter labels set large, some beside text (drop-cap candidates).
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    for i in range(12):
        x, y = 60 + (i % 4) * 130, 100 + (i // 4) * 200
        page.insert_text((x, y), "ABCDEFGHIJKL"[i], fontsize=30)
        page.insert_text((x + 24, y - 18), "small label text beside it", fontsize=9)
        page.insert_text((x + 24, y - 6), "a second small line", fontsize=9)
    layout = parse_all(doc.tobytes())[0]
    assert sum(b.markdown.count("label") for b in layout.blocks) == 12


@pytest.mark.parametrize("repeat_header", [False, True])
def test_a_table_running_on_over_a_page_break_keeps_its_header_on_the_next_page(repeat_header):
    from docground.ingest.processors import across_pages
    from docground_testing.pdfgen import continued_table_pdf

    data, rows = continued_table_pdf(repeat_header=repeat_header)
    layouts = parse_all(data)
    across_pages(layouts)
    part = next(b for b in layouts[1].blocks if b.kind == BlockKind.table)
    md_rows = [[c.strip() for c in r.strip("|").split("|")] for r in part.markdown.split("\n") if "---" not in r]
    assert md_rows == [rows[0], *rows[3:]]  # the header on top once, every row of page 2 a row under it
    # each line box still points at its own row's text; the header added has none on this page
    texts = [part.markdown[ln.start:ln.end] for ln in part.lines]
    assert [[c.strip() for c in t.split("|")] for t in texts] == (md_rows if repeat_header else md_rows[1:])


def test_a_continued_table_under_a_title_row_gets_the_title_and_its_column_names():
    from docground.ingest.processors import across_pages
    from docground.ingest.schema import Block, Line, PageLayout

    def table(page: int, rows: list[str]) -> PageLayout:
        markdown = "\n".join([rows[0], "| --- | --- |", *rows[1:]])
        lines, pos = [], 0
        for i, row in enumerate(markdown.split("\n")):
            if i != 1:
                box = (0.1, 0.1 + 0.02 * i, 0.9, 0.115 + 0.02 * i)
                lines.append(Line(bbox=box, start=pos + 2, end=pos + len(row) - 2))
            pos += len(row) + 1
        block = Block(id=f"b{page}", page=page, kind=BlockKind.table, markdown=markdown, bbox=(0.1, 0.1, 0.9, 0.5),
                      lines=lines)
        return PageLayout(page=page, width_pt=595, height_pt=842, blocks=[block], engine="t", engine_version="1")

    layouts = [table(1, ["| List of services |  |", "| Service | DNS name |", "| Directory | ldap |"]),
               table(2, ["| Printing | ipp |", "| Web cache | webcache |"])]
    across_pages(layouts)
    part = layouts[1].blocks[0]
    assert part.markdown.split("\n") == ["| List of services |  |", "| --- | --- |", "| Service | DNS name |",
                                         "| Printing | ipp |", "| Web cache | webcache |"]
    assert [part.markdown[ln.start:ln.end] for ln in part.lines] == ["Printing | ipp", "Web cache | webcache"]
