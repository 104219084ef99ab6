"""How the CPU OCR engine spends its time: the resolution a page's text needs, and pages cut into bands
between their lines so that its threads read one page at once. Scans are drawn in the test."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from docground.ingest.engines.tesseract import DPI_RANGE, TesseractEngine, band_cuts, line_height
from docground.ingest.providers import open_source
from docground.ingest.providers.image import ImagePage
from docground_testing.pdfgen import image_only_pdf, two_column_pdf


def striped(line_px: int, gap_px: int, size=(800, 1000)) -> np.ndarray:
    """A white page of black 'lines' `line_px` tall, `gap_px` apart, each broken into words."""
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    y = 60
    while y + line_px < size[1] - 60:
        for x in range(60, size[0] - 100, 70):
            draw.rectangle((x, y, x + 55, y + line_px - 1), fill=0)
        y += line_px + gap_px
    return np.asarray(image)


@pytest.mark.parametrize("line_px", [8, 14, 24])
def test_line_height_is_measured_whichever_way_the_page_lies(line_px):
    page = striped(line_px, line_px // 2 + 3)
    assert line_height(page) == pytest.approx(line_px, abs=1)
    assert line_height(np.rot90(page).copy()) == pytest.approx(line_px, abs=1)


def test_a_blank_page_has_no_line_height():
    assert line_height(np.full((600, 400), 255, np.uint8)) is None


def test_large_print_is_rendered_at_less_than_small_print():
    engine = TesseractEngine(workers=1, dpi=200)
    small = ImagePage(1, Image.fromarray(striped(6, 6, (1700, 2200))).convert("RGB"), 200.0)
    large = ImagePage(1, Image.fromarray(striped(60, 30, (1700, 2200))).convert("RGB"), 200.0)
    blank = ImagePage(1, Image.new("RGB", (1700, 2200), "white"), 200.0)
    assert engine.dpi_for(small) == round(engine.dpi * DPI_RANGE[1])
    assert engine.dpi_for(large) == round(engine.dpi * DPI_RANGE[0])
    assert engine.dpi_for(blank) == engine.dpi


def test_cuts_fall_between_lines_near_the_middle():
    page = striped(20, 12)
    inked = (page < 128).any(axis=1)
    cuts = band_cuts(page, 2)
    assert len(cuts) == 1
    assert not inked[cuts[0]]
    rows = np.flatnonzero(inked)
    assert rows[0] + 0.3 * (rows[-1] - rows[0]) <= cuts[0] <= rows[0] + 0.7 * (rows[-1] - rows[0])
    three = band_cuts(page, 3)
    assert len(three) == 2 and not inked[three].any()


def test_a_page_without_blank_rows_is_not_cut():
    solid = np.full((500, 400), 255, np.uint8)
    solid[50:450, 40:360] = 0
    assert band_cuts(solid, 2) == []
    assert band_cuts(np.full((500, 400), 255, np.uint8), 2) == []


def test_a_page_read_in_bands_reads_as_the_whole_page(monkeypatch):
    """The same scan read whole (one worker) and in two bands (two workers, a lone page): the same words,
    each on the same spot of the page."""
    data, _ = two_column_pdf()
    scan = image_only_pdf(data, 150)
    whole = TesseractEngine(workers=1).parse(next(iter(open_source(scan).pages())), "whole")
    banded_engine = TesseractEngine(workers=2)
    cut = []
    real = band_cuts

    def spy(gray, bands):
        cut.extend(real(gray, bands))
        return cut

    monkeypatch.setattr("docground.ingest.engines.tesseract.band_cuts", spy)
    banded = banded_engine.parse(next(iter(open_source(scan).pages())), "banded")
    assert cut, "the lone page was not cut into bands"

    def words(layout):
        return {(w, tuple(round(c, 1) for c in ln.bbox)) for b in layout.blocks for ln in b.lines
                for w in b.markdown[ln.start:ln.end].split()}

    same = words(whole) & words(banded)
    assert len(same) >= 0.9 * len(words(whole)) > 50
