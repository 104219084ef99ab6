import pytest

from docground.errors import CorruptFile, EmptyFile, UnsupportedFileType
from docground.ingest.providers import open_source, sniff_kind
from docground_testing.pdfgen import image_bytes, rotated_pdf, two_column_pdf


@pytest.mark.parametrize("fmt,kind", [("PNG", "png"), ("JPEG", "jpeg"), ("TIFF", "tiff"), ("WEBP", "webp")])
def test_images_are_recognised_by_content(fmt, kind):
    assert sniff_kind(image_bytes(fmt)) == kind


def test_pdf_is_recognised_by_content():
    data, _ = two_column_pdf()
    assert sniff_kind(data) == "pdf"


@pytest.mark.parametrize("data,error", [
    (b"", EmptyFile),
    (b"\x00\x01\x02 binary, not a document", UnsupportedFileType),
    (b"PK\x03\x04" + b"\x00" * 100, UnsupportedFileType),
])
def test_unsupported_content_gets_a_clear_error(data, error):
    with pytest.raises(error) as exc:
        sniff_kind(data)
    assert exc.value.message


def test_truncated_pdf_is_corrupt():
    data, _ = two_column_pdf()
    with pytest.raises(CorruptFile):
        src = open_source(data[:200])
        list(src.pages())


def test_multipage_tiff_gives_one_page_per_frame():
    src = open_source(image_bytes("TIFF", frames=3))
    assert src.kind == "tiff" and src.page_count == 3
    assert [p.number for p in src.pages()] == [1, 2, 3]


def test_image_size_in_points_follows_its_resolution():
    page = open_source(image_bytes("PNG", size=(600, 300), dpi=150)).page(1)
    assert page.width_pt == pytest.approx(600 * 72 / 150, abs=0.5)
    assert page.height_pt == pytest.approx(300 * 72 / 150, abs=0.5)


def test_exif_orientation_is_applied():
    page = open_source(image_bytes("JPEG", size=(400, 300), exif_rotate=True)).page(1)
    # Displayed upright, the 400x300 photo is 300 wide and 400 tall.
    assert (page.width_pt, page.height_pt) == (300, 400)


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_pdf_page_size_is_as_displayed(rotation):
    page = open_source(rotated_pdf(rotation)).page(1)
    portrait = (595.0, 842.0)
    expected = portrait if rotation in (0, 180) else portrait[::-1]
    assert (page.width_pt, page.height_pt) == pytest.approx(expected)
    image = page.render(36)
    assert image.width < image.height if rotation in (0, 180) else image.width > image.height
