"""The DeepSeek-OCR-2 page engine: batching, the retry ladder, fallbacks and the reasons pages record.

The backend here is a scripted stand-in that answers like the model would; what is under test is the engine.
"""

from __future__ import annotations

import io

import pymupdf
import pytest
from PIL import Image

from docground.errors import OcrUnavailable
from docground.ingest.engines.base import PageEngine
from docground.ingest.engines.deepseek_ocr2 import DeepseekOcr2Engine, Generation
from docground.ingest.engines.deepseek_ocr2.prompt import FREE_OCR, GROUNDING
from docground.ingest.engines.factory import build_vision_ocr
from docground.ingest.providers.image import ImagePage
from docground.ingest.providers.pdf import PdfSource
from docground.ingest.routing import Router
from docground.ingest.schema import BlockKind, PageLayout, PageOutcome
from docground.settings import Settings

GOOD = "<|ref|>title<|/ref|><|det|>[[100, 50, 900, 100]]<|/det|>\n# Scanned Report\n" \
       "<|ref|>text<|/ref|><|det|>[[100, 150, 900, 400]]<|/det|>\nThe body of the page.\n"
LOOP = "<|ref|>text<|/ref|><|det|>[[100, 150, 900, 400]]<|/det|>\n" + "and again " * 50


class Scripted:
    """Answers each request from `script(task, image)`; records every generate call."""

    name = "scripted"

    def __init__(self, script):
        self.script = script
        self.calls: list[list[tuple[str, tuple[int, int]]]] = []

    def generate(self, requests):
        requests = list(requests)
        self.calls.append([(r.task, r.image.size) for r in requests])
        return [self.script(r.task, r.image) for r in requests]

    def close(self):
        pass


def answer(text: str, finish: str = "stop") -> Generation:
    return Generation(text=text, finish_reason=finish, tokens=len(text) // 3)


def image_page(number=1, size=(600, 800)) -> ImagePage:
    return ImagePage(number, Image.new("RGB", size, "white"), 72.0)


def pdf_pages(texts: list[str]):
    doc = pymupdf.open()
    for text in texts:
        page = doc.new_page(width=595, height=842)
        page.draw_rect(pymupdf.Rect(50, 50, 300, 300), color=(0, 0, 0))
        if text:
            page.insert_text((72, 420), text, fontsize=11)
    source = PdfSource(doc.tobytes())
    return source, list(source.pages())


class CpuStandIn(PageEngine):
    name = "cpu-standin"
    version = "1"

    def parse_many(self, pages, document_id):
        return [PageLayout(page=p.number, width_pt=p.width_pt, height_pt=p.height_pt, engine=self.name,
                           engine_version=self.version, reason="cpu ocr") for p in pages]


def test_every_page_of_a_batch_goes_out_in_one_call():
    backend = Scripted(lambda task, image: answer(GOOD))
    layouts = DeepseekOcr2Engine(backend).parse_many([image_page(n) for n in range(1, 6)], "doc")
    assert len(backend.calls) == 1 and len(backend.calls[0]) == 5
    assert all(task == GROUNDING for task, _ in backend.calls[0])
    assert [lay.page for lay in layouts] == [1, 2, 3, 4, 5]
    first = layouts[0]
    assert first.engine == "deepseek-ocr2" and first.reason == "DeepSeek-OCR-2 via scripted"
    assert [b.kind for b in first.blocks] == [BlockKind.title, BlockKind.text]
    assert first.blocks[1].bbox == (round(100 / 999, 6), round(150 / 999, 6), round(900 / 999, 6), round(400 / 999, 6))
    assert first.blocks[0].id == "doc-p1-b0"


def test_a_looping_page_is_retried_at_a_higher_resolution():
    source, pages = pdf_pages([""])
    sizes = []

    def script(task, image):
        sizes.append(image.size)
        return answer(LOOP, "length") if len(sizes) == 1 else answer(GOOD)

    (layout,) = DeepseekOcr2Engine(Scripted(script)).parse_many(pages, "doc")
    assert sizes == [(1190, 1684), (1628, 2304)]  # A4 at 144 DPI, then at 200 DPI capped at 3 tiles of 768
    assert layout.engine == "deepseek-ocr2"
    assert layout.reason.startswith("DeepSeek-OCR-2 via scripted, retried with grounding at 200 DPI: no EOS after")
    assert "repetition" in layout.reason
    source.close()


def test_only_failed_pages_climb_the_ladder_and_free_ocr_is_last():
    tasks = []

    def script(task, image):
        tasks.append(task)
        if image.size == (601, 800):  # page 2 loops under any grounding prompt
            return answer("Plain words of the page.") if task == FREE_OCR else answer(LOOP, "length")
        return answer(GOOD)

    backend = Scripted(script)
    layouts = DeepseekOcr2Engine(backend).parse_many([image_page(1), image_page(2, (601, 800))], "doc")
    assert [len(call) for call in backend.calls] == [2, 1, 1]
    assert tasks[-1] == FREE_OCR
    assert layouts[1].reason.startswith("DeepSeek-OCR-2 via scripted, retried with Free OCR:")
    (block,) = layouts[1].blocks
    assert block.markdown == "Plain words of the page." and block.bbox == (0.0, 0.0, 1.0, 1.0)


def test_failing_pages_fall_back_to_the_text_layer_then_the_cpu_engine():
    source, pages = pdf_pages(["Broken glyphs but some text layer"])
    pages.append(image_page(2))
    engine = DeepseekOcr2Engine(Scripted(lambda task, image: answer(LOOP, "length")), fallback=CpuStandIn())
    from_layer, from_cpu = engine.parse_many(pages, "doc")
    assert from_layer.engine == "textlayer" and from_layer.blocks
    assert from_layer.reason.startswith("fell back to textlayer: DeepSeek-OCR-2 failed: no EOS after")
    assert from_cpu.engine == "cpu-standin"
    assert from_cpu.reason.startswith("fell back to cpu-standin: DeepSeek-OCR-2 failed: no EOS")
    source.close()


def test_without_any_fallback_the_page_stays_with_its_reason():
    (layout,) = DeepseekOcr2Engine(Scripted(lambda task, image: answer(LOOP, "length"))).parse_many(
        [image_page()], "doc")
    assert layout.engine == "deepseek-ocr2" and layout.blocks == []
    assert layout.reason.endswith("; no text layer and no fallback engine")


def test_transport_failures_skip_the_ladder():
    backend = Scripted(lambda task, image: Generation.failed("ConnectError: refused"))
    (layout,) = DeepseekOcr2Engine(backend, fallback=CpuStandIn()).parse_many([image_page()], "doc")
    assert len(backend.calls) == 1
    assert layout.engine == "cpu-standin"
    assert layout.reason == "fell back to cpu-standin: DeepSeek-OCR-2 failed: request failed: ConnectError: refused"


def test_a_crashing_backend_loses_no_page():
    class Crashing(Scripted):
        def generate(self, requests):
            raise RuntimeError("engine core died")

    layouts = DeepseekOcr2Engine(Crashing(None), fallback=CpuStandIn()).parse_many([image_page(1), image_page(2)], "d")
    assert [lay.engine for lay in layouts] == ["cpu-standin", "cpu-standin"]
    assert "RuntimeError: engine core died" in layouts[0].reason


def test_a_backend_that_cannot_load_is_tried_once():
    attempts = []

    def factory():
        attempts.append(1)
        raise RuntimeError("no GPU here")

    engine = DeepseekOcr2Engine(load_backend=factory, fallback=CpuStandIn())
    for _ in range(2):
        (layout,) = engine.parse_many([image_page()], "doc")
        assert layout.reason == "fell back to cpu-standin: DeepSeek-OCR-2 unavailable (RuntimeError: no GPU here)"
        assert layout.outcome is PageOutcome.FALLBACK
    assert attempts == [1]


def test_huge_photos_are_scaled_down_and_boxes_stay_relative():
    backend = Scripted(lambda task, image: answer(GOOD))
    (layout,) = DeepseekOcr2Engine(backend).parse_many([ImagePage(1, Image.new("RGB", (6000, 4000)), 300.0)], "d")
    (_, size), = backend.calls[0]
    assert max(size) == 2304 and abs(size[0] / size[1] - 1.5) < 0.01
    assert layout.blocks[1].bbox[2] == round(900 / 999, 6)


def test_the_router_prefixes_its_route():
    router = Router(ocr=DeepseekOcr2Engine(Scripted(lambda task, image: answer(GOOD))))
    (layout,) = router.parse_many([image_page()], "doc")
    assert layout.reason == "image page; DeepSeek-OCR-2 via scripted"


def png(size=(320, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "white").save(buf, format="PNG")
    return buf.getvalue()


def test_factory_builds_the_engine_the_settings_ask_for(tmp_path, monkeypatch):
    assert build_vision_ocr(Settings(home=tmp_path, ocr_backend="auto"), None) is None  # no vLLM, no endpoint
    engine = build_vision_ocr(Settings(home=tmp_path, ocr_endpoint="http://127.0.0.1:9/v1/"), CpuStandIn())
    assert isinstance(engine, DeepseekOcr2Engine) and engine.backend.name == "endpoint"
    assert engine.backend.url == "http://127.0.0.1:9/v1/chat/completions" and engine.fallback.name == "cpu-standin"
    assert engine.attempts[0].sampling.max_tokens == 8192 and engine.attempts[0].dpi == 144
    with pytest.raises(OcrUnavailable, match="ending in /v1"):
        build_vision_ocr(Settings(home=tmp_path, ocr_endpoint="http://gpu-host:8000"), None)
    with pytest.raises(OcrUnavailable, match="needs DOCGROUND_OCR_MODEL to be a local model directory"):
        build_vision_ocr(Settings(home=tmp_path, ocr_backend="transformers", ocr_model=str(tmp_path / "nope")), None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "vllm" else object())
    with pytest.raises(OcrUnavailable, match="needs vLLM"):
        build_vision_ocr(Settings(home=tmp_path, ocr_backend="vllm"), None)
