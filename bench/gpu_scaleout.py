"""The `gpu` queue at the engine's pace: pages/s of one GPU worker through the queue against its engine alone
on the same pages, and of 1, 2, 4, 8 GPU workers on as many GPUs (`--gpus`, default: every GPU visible).
Targets: the queue >= 95% of the engine alone; two GPUs >= 1.95x one.

The production path end to end, on one machine: a private redis-server, a CPU worker (`cpu` queue: the
fan-out of each document into page batches, then chunking and embedding), GPU workers (`gpu` queue, one per
GPU by CUDA_VISIBLE_DEVICES, run as `docground worker --queues gpu` runs them: a threads pool of
DOCGROUND_GPU_WORKER_TASKS page batches at once into one engine, each batch acknowledged once stored; the
engine loaded and warmed up before the first task), and this process as the client (registers documents,
dispatches them, reads progress from the registry). Documents are scanned-page TIFFs (distinct synthetic A4
pages at 144 DPI, as bench/gpu_ocr.py renders them), so every page goes to the vision engine.

Phases: first the engine alone (GPU worker 0 parses the one-GPU phase's pages in one call, in its own process,
before it takes any task), then the one-GPU phase, then each larger GPU count with --docs documents per GPU
(a queue's throughput is measured with work for every GPU; the same pages in every phase). pages/s = pages /
(first dispatch -> last page parsed); the time until every document's chunks are embedded is reported beside
it. Every GPU worker loads its engine at the start, in parallel (a worker beyond the first listens on a
standby queue until its phase), so the run fits one device call.

Engines (docground_testing/scaleout_worker.py): `vllm` = docground's DeepSeek-OCR-2 engine on in-process vLLM
with dummy weights and fixed-length output (--tokens per page); `standin` = the same engine and engine loop
around a continuous-batching stand-in on the CPU, for a dry run of the plumbing without a GPU.

    # CPU dry run (here): proves queues, workers, warm-up, engine alone, balance and the table
    .venv/bin/python -m bench.gpu_scaleout --engine standin --gpus 2 --docs 2 --pages 32 --batch 16
    # GPU machine: bench/gpu_device/run_scaleout.sh runs
    python3 -m bench.gpu_scaleout --engine vllm --model /tmp/dsocr2 --out $OUT   # -m: nothing installed there
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STANDBY_QUEUE = "gpu-standby"
_T0 = time.perf_counter()


def progress(message: str) -> None:
    """One line per step, at once: a device call cut off by its time limit still says how far it got."""
    print(f"[{time.perf_counter() - _T0:6.1f} s] {message}", flush=True)


def make_tiny_embedder(folder: Path) -> Path:
    """A randomly initialised sentence-transformers model (no hub on the GPU machine): chunks still get
    embedded, fast; retrieval quality is not what this benchmark measures."""
    target = folder / "st"
    if (target / "modules.json").exists():
        return target
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    raw = folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(33, 127)]
    vocab += ["##" + chr(c) for c in range(33, 127)]
    (raw / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(raw / "vocab.txt"), do_lower_case=True)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertModel(config).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    word = models.Transformer(str(raw), max_seq_length=256)
    SentenceTransformer(modules=[word, models.Pooling(word.get_word_embedding_dimension())]).save(str(target))
    return target


_RENDERED: dict[int, object] = {}


def scanned_documents(count: int, pages: int, tag: str) -> list[bytes]:
    """`count` multi-page TIFFs of `pages` rendered pages each; documents of every tag hold the same
    pages (only a description tag differs, so each is a new document)."""
    from docground_testing.report_pages import report_page

    docs = []
    for d in range(count):
        numbers = range(d * pages, (d + 1) * pages)
        for n in numbers:
            if n not in _RENDERED:  # rendered once: every phase gets the same pages
                _RENDERED[n] = report_page(n)
        images = [_RENDERED[n] for n in numbers]
        buf = io.BytesIO()
        images[0].save(buf, format="TIFF", save_all=True, append_images=images[1:], compression="packbits",
                       dpi=(144, 144), description=f"scale-out {tag} document {d}")
        docs.append(buf.getvalue())
    return docs


class Bench:
    def __init__(self, args, home: Path):
        from docground_testing.cluster import RedisServer, cluster_env

        self.args, self.home = args, home
        self.workers: list = []
        self.gpu_workers: list = []
        self.service = None
        self.redis = RedisServer(home / "redis").start()
        try:
            self._setup(cluster_env)
        except BaseException:
            self.redis.stop()
            raise

    def _setup(self, cluster_env) -> None:
        args, home = self.args, self.home
        self.fields = {
            "home": home, "broker_url": self.redis.url, "page_batch_size": args.batch, "ocr_backend": "none",
            "embedding_model": str(make_tiny_embedder(home / "embedder")), "embedding_threads": 1,
            "ocr_model": args.model or "unused", "ocr_max_num_seqs": args.max_num_seqs,
            "ocr_preprocess_workers": args.preprocess_workers, "ocr_gpu_memory_utilization": args.gpu_mem,
            "task_time_limit_s": 1200, "visibility_timeout_s": 1500, "retry_backoff_max_s": 30,
            "gpu_worker_tasks": args.tasks_at_once, "ocr_pages_ahead": args.pages_ahead,
        }
        scaleout = {"DOCGROUND_SCALEOUT_ENGINE": args.engine, "DOCGROUND_SCALEOUT_TOKENS": str(args.tokens),
                    "DOCGROUND_SCALEOUT_ENGINE_JSON": args.engine_json}
        os.environ.update(scaleout)
        self.env = cluster_env(self.fields, **scaleout)
        from docground.settings import Settings
        from docground.workers.celery_app import make_celery
        from docground_testing.scaleout_worker import scaleout_service

        self.service = scaleout_service(Settings(**self.fields))
        self.celery = make_celery(self.service.settings)

    def start_cpu_worker(self) -> None:
        from docground_testing.cluster import WorkerProcess

        # solo: its service (and the embedder) is built before the first task, so phase 1 pays no cold start
        w = WorkerProcess(self.env, self.home, queues="cpu", pool="solo", app="docground_testing.scaleout_worker",
                          cwd=self.home, hostname="cpu@%h").start()
        self.workers.append(w)
        w.wait_ready(180)

    def start_gpu_workers(self, count: int) -> list[float]:
        """GPU worker i on GPU i, all loading their engines at once; worker 0 consumes the `gpu` queue, the
        others a standby queue until activate(). Returns each worker's seconds until loaded and warm."""
        from docground.settings import Settings
        from docground.workers.celery_app import gpu_worker_pool
        from docground_testing.cluster import WorkerProcess, wait_until

        pool, threads = gpu_worker_pool(Settings(**self.fields))  # as `docground worker --queues gpu` runs it
        t = time.perf_counter()
        for i in range(count):
            env = {**self.env, "CUDA_VISIBLE_DEVICES": str(i), "OMP_NUM_THREADS": str(self.args.omp_threads)}
            if i > 0:  # a compile cache per worker (two engines compiling at once must not share one), seeded
                env["VLLM_CACHE_ROOT"] = seeded_compile_cache(self.home / f"vllm-cache-{i}")  # with what exists
            w = WorkerProcess(env, self.home, queues="gpu" if i == 0 else STANDBY_QUEUE, pool=pool,
                              concurrency=threads, app="docground_testing.scaleout_worker", cwd=self.home,
                              hostname=f"gpu{i}@%h").start()
            self.workers.append(w)
            self.gpu_workers.append(w)
        starts: dict[int, float] = {}

        def all_warm() -> bool:
            for i, w in enumerate(self.gpu_workers):
                if i not in starts and self._warm(i, w):
                    starts[i] = time.perf_counter() - t
                    progress(f"GPU worker {i} loaded and warm in {starts[i]:.0f} s")
            return len(starts) == count

        wait_until(all_warm, self.args.start_timeout, f"{count} GPU worker(s) to load and warm their engines", 0.5)
        return [starts[i] for i in range(count)]

    def _warm(self, i: int, w) -> bool:
        failed = list((self.home / "warm").glob(f"gpu{i}@*.error"))
        if w.proc.poll() is not None or failed:
            detail = failed[0].read_text() if failed else ""
            raise RuntimeError(f"GPU worker {i} could not start its engine: {detail}\n{w.log()[-6000:]}")
        return (self.home / "warm").is_dir() and any(
            not m.name.endswith(".error") for m in (self.home / "warm").glob(f"gpu{i}@*"))

    def engine_alone(self, docs: list[bytes]) -> dict:
        """GPU worker 0 parses these documents' pages with its engine in one call (no queue): the reference."""
        from docground_testing.cluster import wait_until

        folder = self.home / "engine-alone"
        folder.mkdir(exist_ok=True)
        for i, data in enumerate(docs):
            (folder / f"doc{i:03d}.tiff").write_bytes(data)
        (folder / "go").touch()
        progress(f"engine alone: GPU worker 0 parses {len(docs)} documents in one call")
        wait_until(lambda: (folder / "result.json").exists() or self.gpu_workers[0].proc.poll() is not None,
                   self.args.phase_timeout, "the engine-alone run", 0.2)
        if not (folder / "result.json").exists():
            raise RuntimeError(f"GPU worker 0 died in the engine-alone run:\n{self.gpu_workers[0].log()[-6000:]}")
        result = json.loads((folder / "result.json").read_text())
        progress(f"engine alone: {result['pages']} pages in {result['wall_s']:.1f} s ({result['pages_per_s']:.2f} "
                 "pages/s)")
        return result

    def skip_engine_alone(self) -> None:
        (self.home / "engine-alone").mkdir(exist_ok=True)
        (self.home / "engine-alone" / "skip").touch()

    def activate(self, count: int) -> None:
        """GPU workers 1..count-1 start consuming the `gpu` queue (Celery's remote-control add_consumer)."""
        names = [f"gpu{i}@{socket.gethostname()}" for i in range(1, count)]
        if names:
            replies = self.celery.control.add_consumer("gpu", destination=names, reply=True, timeout=10)
            if len(replies) != len(names):
                raise RuntimeError(f"add_consumer: asked {names}, answered {replies}")
            progress(f"{', '.join(names)} now consume the gpu queue")

    def run_phase(self, tag: str, docs: list[bytes], gpu_workers: int) -> dict:
        from docground.workers.tasks import DOCUMENT_TASK
        from docground_testing.cluster import wait_until

        registry = self.service.registry
        offsets = [len(w.log()) for w in self.gpu_workers]
        jobs = []
        for i, data in enumerate(docs):
            registration = self.service.register("scaleout", f"{tag}-{i}.tiff", data)
            jobs.append(registration.job.id)
        doc_ids = [registry.job(j).document_id for j in jobs]
        total = sum(registry.document(d).pages_total for d in doc_ids)
        t0 = time.perf_counter()
        for job_id in jobs:
            self.celery.send_task(DOCUMENT_TASK, args=[job_id], queue="cpu")

        def parsed() -> bool:
            return sum(registry.document(d).pages_done for d in doc_ids) >= total

        progress(f"{tag}: {len(docs)} documents, {total} pages dispatched")
        wait_until(parsed, self.args.phase_timeout, f"{tag}: every page parsed", 0.1)
        parse_s = time.perf_counter() - t0
        progress(f"{tag}: every page parsed in {parse_s:.1f} s ({total / parse_s:.2f} pages/s)")
        wait_until(lambda: all(registry.job(j).stage in ("indexable", "done", "failed") for j in jobs),
                   self.args.phase_timeout, f"{tag}: every document embedded", 0.2)
        embedded_s = time.perf_counter() - t0
        tasks = [w.log()[o:].count("succeeded") for w, o in zip(self.gpu_workers, offsets, strict=True)]
        failed = [registry.document(d).error for d in doc_ids if registry.document(d).status == "failed"]
        return {"phase": tag, "gpu_workers": gpu_workers, "documents": len(docs), "pages": total,
                "parse_s": parse_s, "pages_per_s": total / parse_s, "embedded_s": embedded_s,
                "tasks_per_worker": tasks, "failed": failed}

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        self.service.close()
        self.redis.stop()


def seeded_compile_cache(folder: Path) -> str:
    """A private vLLM cache root holding a copy of the default one (what an earlier run on this machine
    compiled), so that an engine beyond the first does not compile from nothing."""
    default = Path(os.environ.get("VLLM_CACHE_ROOT") or Path.home() / ".cache" / "vllm")
    if default.is_dir() and not folder.exists():
        shutil.copytree(default, folder, symlinks=True, ignore_dangling_symlinks=True)
    return str(folder)


def visible_gpus() -> int:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def gpu_counts(gpus: int) -> list[int]:
    """The phases' GPU counts: 1, 2, 4, 8 up to `gpus`, and `gpus` itself."""
    return sorted({n for n in (1, 2, 4, 8) if n <= gpus} | {gpus})


def gpu_names() -> list[str]:
    try:
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:
        return []


def print_table(results: list[dict], starts: list[float], alone: dict | None, args) -> None:
    base = results[0]["pages_per_s"] if results else 0.0
    print(f"\nThe gpu queue, engine {args.engine} ({args.tokens} tokens/page, {args.batch} pages/task, "
          f"{args.tasks_at_once} tasks at once per GPU worker, max_num_seqs {args.max_num_seqs}); GPUs: "
          f"{', '.join(gpu_names()) or 'none'}")
    print("| what | documents x pages | pages parsed in | pages/s | against | tasks per worker | all embedded in |")
    print("|---|---|---|---|---|---|---|")
    if alone:
        print(f"| engine alone (GPU worker 0, one call, no queue) | same pages as 1 GPU | {alone['wall_s']:.1f} s "
              f"| {alone['pages_per_s']:.2f} | – | – | – |")
    for r in results:
        if r["gpu_workers"] == 1 and alone:
            against = f"{r['pages_per_s'] / alone['pages_per_s']:.1%} of the engine alone"
        else:
            against = f"{r['pages_per_s'] / base:.2f}x one GPU"
        print(f"| queue, {r['gpu_workers']} GPU worker(s) | {r['documents']} x {r['pages'] // r['documents']} "
              f"| {r['parse_s']:.1f} s | {r['pages_per_s']:.2f} | {against} | {r['tasks_per_worker']} "
              f"| {r['embedded_s']:.1f} s |")
    print("engine start + warm-up per GPU worker: " + ", ".join(f"{s:.0f} s" for s in starts))
    for r in results:
        if r["failed"]:
            print(f"{r['phase']}: {len(r['failed'])} document(s) failed: {r['failed'][0]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=("vllm", "standin"), default="standin")
    ap.add_argument("--model", help="model directory (vllm: ../shared/tools/vllm-device/make_model_dir.py)")
    ap.add_argument("--gpus", type=int, default=0, help="GPU workers in the last phase, one per GPU (0: every GPU "
                    "visible; at least 1, so the stand-in runs without one)")
    ap.add_argument("--docs", type=int, default=8, help="documents per GPU in each phase")
    ap.add_argument("--pages", type=int, default=64, help="pages per document")
    ap.add_argument("--batch", type=int, default=64, help="pages per task (DOCGROUND_PAGE_BATCH_SIZE)")
    ap.add_argument("--tasks-at-once", type=int, default=0, help="page batches a GPU worker runs at once "
                    "(DOCGROUND_GPU_WORKER_TASKS; 0: its default)")
    ap.add_argument("--tokens", type=int, default=1000, help="output tokens per page")
    ap.add_argument("--max-num-seqs", type=int, default=256)
    ap.add_argument("--pages-ahead", type=int, default=-1, help="DOCGROUND_OCR_PAGES_AHEAD; -1: half of max_num_seqs")
    ap.add_argument("--engine-json", default="", help="more vLLM engine arguments, as JSON")
    ap.add_argument("--preprocess-workers", type=int, default=12, help="render processes per GPU worker")
    ap.add_argument("--gpu-mem", type=float, default=0.9)
    ap.add_argument("--omp-threads", type=int, default=4)
    ap.add_argument("--no-engine-alone", action="store_true", help="skip the engine-alone reference")
    ap.add_argument("--start-timeout", type=float, default=400)
    ap.add_argument("--phase-timeout", type=float, default=600)
    ap.add_argument("--out", help="folder for scaleout.json and the worker logs")
    args = ap.parse_args()
    if args.engine == "vllm" and not args.model:
        ap.error("--engine vllm needs --model")
    args.gpus = args.gpus or max(1, visible_gpus())
    from docground_testing.module_standins import make_importable

    # the GPU machine has no installed docground, pymupdf or filetype: link this checkout and write stand-ins
    # for the missing packages only, in a temporary folder removed at exit (here: an empty folder, no link)
    make_importable()
    if "docground.ingest" not in sys.modules:  # its probe imported the checkout's bare docground/: forget it,
        for name in [m for m in sys.modules if m.split(".")[0] == "docground"]:  # so the link is imported
            del sys.modules[name]
    from docground.settings import Settings

    args.tasks_at_once = args.tasks_at_once or Settings.model_fields["gpu_worker_tasks"].default
    with tempfile.TemporaryDirectory(prefix="docground-scaleout-") as tmp:
        bench = Bench(args, Path(tmp))
        results, starts, alone = [], [], None
        try:
            bench.start_cpu_worker()
            progress("redis-server and the CPU worker are up; GPU workers loading")
            starts = bench.start_gpu_workers(args.gpus)
            for n in gpu_counts(args.gpus):
                docs = scanned_documents(args.docs * n, args.pages, f"{n}gpu")
                progress(f"{n}gpu: {len(docs)} documents rendered")
                if n == 1:
                    if args.no_engine_alone:
                        bench.skip_engine_alone()
                    else:
                        alone = bench.engine_alone(docs)
                bench.activate(n)
                results.append(bench.run_phase(f"{n}gpu", docs, n))
        finally:
            if not bench.gpu_workers or alone is None:
                bench.skip_engine_alone()
            logs = {w.log_path.name: w.log() for w in bench.workers}
            bench.close()
            if args.out:
                out = Path(args.out)
                out.mkdir(parents=True, exist_ok=True)
                (out / "scaleout.json").write_text(json.dumps({"args": vars(args), "engine_alone": alone,
                                                               "results": results, "starts_s": starts,
                                                               "gpus": gpu_names()}, indent=2))
                (out / "scaleout_workers.log").write_text("\n".join(f"===== {k}\n{v[-200_000:]}"
                                                                  for k, v in logs.items()))
    print_table(results, starts, alone, args)


if __name__ == "__main__":
    main()
