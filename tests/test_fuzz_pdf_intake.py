"""Fuzzing the intake: real PDFs made here, then damaged (bytes flipped, cut, spliced, tokens planted),
through the pipeline up to chunks (open, page guard, routing, text layer, furniture, chunking; no
embedding). Whatever the bytes, the outcome is a DocgroundError with a 4xx status, or pages and chunks
whose boxes lie on the page. Bounded: a few hundred examples, about half a minute."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pymupdf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from docground.errors import DocgroundError
from docground.ingest.chunking import ChunkerConfig
from docground.ingest.pipeline import Pipeline
from docground.ingest.providers import PageLimits
from docground.ingest.routing import Router
from docground_testing.hostile_files import VISIBLE_TEXT, raw_pdf, scripted_pdf, stream, text_content
from docground_testing.pdfgen import rotated_pdf, two_column_pdf

pytestmark = pytest.mark.timeout(300)

PAGES_READ = 3  # of each mutant, to bound the time per example
LIMITS = PageLimits(time_s=2.0, memory_mb=512)


def compressed_pdf() -> bytes:
    """Object streams and deflated contents: damage lands inside compressed data."""
    data, _ = two_column_pdf(pages=2, seed=3, header="Fuzz Journal")
    doc = pymupdf.open(stream=data)
    return doc.tobytes(garbage=3, deflate=True, use_objstms=1)


def image_pdf() -> bytes:
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), VISIBLE_TEXT, fontsize=11)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format="PNG")
    page.insert_image(pymupdf.Rect(72, 100, 272, 250), stream=buffer.getvalue())
    return doc.tobytes()


def handwritten_pdf() -> bytes:
    """Exact cross-reference offsets: damage near them tests MuPDF's repair."""
    return raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R 5 0 R] /Count 2 >>",
        (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R "
         b"/Resources << /Font << /Helv 6 0 R >> >> >>"),
        stream("", text_content(VISIBLE_TEXT)),
        (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 300] /Rotate 90 /Contents 4 0 R "
         b"/Resources << /Font << /Helv 6 0 R >> >> >>"),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ])


SEEDS = [two_column_pdf(pages=2, seed=9)[0], compressed_pdf(), scripted_pdf(), image_pdf(), handwritten_pdf(),
         rotated_pdf(90)]
TOKENS = [b"obj", b"endobj", b"stream", b"endstream", b"/Length 999999999", b"/Length -1", b"<<", b">>", b"[", b"]",
          b" 0 R", b"99999 0 R", b"/Count 100000000", b"/Kids [2 0 R]", b"%%EOF", b"xref", b"trailer", b"startxref",
          b"/MediaBox [0 0 0 0]", b"/MediaBox [0 0 1e30 1e30]", b"/Rotate 45", b"/Filter /FlateDecode", b"\x00" * 8,
          b"/Type /Page", b"(\\", b"BT", b"ET", b"Tj", b"q", b"Q", b"1e308", b"-2147483649"]


@dataclass(frozen=True)
class Damage:
    """A seed PDF and what was done to it; its repr is the recipe (a failing example stays readable)."""

    seed: int
    steps: tuple[tuple, ...]

    def apply(self) -> bytes:
        data = bytearray(SEEDS[self.seed])
        for how, at, arg in self.steps:
            at = min(at, len(data))
            if how == "flip":
                data[at:at + len(arg)] = arg
            elif how == "cut":
                del data[at:]
            elif how == "splice":
                other, start, size = arg
                data[at:at] = SEEDS[other][start:start + size]
            elif how == "delete":
                del data[at:at + arg]
            elif how == "repeat":
                size, times = arg
                data[at:at] = data[at:at + size] * times
            else:
                data[at:at] = arg
        return bytes(data)


STEPS = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 40_000), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("cut"), st.integers(0, 40_000), st.none()),
    st.tuples(st.just("splice"), st.integers(0, 40_000),
              st.tuples(st.integers(0, len(SEEDS) - 1), st.integers(0, 20_000), st.integers(1, 4096))),
    st.tuples(st.just("delete"), st.integers(0, 40_000), st.integers(1, 512)),
    st.tuples(st.just("repeat"), st.integers(0, 40_000), st.tuples(st.integers(1, 512), st.integers(2, 50))),
    st.tuples(st.just("plant"), st.integers(0, 40_000), st.sampled_from(TOKENS)),
)
DAMAGE = st.builds(Damage, st.integers(0, len(SEEDS) - 1), st.lists(STEPS, min_size=1, max_size=4).map(tuple))


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    config = ChunkerConfig(max_tokens=120, overlap_tokens=16)
    return Pipeline(Router(ocr=None), count_words, config, "words", LIMITS)


def count_words(texts: list[str]) -> list[int]:
    return [len(t.split()) for t in texts]


def in_unit_square(box) -> bool:
    x0, y0, x1, y1 = box
    return 0.0 <= x0 <= x1 <= 1.0 and 0.0 <= y0 <= y1 <= 1.0


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(damage=DAMAGE)
def test_damaged_pdfs_get_a_clear_error_or_pages_on_the_page(pipeline, damage):
    data = damage.apply()
    try:
        source = pipeline.open(data)
    except DocgroundError as exc:
        assert 400 <= exc.http_status < 500 and exc.code and exc.message
        return
    try:
        numbers = list(range(1, min(source.page_count, PAGES_READ) + 1))
        layouts = pipeline.parse_pages(source, "fuzz", numbers)
    finally:
        source.close()
    assert [lay.page for lay in layouts] == numbers
    for layout in layouts:
        assert layout.width_pt > 0 and layout.height_pt > 0
        for block in layout.blocks:
            assert in_unit_square(block.bbox) and all(in_unit_square(line.bbox) for line in block.lines)
    try:
        chunks = pipeline.chunk(layouts, "fuzz")
    except DocgroundError as exc:  # every page read was refused
        assert exc.code == "no_readable_pages"
        return
    for chunk in chunks:
        for span in chunk.spans:
            assert in_unit_square(span.bbox) and 0 <= span.char_start <= span.char_end <= len(chunk.text)


IMAGE_SEEDS = []
for fmt in ("PNG", "JPEG", "TIFF", "WEBP"):
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 120, 200)).save(buffer, format=fmt)
    IMAGE_SEEDS.append(buffer.getvalue())


@settings(max_examples=150, deadline=None)
@given(seed=st.sampled_from(IMAGE_SEEDS), at=st.integers(0, 400), patch=st.binary(min_size=1, max_size=16),
       cut=st.integers(1, 2000))
def test_damaged_images_get_a_clear_error_or_render(seed, at, patch, cut):
    data = (seed[:at] + patch + seed[at + len(patch):])[:cut]
    try:
        source = Pipeline(Router(ocr=None), count_words, ChunkerConfig(), "words", LIMITS).open(data)
    except DocgroundError as exc:
        assert 400 <= exc.http_status < 500 and exc.code and exc.message
        return
    try:
        for page in source.pages():
            assert page.width_pt > 0 and page.height_pt > 0
            try:
                image = page.render(72)
            except DocgroundError as exc:  # a later frame's pixels were damaged
                assert exc.code == "corrupt_file"
                continue
            assert image.mode == "RGB" and image.width > 0
    finally:
        source.close()
