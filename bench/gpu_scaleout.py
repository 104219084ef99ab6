"""GPU scale-out of the `gpu` queue: pages/s of one GPU worker on one GPU against GPU workers on two GPUs,
each with its own engine, all consuming one Redis queue, on the same pages. Target: >= 1.9x.

The production path end to end, on one machine: a private redis-server, a CPU worker (`cpu` queue: the
fan-out of each document into page batches, then chunking and embedding), GPU workers (`gpu` queue, solo
pool, one per GPU by CUDA_VISIBLE_DEVICES, engine loaded and warmed before the first task), and this process
as the client (registers documents, dispatches them, reads progress from the registry). Documents are
scanned-page TIFFs (distinct synthetic A4 pages at 144 DPI, as bench/gpu_ocr.py renders them), so every
page goes to the vision engine. Phase 1 runs with GPU worker 0 alone; phase 2 adds GPU worker 1 and runs
new documents made of the same pages. pages/s = pages / (first dispatch -> last page parsed); the time
until every document's chunks are embedded is reported beside it. Every GPU worker loads its engine at the
start, in parallel (a worker beyond the first listens on a standby queue until its phase: the one-GPU phase
is measured with the others idle), so the run fits one device call.

Engines (bench/scaleout_worker.py): `vllm` = docground's DeepSeek-OCR-2 engine on in-process vLLM with dummy
weights and fixed-length output (--tokens per page); `standin` = a sleeping stand-in, for a dry run of the
plumbing without a GPU.

    # CPU dry run (here): proves queues, workers, warm-up, balance and the table
    .venv/bin/python bench/gpu_scaleout.py --engine standin --pages 32 --batch 16
    # GPU machine (nvidia-h200-x2): bench/gpu_device/run_scaleout.sh runs
    python3 bench/gpu_scaleout.py --engine vllm --model /tmp/dsocr2 --out $OUT
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # last: where docground is linked or installed elsewhere, that copy comes first
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
    from bench.gpu_ocr import render_page

    docs = []
    for d in range(count):
        numbers = range(d * pages, (d + 1) * pages)
        for n in numbers:
            if n not in _RENDERED:  # rendered once: every phase gets the same pages
                _RENDERED[n] = render_page(n)
        images = [_RENDERED[n] for n in numbers]
        buf = io.BytesIO()
        images[0].save(buf, format="TIFF", save_all=True, append_images=images[1:], compression="packbits",
                       dpi=(144, 144), description=f"scale-out {tag} document {d}")
        docs.append(buf.getvalue())
    return docs


class Bench:
    def __init__(self, args, home: Path):
        from tests.cluster import RedisServer, cluster_env

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
        }
        os.environ["DOCGROUND_SCALEOUT_ENGINE"] = args.engine
        os.environ["DOCGROUND_SCALEOUT_TOKENS"] = str(args.tokens)
        self.env = cluster_env(self.fields, DOCGROUND_SCALEOUT_ENGINE=args.engine,
                               DOCGROUND_SCALEOUT_TOKENS=str(args.tokens))
        from bench.scaleout_worker import scaleout_service
        from docground.settings import Settings
        from docground.workers.celery_app import make_celery

        self.service = scaleout_service(Settings(**self.fields))
        self.celery = make_celery(self.service.settings)

    def start_cpu_worker(self) -> None:
        from tests.cluster import WorkerProcess

        # solo: its service (and the embedder) is built before the first task, so phase 1 pays no cold start
        w = WorkerProcess(self.env, self.home, queues="cpu", pool="solo", app="bench.scaleout_worker",
                          cwd=self.home, hostname="cpu@%h").start()
        self.workers.append(w)
        w.wait_ready(180)

    def start_gpu_workers(self, count: int) -> list[float]:
        """GPU worker i on GPU i, all loading their engines at once; worker 0 consumes the `gpu` queue, the
        others a standby queue until activate(). Returns each worker's seconds until loaded and warm."""
        from tests.cluster import WorkerProcess, wait_until

        t = time.perf_counter()
        for i in range(count):
            # a compile cache per worker: two engines compiling at once must not share one
            env = {**self.env, "CUDA_VISIBLE_DEVICES": str(i), "OMP_NUM_THREADS": str(self.args.omp_threads),
                   "VLLM_CACHE_ROOT": str(self.home / f"vllm-cache-{i}")}
            w = WorkerProcess(env, self.home, queues="gpu" if i == 0 else STANDBY_QUEUE, pool="solo",
                              app="bench.scaleout_worker", cwd=self.home, hostname=f"gpu{i}@%h").start()
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
        from tests.cluster import wait_until

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


def gpu_names() -> list[str]:
    try:
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:
        return []


def print_table(results: list[dict], starts: list[float], args) -> None:
    base = results[0]["pages_per_s"]
    print(f"\nGPU scale-out, engine {args.engine} ({args.tokens} tokens/page, {args.batch} pages/task, "
          f"max_num_seqs {args.max_num_seqs}); GPUs: {', '.join(gpu_names()) or 'none'}")
    print("| GPU workers (GPUs) | documents x pages | pages parsed in | pages/s | speed-up | tasks per worker "
          "| all embedded in |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['gpu_workers']} | {r['documents']} x {r['pages'] // r['documents']} | {r['parse_s']:.1f} s "
              f"| {r['pages_per_s']:.2f} | {r['pages_per_s'] / base:.2f}x | {r['tasks_per_worker']} "
              f"| {r['embedded_s']:.1f} s |")
    print("engine start + warm-up per GPU worker: " + ", ".join(f"{s:.0f} s" for s in starts))
    for r in results:
        if r["failed"]:
            print(f"{r['phase']}: {len(r['failed'])} document(s) failed: {r['failed'][0]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=("vllm", "standin"), default="standin")
    ap.add_argument("--model", help="model directory (vllm: ../shared/tools/vllm-device/make_model_dir.py)")
    ap.add_argument("--gpus", type=int, default=2, help="GPU workers in the last phase (one per GPU)")
    ap.add_argument("--docs", type=int, default=4, help="documents per phase")
    ap.add_argument("--pages", type=int, default=64, help="pages per document")
    ap.add_argument("--batch", type=int, default=64, help="pages per task (DOCGROUND_PAGE_BATCH_SIZE)")
    ap.add_argument("--tokens", type=int, default=1000, help="output tokens per page (vllm)")
    ap.add_argument("--max-num-seqs", type=int, default=256)
    ap.add_argument("--preprocess-workers", type=int, default=12, help="render processes per GPU worker")
    ap.add_argument("--gpu-mem", type=float, default=0.9)
    ap.add_argument("--omp-threads", type=int, default=4)
    ap.add_argument("--start-timeout", type=float, default=400)
    ap.add_argument("--phase-timeout", type=float, default=600)
    ap.add_argument("--out", help="folder for scaleout.json and the worker logs")
    args = ap.parse_args()
    if args.engine == "vllm" and not args.model:
        ap.error("--engine vllm needs --model")
    from bench.gpu_ocr import make_importable

    # the GPU machine has no installed docground, pymupdf or filetype: link this checkout and write stand-ins
    # for the missing packages only, in a temporary folder removed at exit (here: an empty folder, no link)
    make_importable()
    if "docground.ingest" not in sys.modules:  # its probe imported the checkout's bare docground/: forget it,
        for name in [m for m in sys.modules if m.split(".")[0] == "docground"]:  # so the link is imported
            del sys.modules[name]
    with tempfile.TemporaryDirectory(prefix="docground-scaleout-") as tmp:
        bench = Bench(args, Path(tmp))
        results, starts = [], []
        try:
            bench.start_cpu_worker()
            progress("redis-server and the CPU worker are up; GPU workers loading")
            starts = bench.start_gpu_workers(args.gpus)
            for n in sorted({1, args.gpus}):
                docs = scanned_documents(args.docs, args.pages, f"{n}gpu")
                progress(f"{n}gpu: {len(docs)} documents rendered")
                bench.activate(n)
                results.append(bench.run_phase(f"{n}gpu", docs, n))
        finally:
            logs = {w.log_path.name: w.log() for w in bench.workers}
            bench.close()
            if args.out:
                out = Path(args.out)
                out.mkdir(parents=True, exist_ok=True)
                (out / "scaleout.json").write_text(json.dumps({"args": vars(args), "results": results,
                                                               "starts_s": starts, "gpus": gpu_names()}, indent=2))
                (out / "scaleout_workers.log").write_text("\n".join(f"===== {k}\n{v[-200_000:]}"
                                                                  for k, v in logs.items()))
    print_table(results, starts, args)


if __name__ == "__main__":
    main()
