"""`docground convert`: documents to markdown, layout JSON and boxes images, with no knowledge base,
through the real CLI, routing and engines; every check compares with what the PDF itself holds."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pymupdf
import pytest
from PIL import Image
from typer.testing import CliRunner

from docground.api.cli import app as cli
from docground.ingest.renderers import KIND_COLORS, DocumentLayout
from docground.ingest.schema import FURNITURE, BlockKind
from docground_testing.pdfgen import scan_with_red_box, two_column_pdf

from .conftest import corpus_file

CORPUS_PDFS = ("docs/academic/mineru_demo2_ieee_stereo.pdf", "docs/misc/pdfplumber_scotus-transcript-p1.pdf")
WORD = re.compile(r"[^\W_]{3,}")


def convert(*args: str | Path):
    return CliRunner().invoke(cli, ["convert", *map(str, args)])


def words(text: str) -> Counter:
    return Counter(w.casefold() for w in WORD.findall(text))


def recall(expected: Counter, found: Counter) -> float:
    return sum((expected & found).values()) / max(1, sum(expected.values()))


def report_pdf() -> tuple[bytes, list[dict]]:
    """Two columns of known lines on two pages, and a figure on the last page."""
    data, lines = two_column_pdf(pages=2, seed=5)
    doc = pymupdf.open(stream=data)
    doc[-1].insert_image(pymupdf.Rect(100, 600, 400, 800), stream=scan_with_red_box())
    return doc.tobytes(), lines


def page_png(data: bytes) -> bytes:
    return pymupdf.open(stream=data)[0].get_pixmap(dpi=150).tobytes("png")


def layout_of(out: Path, name: str) -> DocumentLayout:
    return DocumentLayout.model_validate_json((out / f"{name}.json").read_text())


def check_boxes(layout: DocumentLayout, pdf: pymupdf.Document | None) -> None:
    """Boxes in the one form (0..1, ordered corners), points the same boxes on the page's displayed size."""
    for page in layout.pages:
        if pdf is not None:
            rect = pdf[page.page - 1].rect
            assert (page.width_pt, page.height_pt) == pytest.approx((rect.width, rect.height))
        for block in page.blocks:
            for box, box_pt in [(block.bbox, block.bbox_pt)] + [(ln.bbox, ln.bbox_pt) for ln in block.lines]:
                x0, y0, x1, y1 = box
                assert 0 <= x0 <= x1 <= 1 and 0 <= y0 <= y1 <= 1, box
                scaled = (x0 * page.width_pt, y0 * page.height_pt, x1 * page.width_pt, y1 * page.height_pt)
                assert box_pt == pytest.approx(scaled, abs=0.01)


def check_boxes_images(out: Path, name: str, layout: DocumentLayout) -> None:
    images = sorted((out / f"{name}.boxes").glob("page-*.png"))
    assert [p.name for p in images] == [f"page-{p.page}.png" for p in layout.pages]
    for path, page in zip(images, layout.pages, strict=True):
        image = Image.open(path).convert("RGB")
        assert image.width / image.height == pytest.approx(page.width_pt / page.height_pt, rel=0.02)
        colors = {color for _, color in image.getcolors(maxcolors=1 << 24)}
        assert all(KIND_COLORS[b.kind] in colors for b in page.blocks), f"{path}: a block's box is not drawn"


def test_convert_a_folder_writes_markdown_json_and_boxes(tmp_path):
    docs, out = tmp_path / "docs", tmp_path / "out"
    (docs / "scans").mkdir(parents=True)
    report, lines = report_pdf()
    (docs / "report.pdf").write_bytes(report)
    (docs / "scans" / "page.png").write_bytes(page_png(report))
    (docs / "notes.bin").write_bytes(b"\x00\x01 not a document: left alone inside folders")

    result = convert(docs, "--out", out)
    assert result.exit_code == 0, result.output
    assert "2 converted, 0 up to date, 0 failed" in result.output

    markdown = (out / "report.md").read_text()
    assert markdown.startswith("<!-- page 1 -->") and "<!-- page 2 -->" in markdown
    places = [markdown.find(line["text"]) for line in lines]
    assert min(places) >= 0, "a line of the text layer is missing from the markdown"
    assert places == sorted(places), "the markdown is not in reading order (column by column)"
    [figure] = re.findall(r"!\[figure\]\(([^)]+)\)", markdown)
    crop = Image.open(out / figure)
    assert crop.getpixel((crop.width // 2, crop.height // 2)) == (255, 0, 0)  # the red box drawn in the figure

    layout = layout_of(out, "report")
    check_boxes(layout, pymupdf.open(stream=report))
    assert [p.engine for p in layout.pages] == ["textlayer", "textlayer"]
    assert all(p.reason == "text layer" for p in layout.pages)
    assert [b.figure for p in layout.pages for b in p.blocks if b.kind == BlockKind.figure] == [figure]
    line_boxes = [ln.bbox_pt for p in layout.pages for b in p.blocks for ln in b.lines]
    for line in lines:  # each drawn line's middle lies in a line box of the JSON
        cx, cy = (line["bbox"][0] + line["bbox"][2]) / 2, (line["bbox"][1] + line["bbox"][3]) / 2
        assert any(x0 <= cx <= x1 and y0 <= cy <= y1 for x0, y0, x1, y1 in line_boxes), line["text"]
    check_boxes_images(out, "report", layout)

    scan = layout_of(out / "scans", "page")
    assert scan.pages[0].reason.startswith("image page")
    check_boxes(scan, None)
    check_boxes_images(out / "scans", "page", scan)
    if scan.pages[0].engine != "none":  # an OCR engine is installed: it read the page
        page_one = Counter(w.casefold() for ln in lines if ln["page"] == 1 for w in WORD.findall(ln["text"]))
        assert recall(page_one, words((out / "scans" / "page.md").read_text())) > 0.8


def test_corpus_pdfs_match_their_text_layer(tmp_path):
    docs, out = tmp_path / "docs", tmp_path / "out"
    docs.mkdir()
    for relative in CORPUS_PDFS:
        shutil.copy(corpus_file(relative), docs)
    result = convert(docs, "--out", out)
    assert result.exit_code == 0, result.output
    for pdf_path in sorted(docs.iterdir()):
        pdf = pymupdf.open(pdf_path)
        markdown = (out / f"{pdf_path.stem}.md").read_text()
        layout = layout_of(out, pdf_path.stem)
        # furniture (running heads, page numbers) stays out of the markdown and is tagged in the JSON
        furniture = words(" ".join(b.markdown for p in layout.pages for b in p.blocks if b.kind in FURNITURE))
        text_layer = words("".join(page.get_text() for page in pdf))
        assert recall(text_layer, words(markdown) + furniture) > 0.97, pdf_path.name
        assert recall(text_layer, words(markdown)) > 0.75, pdf_path.name
        for link in re.findall(r"!\[figure\]\(([^)]+)\)", markdown):
            assert (out / link).is_file()
        assert [p.page for p in layout.pages] == list(range(1, len(pdf) + 1))
        check_boxes(layout, pdf)
        check_boxes_images(out, pdf_path.stem, layout)


def test_a_second_run_skips_what_is_up_to_date(tmp_path):
    docs, out = tmp_path / "docs", tmp_path / "out"
    docs.mkdir()
    (docs / "a.pdf").write_bytes(two_column_pdf(pages=1, seed=1)[0])
    (docs / "b.pdf").write_bytes(two_column_pdf(pages=1, seed=2)[0])
    assert convert(docs, "--out", out).exit_code == 0
    written = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    again = convert(docs, "--out", out)
    assert again.exit_code == 0 and "0 converted, 2 up to date" in again.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == written

    changed, lines = two_column_pdf(pages=1, seed=3)
    (docs / "b.pdf").write_bytes(changed)
    (out / "a.boxes" / "page-1.png").unlink()
    third = convert(docs, "--out", out)
    assert "2 converted, 0 up to date" in third.output  # new content; a missing output
    assert lines[0]["text"] in (out / "b.md").read_text()
    assert (out / "a.boxes" / "page-1.png").is_file()

    fewer = convert(docs, "--out", out, "--format", "md")  # other options: converted again
    assert "2 converted" in fewer.output
    assert json.loads((out / "a.manifest.json").read_text())["made_from"]["formats"] == ["md"]


def test_pages_and_formats_select_what_is_written(tmp_path):
    data, lines = two_column_pdf(pages=3, seed=7)
    (tmp_path / "three.pdf").write_bytes(data)
    out = tmp_path / "out"
    result = convert(tmp_path / "three.pdf", "--out", out, "--pages", "2-3,9", "--format", "json,boxes")
    assert result.exit_code == 0, result.output
    assert [p.page for p in layout_of(out, "three").pages] == [2, 3]
    assert sorted(p.name for p in (out / "three.boxes").iterdir()) == ["page-2.png", "page-3.png"]
    assert not (out / "three.md").exists()
    assert convert(tmp_path / "three.pdf", "--out", out, "--pages", "3-1").exit_code == 2
    assert convert(tmp_path / "three.pdf", "--out", out, "--format", "docx").exit_code == 2


def test_files_that_fail_are_named_with_the_reason_and_the_exit_code_says_so(tmp_path):
    good = tmp_path / "good.pdf"
    good.write_bytes(two_column_pdf(pages=1, seed=9)[0])
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 this is not really a PDF")
    zipped = tmp_path / "archive.pdf"
    zipped.write_bytes(b"PK\x03\x04 a zip file, not a pdf")
    out = tmp_path / "out"
    result = convert(good, broken, zipped, tmp_path / "missing.pdf", "--out", out)
    assert result.exit_code == 1
    assert re.search(r"✗ \S*broken\.pdf: .*could not be opened", result.output), result.output
    assert re.search(r"✗ \S*archive\.pdf: .*zip", result.output), result.output
    assert re.search(r"✗ \S*missing\.pdf: no such file", result.output), result.output
    assert (out / "good.md").is_file() and not (out / "broken.md").exists()


def test_files_whose_names_differ_only_in_extension_keep_apart(tmp_path):
    data, lines = two_column_pdf(pages=1, seed=12)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "scan.pdf").write_bytes(data)
    (tmp_path / "in" / "scan.png").write_bytes(page_png(data))
    out = tmp_path / "out"
    assert convert(tmp_path / "in", "--out", out).exit_code == 0
    assert lines[0]["text"] in (out / "scan.pdf.md").read_text()
    assert (out / "scan.png.json").is_file()
