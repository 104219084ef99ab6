"""Figure crops: figure blocks of any engine saved as PNGs with their document."""

from __future__ import annotations

import pymupdf
from PIL import Image

from docground.ingest.builders import BlockDraft, TextLine, build_block
from docground.ingest.processors.figures import figure_path, save_figure_crops
from docground.ingest.providers import open_source
from docground.ingest.schema import BlockKind, PageLayout
from docground_testing.pdfgen import scan_with_red_box


def layout_with(blocks: list[tuple[BlockKind, tuple]]) -> PageLayout:
    built = [build_block(BlockDraft(kind, [TextLine(text="" if kind == BlockKind.figure else "x", bbox=box)]),
                         f"doc-p1-b{i}", 1) for i, (kind, box) in enumerate(blocks)]
    return PageLayout(page=1, width_pt=500, height_pt=400, blocks=built, engine="test", engine_version="1")


def test_a_figure_block_is_cropped_from_the_page_and_saved_once(tmp_path):
    source = open_source(scan_with_red_box())
    layout = layout_with([(BlockKind.figure, (0.2, 0.2, 0.6, 0.6)), (BlockKind.text, (0.0, 0.0, 0.5, 0.1)),
                          (BlockKind.figure, (0.9, 0.9, 0.901, 0.901))])  # the last is a speck
    assert save_figure_crops(tmp_path, source, [layout], dpi=144) == 1
    crop = Image.open(figure_path(tmp_path, "doc-p1-b0"))
    assert crop.size == (400, 320)
    assert crop.getpixel((5, 5)) == (255, 0, 0) and crop.getpixel((394, 314)) == (255, 0, 0)
    assert not figure_path(tmp_path, "doc-p1-b1").exists() and not figure_path(tmp_path, "doc-p1-b2").exists()
    assert save_figure_crops(tmp_path, source, [layout], dpi=144) == 0  # already there: nothing rewritten


def test_ingest_saves_the_figures_of_born_digital_pages(service):
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_text((72, 72), "A report page with a chart below it.", fontsize=12)
    page.insert_image(pymupdf.Rect(100, 200, 400, 500), stream=scan_with_red_box())
    result = service.ingest("figs", "chart.pdf", doc.tobytes())
    assert result.status == "ready"
    crops = list((service.blob_dir(result.document_id) / "figures").glob("*.png"))
    assert len(crops) == 1
    crop = Image.open(crops[0])
    # the 1000x800 image keeps its aspect in the 300 pt square: 300x240 pt, at 144 DPI 600x480 px
    assert abs(crop.width - 600) <= 2 and abs(crop.height - 480) <= 2
    assert crop.getpixel((crop.width // 2, crop.height // 2)) == (255, 0, 0)
