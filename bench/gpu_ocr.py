"""GPU benchmark: DeepSeek-OCR-2 page throughput on one GPU, on the same synthetic pages, beside what the
language model alone can do.

  docground        docground's DeepseekOcr2Engine.parse_many on the vLLM backend: page rendering fed from a
                   pool of worker processes, every page in flight through the engine loop, the incremental
                   n-gram ban, warmed up as a GPU worker warms up
  vllm-bare        vllm.LLM.generate as the vLLM recipe runs it (one call over all pages, vLLM's
                   NGramPerReqLogitsProcessor)
  decoder-ceiling  the language model alone: text-only prompts of a page's length (1,130 tokens), the same
                   output lengths, no image, no guard
  transformers     docground's engine on the transformers backend (native DeepseekOcr2ForConditionalGeneration)

Workloads (each system runs them in one process, one engine start): `fixed` = --pages pages of exactly --tokens
output tokens; `mix` = output lengths like real pages, log-uniform between --mix-min and --mix-max, with
--mix-loops pages that loop until --loop-tokens. Each reports pages/s and page latency (p50/p95, from the
moment the batch is handed over: short pages must not wait for long ones).

The weights are random (vLLM `load_format="dummy"`; transformers random init) with the real model's config,
so every page emits exactly the tokens asked (`ignore_eos`); the engine runs one rung (random output always
fails validation, so the retry ladder would only multiply work). Pages: distinct synthetic A4 pages rendered
at 144 DPI (1191x1684: 6 tiles + global view, 1121 image tokens). Each system runs in its own process, one
after another; the table comes last.

On the GPU machine (vLLM from ../shared/tools/vllm-device/; model dir from its make_model_dir.py):

    python3 -m bench.gpu_ocr --model /tmp/dsocr2 --systems docground,vllm-bare,decoder-ceiling --out $OUT

(`-m` from the checkout's root: nothing is installed there, and the root is where docground_testing is.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from docground_testing.module_standins import make_importable, run_dir
from docground_testing.report_pages import report_page

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "<image>\n<|grounding|>Convert the document to markdown."
NGRAM_ARGS = {"ngram_size": 30, "window_size": 90, "whitelist_token_ids": [128821, 128822]}


def render_pages(first: int, count: int) -> list:
    from multiprocessing import get_context

    with get_context("spawn").Pool(min(16, os.cpu_count() or 4)) as pool:
        return pool.map(report_page, range(first, first + count), chunksize=4)


def engine_kwargs(args) -> dict:
    extra = json.loads(args.engine_json) if args.engine_json else {}
    return dict(tokenizer=args.model, load_format="dummy", dtype="bfloat16", max_model_len=8192,
                max_num_seqs=args.max_num_seqs, gpu_memory_utilization=args.gpu_mem, enable_prefix_caching=False,
                mm_processor_cache_gb=0, limit_mm_per_prompt={"image": 1}, seed=0,
                disable_log_stats=False) | extra  # vLLM's 5-second throughput lines land in the logs


class CountingBackend:
    """Counts the output tokens the engine's backend produced (the engine itself reports pages)."""

    def __init__(self, inner):
        self.inner, self.name, self.tokens = inner, inner.name, 0

    def generate(self, requests):
        out = self.inner.generate(requests)
        self.tokens += sum(g.tokens for g in out)
        return out

    def close(self):
        self.inner.close()


def length_mix(pages: int, shortest: int, longest: int, loops: int, loop_tokens: int, seed: int = 11) -> list[int]:
    """Output lengths like real pages: log-uniform between `shortest` and `longest` tokens (many short pages,
    some long), and `loops` pages spread through the batch that run to `loop_tokens` (a repetition loop
    until the cap)."""
    rng = random.Random(seed)
    lengths = [round(math.exp(rng.uniform(math.log(shortest), math.log(longest)))) for _ in range(pages)]
    for i in range(min(loops, pages)):
        lengths[(2 * i + 1) * pages // (2 * loops)] = loop_tokens
    return lengths


def workloads(args, most_pages: int | None = None) -> list[tuple[str, list[int]]]:
    """(name, output tokens of each page): `fixed` (--pages x --tokens) and `mix` (length_mix)."""
    out = []
    for name in args.workloads.split(","):
        if name == "fixed":
            lengths = [args.tokens] * args.pages
        elif name == "mix":
            lengths = length_mix(args.mix_pages, args.mix_min, args.mix_max, args.mix_loops, args.loop_tokens)
        else:
            raise SystemExit(f"unknown workload {name!r}: fixed, mix")
        out.append((name, lengths[:most_pages] if most_pages else lengths))
    return out


def latency(finish_times: list[float], t0: float) -> dict:
    """Page latency from the moment the batch was handed over: p50, p95, max."""
    if not finish_times:
        return {}
    lat = sorted(t - t0 for t in finish_times)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))]

    return {"p50_s": pct(0.5), "p95_s": pct(0.95), "max_s": lat[-1]}


def measured(workload: str, lengths: list[int], pages: int, wall: float, out_tokens: int, lat: dict) -> dict:
    return dict(workload=workload, pages=pages, wall_s=wall, out_tokens=out_tokens, pages_per_s=pages / wall,
                out_tok_per_s=out_tokens / wall, tokens_asked=sum(lengths), **lat)


def system_docground(args) -> list[dict]:
    from dataclasses import replace

    from docground.ingest.engines.deepseek_ocr2 import DeepseekOcr2Engine
    from docground.ingest.engines.deepseek_ocr2.backend_vllm import VllmBackend
    from docground.ingest.engines.deepseek_ocr2.prompt import fixed_length, ladder
    from docground.ingest.engines.deepseek_ocr2.schema import Generation, PageRequest
    from docground.ingest.providers.image import ImagePage

    class LengthsEngine(DeepseekOcr2Engine):
        """The engine, with each page's output length set by the workload (random weights never stop)."""

        lengths: dict[int, int] = {}

        def _generate(self, backend, pages, attempt) -> list[Generation]:
            requests = (PageRequest(self._image(p, attempt.dpi), attempt.task,
                                    replace(attempt.sampling, max_tokens=self.lengths[p.number])) for p in pages)
            return backend.generate(requests)

    t0 = time.perf_counter()
    workers = None if args.workers < 0 else args.workers
    ahead = None if args.pages_ahead < 0 else args.pages_ahead
    backend = VllmBackend(args.model, preprocess_workers=workers, pages_ahead=ahead, **engine_kwargs(args))
    init = time.perf_counter() - t0
    t0 = time.perf_counter()
    backend.warm_up(pages=min(args.max_num_seqs, 128))  # what a GPU worker does before its first task
    warm = time.perf_counter() - t0
    counting = CountingBackend(backend)
    results = []
    for name, lengths in workloads(args):
        engine = LengthsEngine(counting, attempts=fixed_length(ladder()[:1], max(lengths)))
        engine.lengths = {i + 1: n for i, n in enumerate(lengths)}
        pages = [ImagePage(i + 1, im, 144.0) for i, im in enumerate(render_pages(0, len(lengths)))]
        counting.tokens, backend.loop.finish_times, backend.loop.peak_in_engine = 0, [], 0
        t0, m0 = time.perf_counter(), time.monotonic()
        layouts = engine.parse_many(pages, "bench")
        wall = time.perf_counter() - t0
        r = measured(name, lengths, len(layouts), wall, counting.tokens, latency(backend.loop.finish_times, m0))
        r.update(peak_in_engine=backend.loop.peak_in_engine, sample_reason=layouts[0].reason[:120])
        print(f"PROGRESS docground {name}: {r['pages_per_s']:.2f} pages/s", flush=True)
        results.append(r)
    settings = (f"vLLM {_vllm_version()}, max_num_seqs {args.max_num_seqs}, {backend.render_workers} render workers, "
                f"{backend.loop.capacity} pages held, incremental n-gram 30/90, warm-up {warm:.0f} s")
    for r in results:
        r.update(init_s=init, settings=settings)
    backend.close()
    return results


def system_vllm_bare(args) -> list[dict]:
    from vllm import LLM, SamplingParams
    from vllm.model_executor.models.deepseek_ocr import NGramPerReqLogitsProcessor

    t0 = time.perf_counter()
    llm = LLM(model=args.model, logits_processors=[NGramPerReqLogitsProcessor], **engine_kwargs(args))
    init = time.perf_counter() - t0

    def params(tokens: int):
        return SamplingParams(temperature=0.0, max_tokens=tokens, ignore_eos=True, skip_special_tokens=False,
                              extra_args=NGRAM_ARGS)

    def generate(images, lengths):
        return llm.generate([{"prompt": PROMPT, "multi_modal_data": {"image": im}} for im in images],
                            [params(n) for n in lengths], use_tqdm=False)

    generate(render_pages(10_000_000, 16), [16] * 16)
    settings = (f"vLLM {_vllm_version()}, max_num_seqs {args.max_num_seqs}, one LLM.generate, "
                "NGramPerReqLogitsProcessor 30/90")
    return timed_generate("vllm-bare", workloads(args, most_pages=args.bare_pages),
                          lambda lengths: (render_pages(0, len(lengths)), lengths), generate, init, settings)


def system_decoder_ceiling(args) -> list[dict]:
    """The language model alone: text-only prompts as long as a page's (1,130 tokens), the same output
    lengths, no image, no n-gram guard: what the decoder can do on this GPU at these settings."""
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    t0 = time.perf_counter()
    llm = LLM(model=args.model, **engine_kwargs(args))
    init = time.perf_counter() - t0
    rng = random.Random(5)

    def requests(lengths: list[int]) -> tuple[list, list]:
        prompts = [TokensPrompt(prompt_token_ids=[0] + [rng.randrange(1000, 120000) for _ in range(1129)])
                   for _ in lengths]
        return prompts, [SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True) for n in lengths]

    def generate(prompts, params):
        return llm.generate(prompts, params, use_tqdm=False)

    generate(*requests([16] * 16))
    settings = (f"vLLM {_vllm_version()}, max_num_seqs {args.max_num_seqs}, text-only prompts of 1,130 tokens, "
                "no guard")
    return timed_generate("decoder-ceiling", workloads(args), requests, generate, init, settings)


def timed_generate(system: str, runs: list[tuple[str, list[int]]], inputs: Callable[[list[int]], tuple],
                   generate: Callable[..., list], init: float, settings: str) -> list[dict]:
    """Each workload through one vllm.LLM.generate call: `inputs` builds its arguments from the output lengths
    before the clock starts (rendering pages is not the engine's time), `generate` is what is timed."""
    results = []
    for name, lengths in runs:
        arguments = inputs(lengths)
        t0, m0 = time.perf_counter(), time.monotonic()
        outs = generate(*arguments)
        wall = time.perf_counter() - t0
        results.append(measured(name, lengths, len(outs), wall, sum(len(o.outputs[0].token_ids) for o in outs),
                                latency(_last_token_times(outs), m0)))
        print(f"PROGRESS {system} {name}: {results[-1]['pages_per_s']:.2f} pages/s", flush=True)
    for r in results:
        r.update(init_s=init, settings=settings)
    return results


def _last_token_times(outs) -> list[float]:
    """Each request's last token, on the engine core's monotonic clock (vLLM's request stats)."""
    return [o.metrics.last_token_ts for o in outs if getattr(o, "metrics", None) and o.metrics.last_token_ts]


def system_transformers(args) -> list[dict]:
    import torch
    from transformers import (
        DeepseekOcr2Config,
        DeepseekOcr2ForConditionalGeneration,
        DeepseekOcr2Processor,
        PreTrainedTokenizerFast,
    )
    from transformers.models.deepseek_ocr2 import DeepseekOcr2ImageProcessor

    from docground.ingest.engines.deepseek_ocr2.backend_transformers import TransformersBackend

    t0 = time.perf_counter()
    tok = PreTrainedTokenizerFast(tokenizer_file=str(Path(args.model) / "tokenizer.json"),
                                  bos_token="<｜begin▁of▁sentence｜>", eos_token="<｜end▁of▁sentence｜>",
                                  pad_token="<｜▁pad▁｜>")
    processor = DeepseekOcr2Processor(image_processor=DeepseekOcr2ImageProcessor(), tokenizer=tok)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = DeepseekOcr2ForConditionalGeneration(full_size_config(DeepseekOcr2Config)).eval()
    torch.set_default_dtype(torch.float32)
    init = time.perf_counter() - t0
    from docground.ingest.engines.deepseek_ocr2 import DeepseekOcr2Engine
    from docground.ingest.engines.deepseek_ocr2.prompt import fixed_length, ladder
    from docground.ingest.providers.image import ImagePage

    counting = CountingBackend(TransformersBackend(model, processor, batch_size=args.hf_batch))
    pages = [ImagePage(i + 1, im, 144.0) for i, im in enumerate(render_pages(0, args.hf_pages))]
    DeepseekOcr2Engine(counting, attempts=fixed_length(ladder()[:1], 16)).parse_many(pages[:2], "warm")
    counting.tokens = 0
    t0 = time.perf_counter()
    layouts = DeepseekOcr2Engine(counting, attempts=fixed_length(ladder()[:1], args.tokens)).parse_many(pages, "b")
    wall = time.perf_counter() - t0
    r = measured("fixed", [args.tokens] * len(pages), len(layouts), wall, counting.tokens, {})
    r.update(init_s=init, settings=f"transformers {_version('transformers')}, eager, batch {args.hf_batch}, "
                                   "random init (bf16), incremental n-gram 30/90")
    return [r]


def full_size_config(config_cls):
    """DeepSeek-OCR-2's real shape (3.39 B parameters), as ../shared/research/deepseek-ocr2.md §3.2 gives it."""
    text = dict(vocab_size=129280, hidden_size=1280, intermediate_size=6848, moe_intermediate_size=896,
                num_hidden_layers=12, num_attention_heads=10, num_key_value_heads=10, n_routed_experts=64,
                n_shared_experts=2, num_experts_per_tok=6, n_group=1, topk_group=1, topk_method="greedy",
                routed_scaling_factor=1.0, max_position_embeddings=8192, rms_norm_eps=1e-6, bos_token_id=0,
                eos_token_id=1, pad_token_id=2, rope_parameters={"rope_theta": 10000.0, "rope_type": "default"},
                mlp_layer_types=["dense"] + ["sparse"] * 11)
    vision = dict(sam_config=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                  global_attn_indexes=[2, 5, 8, 11], downsample_channels=[512, 896]),
                  encoder_config=dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                                      num_key_value_heads=2, intermediate_size=4864, rms_norm_eps=1e-6,
                                      rope_parameters={"rope_theta": 1e6, "rope_type": "default"}, vocab_size=1))
    return config_cls(text_config=text, vision_config=vision, image_token_id=128815)


def _vllm_version() -> str:
    return _version("vllm")


def _version(package: str) -> str:
    try:
        return __import__(package).__version__
    except Exception:
        return "?"


SYSTEMS = {"docground": system_docground, "vllm-bare": system_vllm_bare, "decoder-ceiling": system_decoder_ceiling,
           "transformers": system_transformers}
# so that one stuck system leaves time to the rest
TIME_CAP_S = {"docground": 420, "vllm-bare": 330, "decoder-ceiling": 240, "transformers": 240}


def run_one(args) -> None:
    make_importable()
    os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")  # flashinfer is not in the device bundle
    for result in SYSTEMS[args.system](args):
        result.update(system=args.system)
        print("RESULT " + json.dumps(result), flush=True)


def orchestrate(args) -> None:
    run_dir()  # one temporary folder for every system's process, removed when this one exits
    deadline = time.time() + args.budget
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for system in args.systems.split(","):
        left = deadline - time.time()
        if left < 60:
            results.append(dict(system=system, skipped=f"time budget spent ({args.budget} s)"))
            continue
        cmd = [sys.executable, "-m", "bench.gpu_ocr", "--system", system] + _forwarded(args)  # cwd ROOT: as -m
        started = time.time()
        # its own process group: on timeout the engine core and render workers it started go down with it
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, cwd=ROOT)
        try:
            log, _ = proc.communicate(timeout=min(left, TIME_CAP_S[system]))
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            log, rc = proc.communicate()[0], "timeout"
        with contextlib.suppress(ProcessLookupError):  # leftovers of a finished system
            os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(3)  # let its GPU memory be released
        if out_dir:
            with open(out_dir / "gpu_ocr_logs.txt", "a") as logs:  # one file: the device returns at most 8
                logs.write(f"===== {system} (rc {rc})\n{log[-400_000:]}\n")
        found = [json.loads(line[7:]) for line in log.splitlines() if line.startswith("RESULT ")]
        for r in found:
            print(f"--- {system}: {json.dumps(r)}", flush=True)
        results += found
        if not found:
            tail = "\n".join(log.splitlines()[-15:])
            results.append(dict(system=system, skipped=f"rc {rc} after {time.time() - started:.0f} s"))
            print(f"--- {system} failed (rc {rc}):\n{tail}", flush=True)
        if out_dir:  # after every system: a call cut off by its time limit keeps what was measured
            (out_dir / "gpu_ocr.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    print_table(results, args)


def _forwarded(args) -> list[str]:
    return ["--model", args.model, "--pages", str(args.pages), "--tokens", str(args.tokens),
            "--max-num-seqs", str(args.max_num_seqs), "--gpu-mem", str(args.gpu_mem), "--workers", str(args.workers),
            "--hf-pages", str(args.hf_pages), "--hf-batch", str(args.hf_batch), "--engine-json", args.engine_json,
            "--workloads", args.workloads, "--mix-pages", str(args.mix_pages), "--mix-min", str(args.mix_min),
            "--mix-max", str(args.mix_max), "--mix-loops", str(args.mix_loops), "--loop-tokens",
            str(args.loop_tokens), "--bare-pages", str(args.bare_pages), "--pages-ahead", str(args.pages_ahead)]


def print_table(results: list[dict], args) -> None:
    print(f"\nDeepSeek-OCR-2 (dummy weights, real config), synthetic A4 pages at 144 DPI; fixed = {args.pages} pages "
          f"x {args.tokens} tokens, mix = {args.mix_pages} pages of {args.mix_min}-{args.mix_max} tokens "
          f"(log-uniform) with {args.mix_loops} looping to {args.loop_tokens}")
    print("| system | workload | pages | wall s | pages/s | output tok/s | p50 page s | p95 page s | engine start s "
          "| settings |")
    print("|---|---|---|---|---|---|---|---|---|---|")

    def sec(r: dict, key: str) -> str:
        return f"{r[key]:.1f}" if key in r else "–"

    for r in results:
        if "skipped" in r:
            print(f"| {r['system']} | – | – | – | – | – | – | – | – | not run: {r['skipped']} |")
            continue
        print(f"| {r['system']} | {r['workload']} | {r['pages']} | {r['wall_s']:.1f} | {r['pages_per_s']:.2f} "
              f"| {r['out_tok_per_s']:,.0f} | {sec(r, 'p50_s')} | {sec(r, 'p95_s')} | {r['init_s']:.0f} "
              f"| {r['settings']} |")
    ceiling = {r["workload"]: r for r in results if r.get("system") == "decoder-ceiling" and "skipped" not in r}
    for r in results:
        if r.get("system") in ("docground", "vllm-bare") and r.get("workload") in ceiling:
            tok = r["out_tok_per_s"] / ceiling[r["workload"]]["out_tok_per_s"]
            print(f"{r['system']} {r['workload']}: {tok:.0%} of the decoder ceiling's output tokens/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model directory (config + tokenizer; weights are random)")
    ap.add_argument("--systems", default="docground,vllm-bare,decoder-ceiling")
    ap.add_argument("--system", choices=sorted(SYSTEMS), help=argparse.SUPPRESS)
    ap.add_argument("--workloads", default="fixed,mix", help="fixed (--pages x --tokens), mix (real page lengths)")
    ap.add_argument("--pages", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=1000)
    ap.add_argument("--mix-pages", type=int, default=256)
    ap.add_argument("--mix-min", type=int, default=200)
    ap.add_argument("--mix-max", type=int, default=4000)
    ap.add_argument("--mix-loops", type=int, default=4, help="pages of the mix that loop until --loop-tokens")
    ap.add_argument("--loop-tokens", type=int, default=6000)
    ap.add_argument("--bare-pages", type=int, default=128, help="vllm-bare runs the first this many pages of each "
                    "workload (it renders in one process: a few pages/s whatever the count)")
    ap.add_argument("--max-num-seqs", type=int, default=256)
    ap.add_argument("--pages-ahead", type=int, default=-1, help="docground: pages held rendered beyond max_num_seqs; "
                    "-1 = the backend's default (half of it)")
    ap.add_argument("--gpu-mem", type=float, default=0.9)
    ap.add_argument("--workers", type=int, default=-1, help="docground render workers; -1 = auto")
    ap.add_argument("--engine-json", default="", help='more vLLM engine arguments for every vLLM system, e.g. '
                    '\'{"max_num_batched_tokens": 32768}\'')
    ap.add_argument("--hf-pages", type=int, default=16)
    ap.add_argument("--hf-batch", type=int, default=16)
    ap.add_argument("--budget", type=float, default=540, help="seconds for all systems together")
    ap.add_argument("--out", default=None, help="folder for gpu_ocr.json and gpu_ocr_logs.txt")
    args = ap.parse_args()
    if args.system:
        run_one(args)
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
