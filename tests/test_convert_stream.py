"""`docground convert --stream`: one page's markdown printed as DeepSeek-OCR-2 writes it. The endpoint backend
is run against a real local HTTP server that streams server-sent events as `vllm serve` does, and holds the
rest of the page back until the client shows it has the first part: a client that buffered the whole answer
could not pass."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pymupdf
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from docground.api.cli import app as cli
from docground.ingest.convert import ConvertOptions, build_converter
from docground.ingest.engines.deepseek_ocr2.backend_endpoint import EndpointBackend
from docground.ingest.engines.deepseek_ocr2.backend_vllm import VllmBackend, _generation
from docground.ingest.engines.deepseek_ocr2.engine_loop import EngineLoop
from docground.ingest.engines.deepseek_ocr2.output import MarkdownStream, parse_grounded
from docground.ingest.engines.deepseek_ocr2.prompt import EOS_TEXT, GROUNDING
from docground.ingest.engines.deepseek_ocr2.schema import PageRequest
from docground.ingest.renderers import DocumentLayout
from docground.settings import Settings
from docground_testing.llm_standin import Answer, OcrStandIn, pieces

# A page as DeepSeek-OCR-2 writes it: grounding headers (boxes 0..999 of the image it saw), then markdown.
PAGE = (
    "<|ref|>title<|/ref|><|det|>[[60, 40, 940, 90]]<|/det|>\n# Streaming reports\n\n"
    "<|ref|>text<|/ref|><|det|>[[60, 120, 940, 300]]<|/det|>\n"
    "The first paragraph arrives while the model is still writing the rest of the page.\n\n"
    "<|ref|>table<|/ref|><|det|>[[60, 330, 940, 520]]<|/det|>\n"
    "<table><tr><td>year</td><td>pages</td></tr><tr><td>2025</td><td>a < b</td></tr></table>\n\n"
    "<|ref|>equation<|/ref|><|det|>[[300, 560, 700, 620]]<|/det|>\n\\[E = m c^{2}\\]\n\n"
    "<|ref|>text<|/ref|><|det|>[[60, 650, 940, 900]]<|/det|>\nThe closing paragraph comes last."
)
MARKDOWN = ("# Streaming reports\n\n"
            "The first paragraph arrives while the model is still writing the rest of the page.\n\n"
            "<table><tr><td>year</td><td>pages</td></tr><tr><td>2025</td><td>a < b</td></tr></table>\n\n"
            "\\[E = m c^{2}\\]\n\nThe closing paragraph comes last.\n")
FIRST_WORDS = "The first paragraph arrives"
ENDPOINT_VARS = ("DOCGROUND_OCR_ENDPOINT", "DOCGROUND_OCR_BACKEND", "DOCGROUND_OCR_MODEL")


def page_request() -> PageRequest:
    return PageRequest(image=Image.new("RGB", (850, 1100), "white"), task=GROUNDING)


def scan(tmp_path, name="scan.png"):
    path = tmp_path / name
    Image.new("RGB", (850, 1100), "white").save(path)
    return path


def test_the_endpoint_hands_text_on_before_the_page_is_finished():
    received: list[str] = []
    with OcrStandIn(Answer(PAGE), hold_after=10) as server:
        def on_text(piece: str) -> None:
            received.append(piece)
            if len(received) == 10:
                server.release.set()  # only a client that already has 10 pieces can ask for the rest

        backend = EndpointBackend(server.endpoint, "deepseek-ai/DeepSeek-OCR-2")
        generation = backend.stream(page_request(), on_text)
        backend.close()
    assert server.held_until_released is True
    assert received == pieces(PAGE) and generation.text == PAGE
    assert generation.ended and generation.error is None and generation.tokens == len(pieces(PAGE))
    (body,) = server.requests
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["skip_special_tokens"] is False and body["temperature"] == 0.0  # the same recipe as generate
    assert body["messages"][0]["content"][1] == {"type": "text", "text": GROUNDING}


def test_a_connection_lost_mid_page_keeps_the_text_so_far_and_says_why():
    with OcrStandIn(Answer(PAGE, cut=12)) as server:
        received: list[str] = []
        generation = EndpointBackend(server.endpoint, "m", retries=2).stream(page_request(), received.append)
    assert len(server.requests) == 1  # text had been handed on: nothing is asked twice
    assert generation.text == "".join(pieces(PAGE)[:12]) == "".join(received)
    assert not generation.ended and generation.error


def test_cli_prints_the_markdown_as_the_model_writes_it_and_writes_the_outputs(tmp_path):
    image, out = scan(tmp_path), tmp_path / "out"
    with OcrStandIn(Answer(PAGE), hold_after=len(pieces(PAGE)) // 2) as server:
        env = {k: v for k, v in os.environ.items() if k not in ENDPOINT_VARS}
        env |= {"DOCGROUND_OCR_ENDPOINT": server.endpoint, "DOCGROUND_HOME": str(tmp_path / "home")}
        proc = subprocess.Popen([sys.executable, "-m", "docground.api.cli", "convert", str(image), "--stream",
                                 "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            early = b""
            deadline = time.monotonic() + 120
            while FIRST_WORDS.encode() not in early and time.monotonic() < deadline:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                early += chunk
            assert FIRST_WORDS.encode() in early, "the first half of the page was not printed while the rest waited"
            assert b"closing paragraph" not in early
            server.release.set()
            rest, stderr = proc.communicate(timeout=120)
        finally:
            proc.kill()
    assert proc.returncode == 0, stderr.decode()
    assert server.held_until_released is True
    assert (early + rest).decode() == MARKDOWN  # no grounding tags, nothing twice
    assert "streamed: DeepSeek-OCR-2 via endpoint" in stderr.decode()

    layout = DocumentLayout.model_validate_json((out / "scan.json").read_text())
    boxes = {b.markdown.split("\n")[0][:20]: b.bbox for p in layout.pages for b in p.blocks}
    assert boxes["# Streaming reports"] == pytest.approx((60 / 999, 40 / 999, 940 / 999, 90 / 999), abs=1e-5)
    assert "The closing paragraph comes last." in (out / "scan.md").read_text()
    assert (out / "scan.boxes" / "page-1.png").is_file()


def test_a_streamed_page_that_fails_is_read_again_down_the_ladder(tmp_path):
    looping = PAGE[:200] + " and again" * 20

    def answers(body, n):
        return Answer(looping, "length") if body.get("stream") else Answer(PAGE)

    printed: list[str] = []
    with OcrStandIn(answers) as server:
        settings = Settings(home=tmp_path / "home", ocr_endpoint=server.endpoint)
        layout = build_converter(settings, ConvertOptions(stream=True)).stream(scan(tmp_path), None, printed.append)
    assert [bool(r.get("stream")) for r in server.requests] == [True, False]
    assert "and again" in "".join(printed)  # what the model wrote first is what was shown
    assert layout.outcome == "read" and "retried with grounding at 200 DPI" in layout.reason
    assert any("closing paragraph" in b.markdown for b in layout.blocks)  # the retry's page is what is kept


@pytest.mark.parametrize(("backend", "says"), [
    ("cpu", "DOCGROUND_OCR_BACKEND=cpu reads pages with Tesseract"),
    ("none", "DOCGROUND_OCR_BACKEND=none reads pages from their text layer alone"),
    ("auto", "no DeepSeek-OCR-2 backend is configured"),
    ("transformers", "DOCGROUND_OCR_BACKEND=transformers"),
])
def test_backends_that_cannot_stream_are_refused_naming_the_setting(tmp_path, backend, says):
    env = {"DOCGROUND_OCR_BACKEND": backend, "DOCGROUND_OCR_ENDPOINT": None, "DOCGROUND_HOME": str(tmp_path)}
    result = CliRunner().invoke(cli, ["convert", str(scan(tmp_path)), "--stream"], env=env)
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert says in message and "DOCGROUND_OCR_ENDPOINT" in message and "does not stream" in message


def test_stream_reads_exactly_one_page_of_one_file(tmp_path):
    doc = pymupdf.open()
    for _ in range(3):
        doc.new_page()
    pdf = tmp_path / "three.pdf"
    doc.save(pdf)
    with OcrStandIn(Answer(PAGE)) as server:
        env = {"DOCGROUND_OCR_ENDPOINT": server.endpoint, "DOCGROUND_OCR_BACKEND": None,
               "DOCGROUND_HOME": str(tmp_path)}

        def run(*args):
            result = CliRunner().invoke(cli, ["convert", *map(str, args), "--stream"], env=env)
            return result.exit_code, " ".join(result.output.split())

        assert run(pdf) == (2, "error: --stream reads one page; three.pdf has 3: choose one with --pages N")
        assert run(pdf, "--pages", "1-2")[1].endswith("--pages selects 2 of three.pdf's 3 page(s)")
        assert "--stream reads one file" in run(tmp_path)[1]
        assert not server.requests
        code, output = run(pdf, "--pages", "3")
    assert code == 0, output
    assert output.startswith(MARKDOWN.split("\n")[0]) and "page 3" in output
    assert "no text layer; streamed: DeepSeek-OCR-2 via endpoint" in output


def test_cli_without_out_needs_stream():
    result = CliRunner().invoke(cli, ["convert", "x.png"])
    assert result.exit_code == 2 and "--out is needed" in result.output


# ---- the markdown shown while grounded output streams

words = st.text(st.sampled_from("ab1 <>|#$\\\n"), min_size=1, max_size=30).filter(
    lambda t: t.strip() and "<|" not in t and "\n\n" not in t)
blocks = st.lists(st.tuples(st.sampled_from(["text", "title", "table", "image"]), words), min_size=1, max_size=6)


@given(blocks, st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=40), st.booleans())
def test_streamed_markdown_is_the_parsed_content_however_the_output_is_cut(page, cuts, eos):
    text = "".join(f"<|ref|>{label}<|/ref|><|det|>[[1, 2, 300, 400]]<|/det|>\n{body}\n\n" for label, body in page)
    text += EOS_TEXT + "after the end" if eos else ""
    shown: list[str] = []
    stream, at = MarkdownStream(shown.append), 0
    for size in cuts * (len(text) // max(1, sum(cuts)) + 1):
        stream.feed(text[at:at + size])
        at += size
    stream.close()
    contents = [b.content for b in parse_grounded(text) if b.content]
    assert "".join(shown) == ("\n\n".join(contents) + "\n" if contents else "")


def test_a_header_cut_off_at_the_end_shows_nothing():
    shown: list[str] = []
    stream = MarkdownStream(shown.append)
    stream.feed("<|ref|>text<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\nkept\n<|ref|>text<|/ref|><|det|>[[5, 6")
    assert "".join(shown) == "kept"
    stream.close()
    assert "".join(shown) == "kept\n"


# ---- in-process vLLM: the engine loop's per-step outputs (DELTA) become the stream and the whole page

class DeltaEngine:
    """vLLM's engine interface as the engine loop drives it: each step decodes one piece of each page."""

    def __init__(self, text: str):
        self.steps = pieces(text)
        self.running: dict[str, int] = {}

    def add_request(self, request_id, engine_input, params):
        self.running[request_id] = 0

    def abort_request(self, ids):
        for i in ids:
            self.running.pop(i, None)

    def step(self):
        outputs = []
        for request_id, at in list(self.running.items()):
            finished = at + 1 == len(self.steps)
            completion = SimpleNamespace(text=self.steps[at], token_ids=[at],
                                         finish_reason="stop" if finished else None)
            outputs.append(SimpleNamespace(request_id=request_id, finished=finished, outputs=[completion]))
            self.running[request_id] = at + 1
            if finished:
                del self.running[request_id]
        return outputs


def test_vllm_streams_each_steps_text_and_returns_the_whole_page():
    from concurrent.futures import Future

    def rendered(request):
        future = Future()
        future.set_result({"prompt_token_ids": [0]})
        return future

    backend = VllmBackend.__new__(VllmBackend)  # vLLM itself is not installed here: its engine is stood in for
    backend._sampling_params = lambda sampling, delta=False: SimpleNamespace(delta=delta)
    backend.loop = EngineLoop(DeltaEngine(PAGE), rendered, lambda r: None, _generation, capacity=2)
    received: list[str] = []
    try:
        generation = backend.stream(page_request(), received.append)
    finally:
        backend.loop.close()
    assert received == pieces(PAGE) and generation.text == PAGE
    assert generation.ended and generation.tokens == len(pieces(PAGE))
