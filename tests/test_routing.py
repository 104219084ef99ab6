"""Per-page routing: the text layer when present and sane, OCR otherwise, and every page says why."""

import io

import pymupdf
import pytest
from PIL import Image
from rapidfuzz import fuzz

from docground.ingest.builders import BlockDraft, TextLine, build_block
from docground.ingest.engines.base import PageEngine
from docground.ingest.engines.factory import build_router
from docground.ingest.providers import open_source
from docground.ingest.providers.pdf import PdfPage
from docground.ingest.routing import Router, alnum_share, unreadable_share
from docground.ingest.schema import BlockKind, PageLayout
from docground.settings import Settings
from docground_testing.pdfgen import A4, image_bytes, image_only_pdf, two_column_pdf

SENTENCE = "The quick brown fox jumps over the lazy dog while the citations point at exact lines."


class RecordingOcr(PageEngine):
    """An OCR engine stand-in: it notes which pages it was handed (the router is what is under test)."""

    name, version = "ocr-standin", "0"

    def __init__(self):
        self.pages: list[int] = []

    def parse_many(self, pages, document_id):
        self.pages += [p.number for p in pages]
        return [PageLayout(page=p.number, width_pt=p.width_pt, height_pt=p.height_pt, engine=self.name,
                           engine_version=self.version) for p in pages]


def one_page(draw) -> bytes:
    doc = pymupdf.open()
    draw(doc, doc.new_page(width=A4[0], height=A4[1]))
    return doc.tobytes()


def route(data: bytes, ocr=None) -> list:
    router = Router(ocr=ocr)
    return [router.route(p) for p in open_source(data).pages()]


def unmapped_font_page() -> bytes:
    """Text in an embedded font whose Unicode map was dropped: extraction yields glyph ids, not letters."""
    def draw(doc, page):
        page.insert_font(fontname="F0", fontbuffer=pymupdf.Font("helv").buffer)
        for i in range(4):
            page.insert_text((72, 100 + 20 * i), SENTENCE, fontname="F0", fontsize=11)
        for xref, *_ in page.get_fonts():
            doc.xref_set_key(xref, "ToUnicode", "null")
    return one_page(draw)


def rendered_text_png(width: int, height: int, dpi: int = 72) -> bytes:
    return rendered_text(width, height, dpi)[0]


def rendered_text(width: int, height: int, dpi: int = 72) -> tuple[bytes, str]:
    """A picture of part of a born-digital page, and the text that part holds."""
    data, _ = two_column_pdf(seed=2)
    clip = pymupdf.Rect(40, 100, 40 + width, 100 + height)
    page = pymupdf.open(stream=data)[0]
    return page.get_pixmap(clip=clip, dpi=dpi).tobytes("png"), page.get_text(clip=clip)


def test_born_digital_pages_keep_their_text_layer():
    data, _ = two_column_pdf()
    ocr = RecordingOcr()
    (r,) = route(data, ocr)
    assert r.engine.name == "textlayer" and r.reason == "text layer"


@pytest.mark.parametrize(("draw", "reason"), [
    (lambda doc, page: None, "no text layer"),
    (lambda doc, page: page.insert_text((72, 800), "p. 3", fontsize=9), "text layer nearly empty (4 characters)"),
    (lambda doc, page: page.insert_text((72, 100), "(cid:12)(cid:7)(cid:44)(cid:3)(cid:12)(cid:7) word", fontsize=9),
     "text layer garbled"),
    (lambda doc, page: [page.insert_text((72, 100 + 14 * i), "#$%&*+<>=?@[]^{}|~ !!! ;;; ::: ///", fontsize=9)
                        for i in range(3)], "text layer garbled (only"),
])
def test_pages_without_a_sane_text_layer_go_to_ocr(draw, reason):
    ocr = RecordingOcr()
    (r,) = route(one_page(draw), ocr)
    assert r.engine is ocr and r.reason.startswith(reason)


def test_glyphs_without_a_unicode_mapping_are_garbled():
    (r,) = route(unmapped_font_page(), RecordingOcr())
    assert r.reason.startswith("text layer garbled (") and "unmapped" in r.reason


def test_text_held_in_images_is_read_by_ocr():
    def draw(doc, page):
        page.insert_text((72, 60), "Figure 3: the scanned appendix", fontsize=10)
        page.insert_image(pymupdf.Rect(40, 100, 555, 500), stream=rendered_text_png(480, 380))
    ocr = RecordingOcr()
    (r,) = route(one_page(draw), ocr)
    assert r.engine is ocr and r.reason.startswith("text layer covers part of the page")
    assert "images cover" in r.reason


class MisreadingOcr(PageEngine):
    """An OCR stand-in that reads the page's heading with two letters wrong and the picture's text as given
    (the router's merge of the reading with the text layer is what is under test)."""

    name, version = "misreading-ocr", "0"

    def __init__(self, heading_box, picture_box, picture_text):
        self.lines = [TextLine("Figwre 3: tbe scanned appendlx", heading_box), TextLine(picture_text, picture_box)]

    def parse_many(self, pages, document_id):
        return [PageLayout(page=p.number, width_pt=p.width_pt, height_pt=p.height_pt, engine=self.name,
                           engine_version=self.version,
                           blocks=[build_block(BlockDraft(BlockKind.text, [line]), f"b{i}", p.number)
                                   for i, line in enumerate(self.lines)]) for p in pages]


def test_ocr_of_a_page_whose_text_layer_holds_part_of_it_keeps_the_layers_text_where_it_has_some():
    heading = "Figure 3: the scanned appendix"

    def draw(doc, page):
        page.insert_text((72, 60), heading, fontsize=10)
        page.insert_image(pymupdf.Rect(40, 100, 555, 500), stream=rendered_text_png(480, 380))
    data = one_page(draw)
    w, h = A4
    ocr = MisreadingOcr((72 / w, 50 / h, 230 / w, 62 / h), (60 / w, 120 / h, 500 / w, 135 / h),
                        "the appendix as scanned")
    (layout,) = Router(ocr=ocr).parse_many(list(open_source(data).pages()), "doc")
    assert [b.markdown for b in layout.blocks] == [heading, "the appendix as scanned"]
    assert "1 took the text layer's" in layout.reason


def test_a_picture_on_a_page_full_of_text_does_not_send_it_to_ocr():
    data, _ = two_column_pdf()
    doc = pymupdf.open(stream=data)
    doc[0].insert_image(pymupdf.Rect(60, 500, 540, 800), stream=rendered_text_png(300, 200))
    (r,) = route(doc.tobytes(), RecordingOcr())
    assert r.reason == "text layer"


def test_text_drawn_as_curves_is_read_by_ocr():
    def draw(doc, page):
        page.insert_text((72, 60), "Chapter 2: how the measurements were made", fontsize=14)
        shape = page.new_shape()
        for row in range(25):
            for col in range(20):  # glyph-sized outlines, set in lines like text
                x, y = 72 + col * 9, 100 + row * 14
                shape.draw_bezier((x, y), (x + 2, y - 9), (x + 5, y - 9), (x + 7, y))
                shape.finish(fill=(0, 0, 0), closePath=True)
        shape.commit()
    ocr = RecordingOcr()
    (r,) = route(one_page(draw), ocr)
    assert r.engine is ocr and "glyph-sized vector paths" in r.reason


def test_image_files_go_to_ocr():
    ocr = RecordingOcr()
    (r,) = route(image_bytes("PNG"), ocr)
    assert r.engine is ocr and r.reason == "image page"


def test_without_ocr_a_doubtful_text_layer_beats_nothing():
    (garbled,) = route(unmapped_font_page(), ocr=None)
    assert garbled.engine.name == "textlayer"
    assert garbled.reason.endswith("; no OCR engine available, text layer used")
    (image,) = route(image_bytes("PNG"), ocr=None)
    assert image.engine is None and image.reason == "image page; no OCR engine available"


def test_routing_born_digital_pages_renders_nothing(monkeypatch):
    def no_rendering(self, dpi):
        raise AssertionError("a born-digital page was rendered")

    monkeypatch.setattr(PdfPage, "render", no_rendering)
    data, _ = two_column_pdf(pages=3)
    ocr = RecordingOcr()
    layouts = Router(ocr=ocr).parse_many(list(open_source(data).pages()), "doc")
    assert [lay.engine for lay in layouts] == ["textlayer"] * 3 and ocr.pages == []


def test_the_unreadable_and_alphanumeric_shares():
    assert unreadable_share("abc\ufffd") == pytest.approx(0.25)
    assert unreadable_share("ab\ue000\ue001") == pytest.approx(0.5)
    assert unreadable_share("(cid:3)ab") == pytest.approx(7 / 9)
    assert unreadable_share("") == 0.0
    assert alnum_share("ab 12 !!!!") == pytest.approx(0.5)
    assert alnum_share("文档 한국어") == 1.0


def test_a_mixed_document_records_each_pages_engine_and_reason(tmp_path):
    born, _ = two_column_pdf(seed=1)
    scanned = pymupdf.open(stream=image_only_pdf(born, 150))
    doc = pymupdf.open(stream=born)
    doc.insert_pdf(scanned)
    router = build_router(Settings(home=tmp_path))
    first, second = router.parse_many(list(open_source(doc.tobytes()).pages()), "mixed")
    assert (first.engine, first.reason) == ("textlayer", "text layer")
    assert second.engine == "tesseract" and second.reason.startswith("no text layer; tesseract eng, confidence 0.")
    assert second.blocks and all(b.confidence is not None for b in second.blocks)


def test_a_photo_with_text_is_read(tmp_path):
    png, text = rendered_text(500, 300, dpi=200)
    buf = io.BytesIO()
    Image.open(io.BytesIO(png)).save(buf, format="JPEG", dpi=(200, 200))
    router = build_router(Settings(home=tmp_path, ocr_backend="cpu"))
    (layout,) = router.parse_many(list(open_source(buf.getvalue()).pages()), "photo")
    assert layout.engine == "tesseract" and layout.reason.startswith("image page; tesseract eng")
    read = " ".join(b.markdown for b in layout.blocks)
    assert fuzz.token_set_ratio(read, text) >= 90
