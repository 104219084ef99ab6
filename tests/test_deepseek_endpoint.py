"""The OpenAI-compatible endpoint backend against a real local HTTP stand-in for `vllm serve`, and
`docground ingest scan.png` end to end with DOCGROUND_OCR_ENDPOINT pointing at it."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time

import pytest
from PIL import Image

from docground.ingest.engines.deepseek_ocr2.backend_endpoint import EndpointBackend
from docground.ingest.engines.deepseek_ocr2.prompt import GROUNDING, Sampling
from docground.ingest.engines.deepseek_ocr2.schema import PageRequest
from docground.service import Docground
from docground.settings import Settings
from docground_testing.llm_standin import Answer, OcrStandIn, pieces

# What the first DeepSeek-OCR answered for a 902x565 news screenshot (../shared/eval/dsocr2), in part.
NEWS = (
    "<|ref|>sub_title<|/ref|><|det|>[[5, 12, 152, 60]]<|/det|>\n## 观点·深度》》\n"
    "<|ref|>image<|/ref|><|det|>[[5, 95, 528, 560]]<|/det|>\n"
    "<|ref|>sub_title<|/ref|><|det|>[[570, 99, 812, 140]]<|/det|>\n## 年轻干部不妨多些“自找苦吃”\n"
    "<|ref|>text<|/ref|><|det|>[[570, 162, 952, 247]]<|/det|>\n"
    "干部成长成熟成才的路上,从没有坦途捷径可走,只能是一步一个脚印爬坡过坎。\n"
    "<|ref|>text<|/ref|><|det|>[[5, 707, 525, 920]]<|/det|>\n"
    "近日揭晓的第十八届文华奖,作为文化和旅游部设立的专业舞台艺术领域政府最高奖项,通过优化奖项设置、"
    "放宽首演时间、扩大申报渠道等改革,进一步完善评奖机制。\n"
)
BOXES = {"观点·深度》》": (5, 12, 152, 60), "年轻干部不妨多些“自找苦吃”": (570, 99, 812, 140),
         "干部成长成熟成才的路上": (570, 162, 952, 247), "近日揭晓的第十八届文华奖": (5, 707, 525, 920)}


def page(size=(902, 565)) -> PageRequest:
    return PageRequest(image=Image.new("RGB", size, (250, 250, 250)), task=GROUNDING)


def test_a_page_goes_out_as_the_recipe_asks():
    with OcrStandIn(Answer(NEWS)) as server:
        backend = EndpointBackend(server.endpoint, "deepseek-ai/DeepSeek-OCR-2")
        (gen,) = backend.generate([page()])
        backend.close()
    assert gen.ended and gen.text == NEWS and gen.tokens == len(pieces(NEWS))
    (body,) = server.requests
    assert body["path"] == "/v1/chat/completions" and body["model"] == "deepseek-ai/DeepSeek-OCR-2"
    image_part, text_part = body["messages"][0]["content"]
    assert text_part == {"type": "text", "text": "<|grounding|>Convert the document to markdown."}
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (902, 565)
    assert body["temperature"] == 0.0 and body["max_tokens"] == 8192 and body["skip_special_tokens"] is False
    assert body["vllm_xargs"] == {"ngram_size": 30, "window_size": 90, "whitelist_token_ids": [128821, 128822]}
    assert "ignore_eos" not in body


def test_overloads_are_retried_and_client_errors_are_not():
    def script(body, n):
        return Answer("", status=503) if n <= 2 else Answer(NEWS, "length")

    with OcrStandIn(script) as server:
        backend = EndpointBackend(server.endpoint, "m", retries=2)
        (gen,) = backend.generate([page()])
    assert len(server.requests) == 3 and gen.finish_reason == "length" and not gen.ended and gen.error is None

    with OcrStandIn(Answer("", status=400)) as server:
        (gen,) = EndpointBackend(server.endpoint, "m", retries=2).generate([page()])
    assert len(server.requests) == 1 and gen.error.startswith("HTTP 400")


def test_timeouts_and_refused_connections_fail_the_page_with_a_reason():
    with OcrStandIn(Answer(NEWS), delay_s=1.0) as server:
        started = time.monotonic()
        (gen,) = EndpointBackend(server.endpoint, "m", timeout_s=0.2, retries=0).generate([page()])
    assert time.monotonic() - started < 0.9 and "Timeout" in gen.error
    with OcrStandIn(Answer(NEWS)) as server:
        dead = server.endpoint
    (gen,) = EndpointBackend(dead, "m", retries=1).generate([page()])
    assert gen.error.startswith("ConnectError") and gen.error.endswith("(after 2 tries)")


def test_requests_in_flight_are_bounded_and_used():
    with OcrStandIn(Answer(NEWS), delay_s=0.15) as server:
        gens = EndpointBackend(server.endpoint, "m", concurrency=3).generate([page() for _ in range(10)])
    assert len(gens) == 10 and all(g.ended for g in gens)
    assert server.max_in_flight == 3


def test_benchmark_sampling_asks_for_a_fixed_length():
    with OcrStandIn(Answer(NEWS)) as server:
        request = PageRequest(image=Image.new("RGB", (64, 64)), task=GROUNDING,
                              sampling=Sampling(max_tokens=1000, ignore_eos=True))
        EndpointBackend(server.endpoint, "m").generate([request])
    assert server.requests[0]["ignore_eos"] is True and server.requests[0]["max_tokens"] == 1000


def test_cli_ingest_of_a_scan_stores_the_models_boxes_exactly(tmp_path, embedder):
    scan = tmp_path / "scan.png"
    Image.new("RGB", (902, 565), "white").save(scan)
    home = tmp_path / "home"
    with OcrStandIn(Answer(NEWS)) as server:
        env = dict(os.environ, DOCGROUND_HOME=str(home), DOCGROUND_OCR_ENDPOINT=server.endpoint,
                   DOCGROUND_OCR_MODEL="deepseek-ai/DeepSeek-OCR-2")
        done = subprocess.run([sys.executable, "-m", "docground.api.cli", "ingest", str(scan), "--kb", "news",
                               "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    [item] = json.loads(done.stdout)
    assert item["status"] == "ready" and item["chunks"] > 0
    assert len(server.requests) == 1  # the page went to the endpoint, once

    svc = Docground(Settings(home=home))
    svc._embedder = embedder
    try:
        layout = json.loads((svc.blob_dir(item["document_id"]) / "layouts.json").read_text())[0]
        response = svc.query("news", "第十八届文华奖", top_k=5)
    finally:
        svc.close()
    assert layout["engine"] == "deepseek-ocr2" and layout["reason"] == "image page; DeepSeek-OCR-2 via endpoint"
    spans = [(chunk.text[s.char_start:s.char_end], tuple(s.bbox)) for chunk in response.chunks for s in chunk.spans]
    assert spans
    for text, bbox in spans:
        (box,) = [b for start, b in BOXES.items() if text.startswith(start)]
        assert bbox == pytest.approx(tuple(v / 999 for v in box), abs=1e-6)
    assert {t[:6] for t, _ in spans} >= {"近日揭晓的第", "干部成长成熟"}
