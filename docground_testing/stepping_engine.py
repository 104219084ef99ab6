"""Continuous batching in miniature, for CPU tests and dry runs of the GPU path: an engine with vLLM's
`add_request` / `step` / `abort_request` surface, driven by DeepSeek-OCR-2's engine loop exactly as the vLLM
backend drives vLLM (ingest/engines/deepseek_ocr2/engine_loop.py).

Each page takes `steps` steps; at most `max_running` pages advance per step (the rest wait, as in vLLM's
waiting queue); a step takes `step_s` plus `per_page_s` for each running page (a GPU's step grows with its
batch). A finished page answers with grounded markdown made from the page's pixels, so the same page always
reads the same whoever parses it. `peak_file`, when given, holds the most pages the engine held at once.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import Future
from pathlib import Path


class SteppingEngine:
    def __init__(self, steps: int = 20, step_s: float = 0.05, per_page_s: float = 0.0, max_running: int = 256,
                 peak_file: Path | None = None):
        self.steps, self.step_s, self.per_page_s, self.max_running = steps, step_s, per_page_s, max_running
        self.pages: dict[str, list] = {}  # id -> [digest, steps left], admission order
        self.peak, self.peak_file = 0, peak_file

    def add_request(self, request_id, engine_input, params):
        self.pages[request_id] = [engine_input, getattr(params, "steps", None) or self.steps]
        if len(self.pages) > self.peak:
            self.peak = len(self.pages)
            if self.peak_file is not None:
                self.peak_file.write_text(str(self.peak))

    def abort_request(self, ids):
        for request_id in ids:
            self.pages.pop(request_id, None)

    def step(self):
        running = list(self.pages.items())[:self.max_running]
        time.sleep(self.step_s + self.per_page_s * len(running))
        done = []
        for request_id, state in running:
            state[1] -= 1
            if state[1] <= 0:
                del self.pages[request_id]
                done.append(Finished(request_id, state[0]))
        return done


class Finished:
    finished = True

    def __init__(self, request_id: str, digest: str):
        self.request_id, self.digest = request_id, digest


def grounded_answer(out: Finished):
    """What the model would write for the page: a title and a paragraph, both boxed, then the end."""
    from docground.ingest.engines.deepseek_ocr2.schema import FINISH_STOP, Generation

    text = (f"<|ref|>title<|/ref|><|det|>[[80, 40, 920, 90]]<|/det|>\n# Page {out.digest[:6]}\n"
            f"<|ref|>text<|/ref|><|det|>[[80, 120, 920, 400]]<|/det|>\nScanned words {out.digest[6:30]} "
            f"and the figures {int(out.digest[30:36], 16)} of this page.\n")
    return Generation(text=text, finish_reason=FINISH_STOP, tokens=len(text) // 3)


class SteppingBackend:
    """A DeepSeek-OCR-2 backend of the vLLM backend's shape: the engine loop around a SteppingEngine;
    rendering a page is hashing its pixels. `capacity`: pages held at once (running + waiting)."""

    name = "stepping"

    def __init__(self, engine: SteppingEngine, capacity: int):
        from docground.ingest.engines.deepseek_ocr2.engine_loop import EngineLoop

        def render(request) -> Future:
            future: Future = Future()
            future.set_result(hashlib.sha256(request.image.tobytes()).hexdigest())
            return future

        self.engine = engine
        self.loop = EngineLoop(engine, render, lambda r: r.sampling, grounded_answer, capacity=capacity)

    def generate(self, requests):
        return self.loop.generate(requests)

    def close(self):
        self.loop.close()
