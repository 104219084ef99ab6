import numpy as np
import pymupdf
import pytest
from PIL import Image, ImageDraw

from docground.ingest.engines.tesseract import TESSDATA
from docground.ingest.engines.tesseract_orientation import (
    Upright,
    correction,
    detect_rotation,
    detect_skew,
    quarter_turn,
)
from docground.ingest.geometry import normalize
from docground_testing.pdfgen import two_column_pdf

W, H = 400, 300
MARK = (60, 40, 180, 90)  # a dark rectangle, pixels of the displayed image


def marked() -> Image.Image:
    img = Image.new("L", (W, H), 255)
    ImageDraw.Draw(img).rectangle(MARK, fill=0)
    return img


def ink_box(img: Image.Image) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(np.asarray(img) < 128)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def page_image(dpi: int = 100) -> Image.Image:
    data, _ = two_column_pdf()
    pix = pymupdf.open(stream=data)[0].get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
    return Image.frombytes("L", (pix.width, pix.height), pix.samples)


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_quarter_turns_map_boxes_back_exactly(angle):
    upright = Upright((W, H), angle)
    turned = upright.apply(marked())
    assert turned.size == ((H, W) if angle in (90, 270) else (W, H))
    back = upright.to_page(*ink_box(turned))
    expected = normalize(MARK[0], MARK[1], MARK[2] + 1, MARK[3] + 1, W, H)
    assert back == pytest.approx(expected, abs=2 / W)


@pytest.mark.parametrize("angle", [3.5, -6.0, 92.0])
def test_tilted_boxes_come_back_around_what_was_drawn(angle):
    upright = Upright((W, H), angle)
    back = upright.to_page(*ink_box(upright.apply(marked())))
    x0, y0, x1, y1 = normalize(*MARK, W, H)
    assert back[0] <= x0 + 0.01 and back[1] <= y0 + 0.01 and back[2] >= x1 - 0.01 and back[3] >= y1 - 0.01
    # A tilted box's bounding box grows by about width × sin(tilt) twice over, never more.
    grow = 2 * abs(np.sin(np.radians(angle % 90 if angle % 90 < 45 else 90 - angle % 90))) * (MARK[2] - MARK[0])
    assert (back[3] - back[1]) * H <= (MARK[3] - MARK[1]) + grow + 4


def test_correcting_nothing_leaves_the_image_alone():
    img = marked()
    assert Upright(img.size, 0).apply(img) is img


def test_a_correction_is_for_one_image_size():
    with pytest.raises(ValueError, match="correction is for"):
        Upright((10, 10), 90).apply(marked())


@pytest.mark.parametrize("tilt", [-7.0, -2.5, 1.2, 4.0])
def test_skew_is_measured(tilt):
    tilted = page_image().rotate(tilt, resample=Image.Resampling.BILINEAR, fillcolor=255, expand=True)
    assert detect_skew(tilted) == pytest.approx(-tilt, abs=0.15)


def test_a_level_page_and_a_blank_one_have_no_skew():
    assert detect_skew(page_image()) == 0.0
    assert detect_skew(Image.new("L", (800, 1000), 255)) == 0.0


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_skew_is_measured_once_the_page_is_upright(rotation):
    tilted = page_image().rotate(2.0, resample=Image.Resampling.BILINEAR, fillcolor=255, expand=True)
    shown = quarter_turn(tilted, (360 - rotation) % 360)  # as scanned: turned away from upright
    assert correction(shown, rotation).angle == pytest.approx(rotation - 2.0, abs=0.15)


@pytest.mark.parametrize("turned", [0, 90, 180, 270])
def test_tesseract_orientation_detection_says_how_to_turn_upright(turned):
    from tesserocr import PSM, PyTessBaseAPI

    shown = quarter_turn(page_image(150), turned)
    with PyTessBaseAPI(path=str(TESSDATA), lang="osd", psm=PSM.OSD_ONLY) as osd:
        found = detect_rotation(shown, osd, 150)
    assert found is not None
    assert (turned + found.rotation) % 360 == 0
    assert found.script == "Latin" or turned in (90, 270)  # sideways Latin is sometimes taken for Cyrillic


def test_orientation_detection_gives_up_on_a_blank_page():
    from tesserocr import PSM, PyTessBaseAPI

    with PyTessBaseAPI(path=str(TESSDATA), lang="osd", psm=PSM.OSD_ONLY) as osd:
        assert detect_rotation(Image.new("L", (1240, 1754), 255), osd, 150) is None
