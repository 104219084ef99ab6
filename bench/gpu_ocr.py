"""GPU benchmark: DeepSeek-OCR-2 page throughput on one GPU, three ways, on the same synthetic pages.

  docground     docground's DeepseekOcr2Engine.parse_many on the vLLM backend: page rendering fed from a
                pool of worker processes, every page in flight, the incremental n-gram ban
  vllm-bare     vllm.LLM.generate as the vLLM recipe runs it (one call over all pages, vLLM's
                NGramPerReqLogitsProcessor)
  transformers  docground's engine on the transformers backend (native DeepseekOcr2ForConditionalGeneration)

The weights are random (vLLM `load_format="dummy"`; transformers random init) with the real model's config,
so every page emits exactly --tokens output tokens (`ignore_eos`); the engine runs one rung (random output
always fails validation, so the retry ladder would only multiply work). Pages: distinct synthetic A4 pages
rendered at 144 DPI (1191x1684: 6 tiles + global view, 1121 image tokens). Each system runs in its own
process, one after another; the table comes last.

On the GPU machine (vLLM from ../shared/tools/vllm-device/; model dir from its make_model_dir.py):

    python3 bench/gpu_ocr.py --model /tmp/dsocr2 --systems docground,vllm-bare,transformers --out $OUT
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "<image>\n<|grounding|>Convert the document to markdown."
NGRAM_ARGS = {"ngram_size": 30, "window_size": 90, "whitelist_token_ids": [128821, 128822]}
WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have "
         "an they you were her she there been one all we their has would when if so no will can more other about "
         "revenue table figure section result analysis method data model report annual total increase decrease "
         "value page document market growth company quarter policy review system design").split()


def render_page(i: int):
    """A distinct A4 page at 144 DPI: a title, text lines and small ruled tables (as the shared vLLM bench)."""
    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(1000003 * i + 7)
    width, height = 1191, 1684
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    try:
        font, big = ImageFont.load_default(size=20), ImageFont.load_default(size=34)
    except TypeError:  # Pillow without FreeType sizes
        font = big = ImageFont.load_default()
    draw.text((90, 60), f"Synthetic report page {i}", fill="black", font=big)
    y = 130
    while y < height - 120:
        if rng.random() < 0.08:
            rows, cols = rng.randint(3, 6), rng.randint(3, 5)
            cw = (width - 180) // cols
            for r in range(rows):
                for c in range(cols):
                    x0, y0 = 90 + c * cw, y + r * 30
                    draw.rectangle([x0, y0, x0 + cw, y0 + 30], outline="black")
                    draw.text((x0 + 6, y0 + 5), f"{rng.randint(0, 999)}.{rng.randint(0, 99):02d}", fill="black",
                              font=font)
            y += rows * 30 + 30
            continue
        draw.text((90, y), " ".join(rng.choice(WORDS) for _ in range(rng.randint(7, 13))).capitalize(),
                  fill="black", font=font)
        y += 28
    draw.text((width // 2 - 20, height - 70), str(i), fill="black", font=font)
    return img


def render_pages(first: int, count: int) -> list:
    from multiprocessing import get_context

    with get_context("spawn").Pool(min(16, os.cpu_count() or 4)) as pool:
        return pool.map(render_page, range(first, first + count), chunksize=4)


RUN_DIR_ENV = "DGBENCH_RUN_DIR"  # not DOCGROUND_*: tests.cluster.cluster_env drops those from a worker's env
STUBS_ENV = "DGBENCH_STUBS"
# Stand-ins for what the GPU machine lacks; the benchmarks feed image pages only, so nothing really calls them.
STAND_INS = {"pymupdf": "def __getattr__(name):\n    return 0\n",
             "filetype": "def guess(data):\n    return None\n"}
_OWNED: dict[str, int] = {}  # run folder -> the pid that made it (and alone removes it)


def run_dir() -> Path:
    """This run's temporary folder (the docground link farm, the stand-in modules), made by mkdtemp once per
    run: child processes reuse it (DGBENCH_RUN_DIR), and the process that made it removes it at exit. Nothing
    stays in /tmp for a later benchmark on the same machine to pick up."""
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and Path(inherited).is_dir():
        return Path(inherited)
    folder = tempfile.mkdtemp(prefix="docground-bench-")
    _OWNED[folder] = os.getpid()
    os.environ[RUN_DIR_ENV] = folder
    atexit.register(cleanup_run_dir, folder)
    return Path(folder)


def cleanup_run_dir(folder: str | None = None) -> None:
    """Remove the run folder(s) this process made, and every path into them from sys.path and the
    environment; a no-op for a folder it inherited or in a forked child."""
    for owned in [folder] if folder else list(_OWNED):
        if _OWNED.get(owned) != os.getpid():
            continue
        shutil.rmtree(owned, ignore_errors=True)
        del _OWNED[owned]

        def outside(path: str, owned: str = owned) -> bool:
            return path != owned and not path.startswith(owned + os.sep)

        sys.path[:] = [p for p in sys.path if outside(p)]
        for name in (RUN_DIR_ENV, STUBS_ENV):
            if not outside(os.environ.get(name, "")):
                del os.environ[name]
        if "PYTHONPATH" in os.environ:
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in os.environ["PYTHONPATH"].split(os.pathsep)
                                                       if outside(p))


def write_stand_ins(folder: Path, stand_ins: dict[str, str] | None = None) -> list[str]:
    """Write into `folder` a stand-in module for each package of `stand_ins` (default STAND_INS) that is not
    installed, never for one that is (importlib.util.find_spec decides), and append `folder` to sys.path,
    after every installed package. Returns the names written."""
    written = []
    for name, body in (STAND_INS if stand_ins is None else stand_ins).items():
        if importlib.util.find_spec(name) is not None:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.py").write_text(f"# placeholder written by bench/gpu_ocr.py: no {name} here\n{body}")
        written.append(name)
    if written and str(folder) not in sys.path:
        sys.path.append(str(folder))
        importlib.invalidate_caches()
    return written


def use_stand_ins_from_env() -> None:
    """In a child started as a new interpreter (a Celery worker): append the stand-in folder its parent
    made (DGBENCH_STUBS) to sys.path, last, as the parent did."""
    folder = os.environ.get(STUBS_ENV)
    if folder and Path(folder).is_dir() and folder not in sys.path:
        sys.path.append(folder)
        importlib.invalidate_caches()


def make_importable() -> None:
    """Let `docground.*` import from this checkout without installing it, in this process and its children.

    The GPU machine has no pymupdf or filetype; the benchmark feeds image pages only, so placeholder modules
    stand in for them there (never where the real ones are installed). Both the stand-ins and the link to
    this checkout live in this run's temporary folder (run_dir), removed at exit. The link (made only where
    no docground is installed) goes first on sys.path and PYTHONPATH; the stand-ins go last on sys.path and
    reach children through multiprocessing (which copies sys.path) or DGBENCH_STUBS (use_stand_ins_from_env),
    never through PYTHONPATH, which would put them before a child's installed packages.
    """
    run = run_dir()
    stubs = Path(tempfile.mkdtemp(prefix="stubs-", dir=run))
    if write_stand_ins(stubs):
        os.environ[STUBS_ENV] = str(stubs)
    try:
        import docground.ingest  # noqa: F401  (installed, e.g. `pip install -e .`)
    except ImportError:
        farm = run / "pkg"
        pkg = farm / "docground"
        pkg.mkdir(parents=True, exist_ok=True)
        for entry in (list((ROOT / "docground").iterdir())
                      + [ROOT / n for n in ("ingest", "retrieval", "workers", "api")]):
            link = pkg / entry.name
            if not link.exists():
                link.symlink_to(entry)
        if str(farm) not in sys.path:
            sys.path.insert(0, str(farm))
        paths = [str(farm)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


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


def run_engine(backend, args, pages: int, tokens: int, warm_pages: int) -> dict:
    from docground.ingest.engines.deepseek_ocr2 import DeepseekOcr2Engine
    from docground.ingest.engines.deepseek_ocr2.prompt import fixed_length, ladder
    from docground.ingest.providers.image import ImagePage

    counting = CountingBackend(backend)
    warm = DeepseekOcr2Engine(counting, attempts=fixed_length(ladder()[:1], 16))
    warm.parse_many([ImagePage(i + 1, im, 144.0) for i, im in enumerate(render_pages(10_000_000, warm_pages))], "w")
    images = render_pages(0, pages)
    engine = DeepseekOcr2Engine(counting, attempts=fixed_length(ladder()[:1], tokens))
    page_objs = [ImagePage(i + 1, im, 144.0) for i, im in enumerate(images)]
    counting.tokens = 0
    t0 = time.perf_counter()
    layouts = engine.parse_many(page_objs, "bench")
    wall = time.perf_counter() - t0
    return dict(pages=len(layouts), wall_s=wall, out_tokens=counting.tokens,
                sample_reason=layouts[0].reason[:120])


def system_docground(args) -> dict:
    from docground.ingest.engines.deepseek_ocr2.backend_vllm import VllmBackend

    t0 = time.perf_counter()
    workers = None if args.workers < 0 else args.workers
    kw = engine_kwargs(args)
    backend = VllmBackend(args.model, preprocess_workers=workers, **{k: v for k, v in kw.items()})
    init = time.perf_counter() - t0
    result = run_engine(backend, args, args.pages, args.tokens, warm_pages=16)
    n_workers = backend.render_workers
    result.update(init_s=init, settings=f"vLLM {_vllm_version()}, max_num_seqs {args.max_num_seqs}, "
                                          f"{n_workers} render workers, incremental n-gram 30/90")
    backend.close()
    return result


def system_vllm_bare(args) -> dict:
    from vllm import LLM, SamplingParams
    from vllm.model_executor.models.deepseek_ocr import NGramPerReqLogitsProcessor

    t0 = time.perf_counter()
    llm = LLM(model=args.model, logits_processors=[NGramPerReqLogitsProcessor], **engine_kwargs(args))
    init = time.perf_counter() - t0

    def generate(images, tokens):
        sp = SamplingParams(temperature=0.0, max_tokens=tokens, ignore_eos=True, skip_special_tokens=False,
                            extra_args=NGRAM_ARGS)
        return llm.generate([{"prompt": PROMPT, "multi_modal_data": {"image": im}} for im in images], sp,
                            use_tqdm=False)

    generate(render_pages(10_000_000, 16), 16)
    images = render_pages(0, args.pages)
    t0 = time.perf_counter()
    outs = generate(images, args.tokens)
    wall = time.perf_counter() - t0
    return dict(pages=len(outs), wall_s=wall, out_tokens=sum(len(o.outputs[0].token_ids) for o in outs),
                init_s=init, settings=f"vLLM {_vllm_version()}, max_num_seqs {args.max_num_seqs}, one LLM.generate, "
                                      "NGramPerReqLogitsProcessor 30/90")


def system_transformers(args) -> dict:
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
    backend = TransformersBackend(model, processor, batch_size=args.hf_batch)
    result = run_engine(backend, args, args.hf_pages, args.tokens, warm_pages=2)
    result.update(init_s=init, settings=f"transformers {_version('transformers')}, eager, batch {args.hf_batch}, "
                                        "random init (bf16), incremental n-gram 30/90")
    return result


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


SYSTEMS = {"docground": system_docground, "vllm-bare": system_vllm_bare, "transformers": system_transformers}
TIME_CAP_S = {"docground": 300, "vllm-bare": 260, "transformers": 240}  # so one stuck system leaves time to the rest


def run_one(args) -> None:
    make_importable()
    os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")  # flashinfer is not in the device bundle
    result = SYSTEMS[args.system](args)
    result.update(system=args.system, tokens_per_page=args.tokens, pages_per_s=result["pages"] / result["wall_s"],
                  out_tok_per_s=result["out_tokens"] / result["wall_s"])
    print("RESULT " + json.dumps(result), flush=True)


def orchestrate(args) -> None:
    run_dir()  # one temporary folder for every system's process, removed when this one exits
    deadline = time.time() + args.budget
    out_dir = Path(args.out) if args.out else None
    results = []
    for system in args.systems.split(","):
        left = deadline - time.time()
        if left < 60:
            results.append(dict(system=system, skipped=f"time budget spent ({args.budget} s)"))
            continue
        cmd = [sys.executable, __file__, "--system", system] + _forwarded(args)
        started = time.time()
        # its own process group: on timeout the engine core and render workers it started go down with it
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
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
            (out_dir / f"log_{system}.txt").write_text(log)
        found = [json.loads(line[7:]) for line in log.splitlines() if line.startswith("RESULT ")]
        if found:
            results.append(found[-1])
            print(f"--- {system}: {json.dumps(found[-1])}", flush=True)
        else:
            tail = "\n".join(log.splitlines()[-15:])
            results.append(dict(system=system, skipped=f"rc {rc} after {time.time() - started:.0f} s"))
            print(f"--- {system} failed (rc {rc}):\n{tail}", flush=True)
    if out_dir:
        (out_dir / "gpu_ocr.json").write_text(json.dumps(results, indent=1))
    print_table(results, args)


def _forwarded(args) -> list[str]:
    return ["--model", args.model, "--pages", str(args.pages), "--tokens", str(args.tokens),
            "--max-num-seqs", str(args.max_num_seqs), "--gpu-mem", str(args.gpu_mem), "--workers", str(args.workers),
            "--hf-pages", str(args.hf_pages), "--hf-batch", str(args.hf_batch), "--engine-json", args.engine_json]


def print_table(results: list[dict], args) -> None:
    print(f"\nDeepSeek-OCR-2 (dummy weights, real config), synthetic A4 pages at 144 DPI, exactly {args.tokens} output "
          "tokens per page")
    print("| system | pages | wall s | pages/s | output tok/s | engine start s | settings |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        if "skipped" in r:
            print(f"| {r['system']} | – | – | – | – | – | not run: {r['skipped']} |")
            continue
        print(f"| {r['system']} | {r['pages']} | {r['wall_s']:.1f} | {r['pages_per_s']:.2f} "
              f"| {r['out_tok_per_s']:,.0f} | {r['init_s']:.0f} | {r['settings']} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model directory (config + tokenizer; weights are random)")
    ap.add_argument("--systems", default="docground,vllm-bare,transformers")
    ap.add_argument("--system", choices=sorted(SYSTEMS), help=argparse.SUPPRESS)
    ap.add_argument("--pages", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=1000)
    ap.add_argument("--max-num-seqs", type=int, default=256)
    ap.add_argument("--gpu-mem", type=float, default=0.9)
    ap.add_argument("--workers", type=int, default=-1, help="docground render workers; -1 = auto")
    ap.add_argument("--engine-json", default="", help='more vLLM engine arguments for both vLLM systems, e.g. '
                    '\'{"compilation_config": {"compile_mm_encoder": true}}\'')
    ap.add_argument("--hf-pages", type=int, default=16)
    ap.add_argument("--hf-batch", type=int, default=16)
    ap.add_argument("--budget", type=float, default=540, help="seconds for all systems together")
    ap.add_argument("--out", default=None, help="folder for logs and gpu_ocr.json")
    args = ap.parse_args()
    if args.system:
        run_one(args)
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
