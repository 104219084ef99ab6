"""DeepSeek-OCR-2 in-process on vLLM: continuous batching over every page in flight, fed in parallel.

vLLM's offline `LLM.generate` renders multimodal prompts one at a time in the calling process (~0.17 s per
A4 page for DeepSeek-OCR-2's tiling), which caps intake near 6 pages/s while an H100 could take far more.
Here a pool of worker processes each holds vLLM's own renderer, built from the same engine arguments (as
the front ends of `vllm serve --api-server-count N` do), and turns page images into engine inputs side by
side; the main process hands each input to the engine the moment it is ready and steps the engine in
between. The n-gram ban runs as `NoRepeatNGramProcessor`, whose cost per step does not grow with its window.

vLLM is imported only when this backend is built.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from PIL import Image

from .engine_loop import EngineLoop
from .prompt import GROUNDING, Sampling, model_prompt
from .schema import FINISH_LENGTH, FINISH_STOP, Generation, PageRequest, TextSink

log = logging.getLogger("docground.ocr")

NGRAM_PROCESSOR = "docground.ingest.engines.deepseek_ocr2.vllm_logits:NoRepeatNGramProcessor"
# The recipe's engine settings: prefix caching and the processor cache only cost memory on OCR (every page is
# a new image), and a render worker's processor cache could not stay in step with the engine's anyway.
ENGINE_DEFAULTS = {
    "max_model_len": 8192,
    "enable_prefix_caching": False,
    "mm_processor_cache_gb": 0,
    "limit_mm_per_prompt": {"image": 1},
}
# Fused-MoE kernel configs tuned for this model's expert shape (E=64, N=896), one file per GPU model in vLLM's
# naming (bench/gpu_device/tune_moe.py writes them): vLLM ships none for this shape on H100/H200 and falls
# back to a generic tile. vLLM reads this folder first and its own configs/ after it, shape by shape.
MOE_CONFIGS = Path(__file__).with_name("moe_configs")


def default_workers() -> int:
    """Render workers: the cores left after the engine core and this process, at most 16."""
    return max(0, min(16, (os.cpu_count() or 2) - 2))


class VllmBackend:
    name = "vllm"

    def __init__(self, model: str, *, preprocess_workers: int | None = None, max_num_seqs: int = 256,
                 gpu_memory_utilization: float = 0.9, pages_ahead: int | None = None, **engine_kwargs):
        """`pages_ahead`: rendered pages held beyond the engine's `max_num_seqs` so that finished pages are
        replaced at once (default half of max_num_seqs)."""
        # vLLM forks its engine core by default; forked from a threaded host (a Celery worker with its broker
        # threads, torch's CPU thread pool after the embedder loaded) the child can hang on a lock copied
        # mid-hold, as it did in the GPU worker on the H100. Spawn starts it clean.
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        if MOE_CONFIGS.is_dir():  # before vLLM reads its environment; one set by the operator wins
            os.environ.setdefault("VLLM_TUNED_CONFIG_FOLDER", str(MOE_CONFIGS))
        from vllm import LLM

        self.engine_kwargs = {**ENGINE_DEFAULTS, "model": model, "max_num_seqs": max_num_seqs,
                              "gpu_memory_utilization": gpu_memory_utilization,
                              "logits_processors": [NGRAM_PROCESSOR], **engine_kwargs}
        self.llm = LLM(**self.engine_kwargs)
        self.engine = self.llm.llm_engine
        workers = default_workers() if preprocess_workers is None else preprocess_workers
        self.renderers = _start_render_pool(self.engine_kwargs, workers) if workers > 0 else None
        self.render_workers = workers if self.renderers is not None else 0
        self._params: dict[tuple[Sampling, bool], object] = {}
        ahead = max_num_seqs // 2 if pages_ahead is None else pages_ahead
        # one thread steps the engine for every caller (the batches a GPU worker runs at once)
        self.loop = EngineLoop(self.engine, self._render_request, lambda r: self._sampling_params(r.sampling),
                               _generation, capacity=max_num_seqs + ahead, name="vllm-engine-loop")

    def generate(self, requests: Iterable[PageRequest]) -> list[Generation]:
        """Callable from several threads at once: their pages share the engine (engine_loop.py)."""
        return self.loop.generate(requests)

    def stream(self, request: PageRequest, on_text: TextSink) -> Generation:
        """One page beside whatever else is in the engine, each step's new text handed to `on_text` as it is
        decoded (DELTA outputs: a step reports only what it added; the last one comes with the Generation)."""
        pieces: list[str] = []
        tokens = 0

        def on_output(out) -> None:  # on the engine loop's thread
            nonlocal tokens
            if out.finished:
                return
            delta = out.outputs[0]
            tokens += len(delta.token_ids)
            if delta.text:
                pieces.append(delta.text)
                on_text(delta.text)

        request_id, result = self.loop.submit(request, self._sampling_params(request.sampling, delta=True),
                                              on_output)
        try:
            last = result.result()
        except BaseException:  # interrupted (Ctrl-C): free the engine of the page
            self.loop.abort([request_id])
            raise
        if last.text:
            on_text(last.text)
        return replace(last, text="".join(pieces) + last.text, tokens=tokens + last.tokens)

    def warm_up(self, pages: int = 64, tokens: int = 16) -> None:
        """Run a real batch's shapes once before the first document: `pages` A4 pages at 144 DPI in flight
        together (every render worker renders some; the encoder, prefill chunks and decode batch sizes of a
        full batch compile and tune now), `tokens` tokens each."""
        started = time.monotonic()
        sampling = Sampling(max_tokens=tokens, ignore_eos=True)
        page = Image.new("RGB", (1191, 1684), "white")
        self.generate(PageRequest(page, GROUNDING, sampling) for _ in range(pages))
        log.info("vLLM warmed up on %d pages in %.1f s", pages, time.monotonic() - started)

    def _render_request(self, request: PageRequest) -> Future:
        return self._render(model_prompt(request.task), request.image)

    def _render(self, prompt: str, image) -> Future:
        if self.renderers is not None:
            return self.renderers.submit(_render_in_worker, prompt, image)
        future: Future = Future()
        try:
            future.set_result(_render_with(self.llm.model_config, self.llm.renderer, prompt, image))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def _sampling_params(self, sampling: Sampling, delta: bool = False):
        """The page's decoding; `delta`: every step reports the text it added (streaming), else only the
        finished page its whole text."""
        if (sampling, delta) not in self._params:
            from vllm import SamplingParams
            from vllm.sampling_params import RequestOutputKind

            self._params[sampling, delta] = SamplingParams(
                temperature=0.0, max_tokens=sampling.max_tokens, ignore_eos=sampling.ignore_eos,
                skip_special_tokens=False, extra_args=sampling.ngram_args(),
                output_kind=RequestOutputKind.DELTA if delta else RequestOutputKind.FINAL_ONLY)
        return self._params[sampling, delta]

    def close(self) -> None:
        self.loop.close()
        if self.renderers is not None:
            self.renderers.shutdown(wait=False, cancel_futures=True)
        self.engine.engine_core.shutdown()


def _generation(out) -> Generation:
    completion = out.outputs[0]
    reason = completion.finish_reason
    tokens = len(completion.token_ids)
    if reason in (FINISH_STOP, FINISH_LENGTH):
        return Generation(text=completion.text, finish_reason=reason, tokens=tokens)
    return Generation(text=completion.text, finish_reason=str(reason), tokens=tokens, error=f"finish_reason {reason!r}")


def _start_render_pool(engine_kwargs: dict, workers: int) -> ProcessPoolExecutor | None:
    """Spawned (not forked: the parent runs vLLM's threads) and warmed, so no document waits for start-up."""
    started = time.monotonic()
    kwargs = {k: v for k, v in engine_kwargs.items() if k != "logits_processors"}
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(kwargs,))
    try:
        # a blank A4 page makes the round trip a real page makes (tensors back through shared memory)
        probe = pool.submit(_render_in_worker, model_prompt("Free OCR."), Image.new("RGB", (1191, 1684), "white"))
        for f in [pool.submit(time.sleep, 0.5) for _ in range(workers - 1)]:
            f.result()
        if "prompt_token_ids" not in probe.result():
            raise RuntimeError(f"a render worker returned {type(probe.result()).__name__}, not an engine input")
    except Exception:  # the engine still works, rendering in this process
        log.exception("vLLM render workers failed to start; rendering pages in the engine's process")
        pool.shutdown(wait=False, cancel_futures=True)
        return None
    log.info("%d vLLM render workers ready in %.0f s", workers, time.monotonic() - started)
    return pool


_worker_renderer: tuple | None = None


def _init_worker(engine_kwargs: dict) -> None:
    global _worker_renderer
    import torch
    from vllm.engine.arg_utils import EngineArgs
    from vllm.renderers import renderer_from_config

    torch.set_num_threads(1)  # one page per worker; the pool supplies the parallelism
    config = EngineArgs(**engine_kwargs).create_engine_config()
    _worker_renderer = (config.model_config, renderer_from_config(config))


def _render_in_worker(prompt: str, image):
    model_config, renderer = _worker_renderer
    return _render_with(model_config, renderer, prompt, image)


def _render_with(model_config, renderer, prompt: str, image):
    """One page's engine input, exactly as `LLM.generate` renders it."""
    from vllm.renderers.inputs.preprocess import parse_model_prompt

    parsed = parse_model_prompt(model_config, {"prompt": prompt, "multi_modal_data": {"image": image}})
    (engine_input,) = renderer.render_cmpl([parsed])
    return engine_input
