"""The CPU OCR engine on scans made in the test: born-digital pages rendered to image-only PDFs at 150 DPI,
turned and tilted as scanners do. Every drawn line's text and box are known from how it was drawn."""

import math

import pymupdf
import pytest
from PIL import Image
from rapidfuzz import fuzz

from docground.errors import InvalidRequest
from docground.ingest.engines.factory import build_cpu_ocr
from docground.ingest.engines.tesseract import MAX_PIXELS, TesseractEngine
from docground.ingest.geometry import area, intersection, normalize
from docground.ingest.providers import open_source
from docground.ingest.providers.image import ImagePage
from docground.settings import Settings
from docground_testing.pdfgen import A4, PROSE, image_only_pdf, prose_pdf, two_column_pdf


@pytest.fixture(scope="module")
def engine():
    return TesseractEngine(workers=2)


def shown_box(box_pt, size_pt, rotation: int = 0, skew: float = 0.0):
    """Where a box drawn on the original page lies on the scan as displayed: tilted by `skew` about the
    page centre, then turned by `rotation` (both counterclockwise, as `image_only_pdf` makes them)."""
    w, h = size_pt
    cx, cy = w / 2, h / 2
    cos, sin = math.cos(math.radians(skew)), math.sin(math.radians(skew))
    corners = [(cx + (x - cx) * cos + (y - cy) * sin, cy - (x - cx) * sin + (y - cy) * cos)
               for x in (box_pt[0], box_pt[2]) for y in (box_pt[1], box_pt[3])]
    for _ in range(rotation // 90):  # a quarter turn counterclockwise: (x, y) -> (y, w - x) on an h × w page
        corners = [(y, w - x) for x, y in corners]
        w, h = h, w
    xs, ys = zip(*corners, strict=True)
    return normalize(min(xs), min(ys), max(xs), max(ys), w, h)


def iou(a, b) -> float:
    inter = intersection(a, b)
    return inter / (area(a) + area(b) - inter) if inter else 0.0


def ocr_lines(layout):
    return [(b.markdown[ln.start:ln.end], ln.bbox) for b in layout.blocks for ln in b.lines]


def matched(drawn: dict, lines, rotation=0, skew=0.0):
    """The OCR line that reads like a drawn line and sits where it was drawn, or None."""
    want = shown_box(drawn["bbox"], A4, rotation, skew)
    for text, box in lines:
        if fuzz.ratio(text, drawn["text"]) >= 85 and iou(box, want) >= 0.5:
            return text, box
    return None


def read_scan(engine, data: bytes, document_id: str):
    source = open_source(data)
    return engine.parse_many(list(source.pages()), document_id)


@pytest.mark.parametrize(("rotation", "skew"), [(0, 0.0), (90, 0.0), (180, 0.0), (270, 0.0), (0, 2.5)])
def test_scanned_lines_are_read_where_they_are_displayed(engine, rotation, skew):
    data, drawn = two_column_pdf()
    (layout,) = read_scan(engine, image_only_pdf(data, 150, rotation, skew), f"scan-{rotation}-{skew}")
    assert (layout.width_pt, layout.height_pt) == ((A4[1], A4[0]) if rotation in (90, 270) else A4)
    lines = ocr_lines(layout)
    found = [matched(d, lines, rotation, skew) for d in drawn]
    assert sum(f is not None for f in found) >= 0.9 * len(drawn)
    assert layout.engine == "tesseract"
    assert ("turned" in layout.reason) == (rotation != 0)
    assert ("levelled" in layout.reason) == (skew != 0)


def test_two_columns_are_read_column_by_column(engine):
    data, drawn = two_column_pdf()
    (layout,) = read_scan(engine, image_only_pdf(data, 150), "columns")
    text = "\n".join(b.markdown for b in layout.blocks)
    # Drawn lines in the order they were drawn: left column first, each top to bottom. Their words, not
    # their tags (p1c1q0 reads as "piciq0" to a dictionary-minded OCR), say where they landed.
    positions = [text.find(d["text"].split(" ", 1)[1]) for d in drawn]
    found = [p for p in positions if p >= 0]
    assert len(found) >= 0.8 * len(positions)
    assert found == sorted(found), "the left column first, then the right one, top to bottom"
    assert text.startswith("# Grounded Retrieval Study")


def test_confidence_is_recorded(engine):
    data, _ = two_column_pdf()
    (layout,) = read_scan(engine, image_only_pdf(data, 150), "confidence")
    assert all(0.5 < b.confidence <= 1.0 for b in layout.blocks)
    assert "confidence 0." in layout.reason


def test_languages_follow_the_script_when_automatic(engine):
    (layout,) = read_scan(engine, image_only_pdf(prose_pdf("ko"), 150), "korean")
    assert layout.reason.startswith("tesseract kor")
    title = PROSE["ko"][1][0]
    assert layout.blocks[0].markdown.lstrip("# ") == title


def test_pages_read_in_parallel_come_back_in_order(engine):
    data, drawn = two_column_pdf(pages=3)
    layouts = read_scan(engine, image_only_pdf(data, 150), "three-pages")
    assert [lay.page for lay in layouts] == [1, 2, 3]
    for lay in layouts:
        text = " ".join(b.markdown for b in lay.blocks)
        mine = [d["text"].split(" ", 1)[1] for d in drawn if d["page"] == lay.page]
        assert sum(words in text for words in mine) >= 0.8 * len(mine)


def test_named_languages_must_be_installed():
    with pytest.raises(InvalidRequest, match="not installed: klingon"):
        TesseractEngine(languages="eng+klingon")


def test_the_memory_budget_bounds_the_workers():
    assert TesseractEngine(workers=8, memory_mb=600).workers == 2
    assert TesseractEngine(workers=8, memory_mb=100).workers == 1


def test_huge_pages_are_read_at_a_bounded_size(engine):
    poster = ImagePage(1, Image.new("RGB", (9000, 6000), "white"), 300.0)
    layout = engine.parse(poster, "poster")
    assert layout.blocks == [] and layout.width_pt == pytest.approx(9000 * 72 / 300)
    image = engine._render(poster)
    assert image.width * image.height <= MAX_PIXELS


def test_the_factory_builds_the_engine_from_settings(tmp_path):
    built = build_cpu_ocr(Settings(home=tmp_path, ocr_languages="eng", ocr_dpi=150))
    assert isinstance(built, TesseractEngine) and built.fixed_languages == "eng" and built.dpi == 150
    assert build_cpu_ocr(Settings(home=tmp_path, tessdata_dir=tmp_path / "none")) is None
    with pytest.raises(InvalidRequest):
        build_cpu_ocr(Settings(home=tmp_path, ocr_languages="xx"))


# ---- the bar: scans ingest and answer with citations on the right lines
@pytest.mark.parametrize(("rotation", "skew"), [(0, 0.0), (270, 0.0), (0, 2.0)])
def test_a_scan_answers_with_citations_on_the_right_lines(service, rotation, skew):
    data, drawn = two_column_pdf(seed=11)
    scan = image_only_pdf(data, 150, rotation, skew)
    result = service.ingest("scans", "scan.pdf", scan)
    assert result.status == "ready" and result.chunks > 0
    (page,) = service.registry.pages(result.document_id)
    assert page.engine == "tesseract" and page.reason.startswith("no text layer; tesseract eng")

    target = drawn[15]
    response = service.query("scans", target["text"], top_k=3)
    assert response.citations
    cited = set()
    for citation in response.citations:
        for box in citation.boxes:
            best = max(drawn, key=lambda d: iou(box, shown_box(d["bbox"], A4, rotation, skew)))
            assert iou(box, shown_box(best["bbox"], A4, rotation, skew)) >= 0.5, (box, best)
            assert fuzz.partial_ratio(best["text"], citation.quote) >= 85, (best["text"], citation.quote)
            cited.add(best["text"])
    assert target["text"] in cited


MANUAL_ZH = [  # a Chinese manual page full of Latin command names: script detection tends to call it Latin
    "使用 dpkg-buildpackage -us -uc 命令构建 Debian 软件包。",
    "运行 debuild 或 pdebuild 时, lintian 会检查 debian/control 文件。",
    "在 ~/.bashrc 中加入 alias dquilt=\"quilt --quiltrc=${HOME}/.quiltrc-dpkg\" 这一行。",
    "然后执行 dh_make -f ../foo-1.0.tar.gz 生成 debian 目录。",
    "上传之前请用 dput 和 ~/.dput.cf 配置文件检查 changes 文件。",
    "软件包名最短长度两个字符, 它必须以字母开头。",
]


def test_a_chinese_page_full_of_latin_words_is_read_as_chinese(engine):
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    for n, line in enumerate(MANUAL_ZH):
        page.insert_text((60, 90 + 28 * n), line, fontname="china-s", fontsize=12)
    (layout,) = read_scan(engine, image_only_pdf(doc.tobytes(), 150), "manual-zh")
    assert layout.reason.startswith("tesseract chi_sim"), layout.reason
    text = "".join(b.markdown for b in layout.blocks)
    assert fuzz.partial_ratio("软件包名最短长度两个字符", text.replace(" ", "")) > 80, text
