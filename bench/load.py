"""Load, measured (#15): N concurrent uploads of mixed documents through the HTTP API while M clients query
without pause, on the production shape: a real `docground serve` process and `docground worker` processes
(CPU queue) on Redis. One table row per phase: ingestion pages/s (pages of all uploads / wall time from the
first upload until every document is ready), query p50/p95/p99 under that load, errors (any non-2xx answer,
refused request or failed document). With --kill, a second phase uploads N more documents and SIGKILLs one
worker once a quarter of their pages are done; a fresh worker is started at once, as an operator would.

    .venv/bin/python bench/load.py --kill                       # 50 uploads, 10 queriers, 2 workers
    .venv/bin/python bench/load.py --uploads 8 --queriers 3 --kill

Documents: born-digital reports of 1 to 12 pages, two-column papers, ruled tables, Korean/Japanese/Chinese
prose (docground_testing/pdfgen.py) and small corpus PDFs (Japanese, Arabic, Hebrew, tables, slides) where
the corpus is present; each made distinct by its metadata, so no upload deduplicates another. Redis: the
machine's (127.0.0.1:6379, database 11, emptied before and after), or `--broker private` for a redis-server
of its own. On a 2-core machine the workers, the API and the query clients share the cores: latency under
load mostly measures that contention. JSON into bench/results/load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pymupdf
import redis

from docground.api.client import DocgroundAPIError, DocgroundClient
from docground_testing import pdfgen
from docground_testing.cluster import ROOT, RedisServer, WorkerProcess, cluster_env, long_pdf, wait_until
from docground_testing.corpus import CORPUS
from docground_testing.load import QUESTIONS, percentile
from docground_testing.serve_process import ServeProcess

KB = "load"
# Small corpus PDFs with a text layer, chosen for their languages and layouts.
CORPUS_FILES = ["docs/cjk/kotaemon_jp_patent_table.pdf", "docs/tables/camelot_tabula_arabic.pdf",
                "docs/slides/docling_odf_presentation_01.pdf", "groundtruth/docling/pdf/right_to_left_01.pdf",
                "groundtruth/icdar2013_tables/us-002.pdf", "docs/misc/pdfplumber_scotus-transcript-p1.pdf",
                "docs/cjk/pdfminer_jo_vertical_ja.pdf", "groundtruth/icdar2013_tables/eu-001.pdf"]
MORE_QUESTIONS = ["Quarterly revenue of the North region", "reading order of the two columns",
                  "文档理解与检索", "特許の請求項", "table of expenditures"]
LANGUAGES = ("ko", "ja", "zh")
FIELDS = {"ocr_backend": "cpu", "embedding_threads": 1}


@dataclass
class Phase:
    name: str
    documents: int = 0
    pages: int = 0
    ingest_s: float = 0.0
    query_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    kill_to_ready_s: float | None = None

    def row(self) -> dict:
        q, kill = self.query_ms, self.kill_to_ready_s
        return {"phase": self.name, "documents": self.documents, "pages": self.pages,
                "ingest_s": round(self.ingest_s, 1), "pages_per_s": round(self.pages / self.ingest_s, 2)
                if self.ingest_s else 0.0, "queries": len(q), "p50_ms": round(percentile(q, 50)),
                "p95_ms": round(percentile(q, 95)), "p99_ms": round(percentile(q, 99)),
                "errors": len(self.errors), "kill_to_all_ready_s": None if kill is None else round(kill, 1)}


def mixed_documents(count: int, start: int) -> list[tuple[str, bytes]]:
    """`count` distinct PDFs (name, bytes), cycling through generated kinds and the corpus's small files."""
    corpus = [CORPUS / f for f in CORPUS_FILES if (CORPUS / f).exists()]
    makers = [lambda i: ("report", long_pdf(1 + i % 12, seed=i)),
              lambda i: ("twocol", pdfgen.two_column_pdf(pages=1 + i % 3, seed=i)[0]),
              lambda i: (f"prose-{LANGUAGES[i % 3]}", pdfgen.prose_pdf(LANGUAGES[i % 3])),
              lambda i: ("table", pdfgen.table_pdf()[0])]
    if corpus:
        makers.append(lambda i: (corpus[i % len(corpus)].stem, corpus[i % len(corpus)].read_bytes()))
    out = []
    for i in range(start, start + count):
        kind, data = makers[i % len(makers)](i // len(makers))
        doc = pymupdf.open(stream=data, filetype="pdf")
        doc.set_metadata({**(doc.metadata or {}), "title": f"docground load {i}"})  # distinct bytes, distinct id
        out.append((f"{i:03d}-{kind}.pdf", doc.tobytes()))
    return out


class Stack:
    """Redis, `docground serve` and `workers` x `docground worker --queues cpu`; stop() stops what started."""

    def __init__(self, folder: Path, broker: str, workers: int, concurrency: int):
        self.folder, self.concurrency = folder, concurrency
        self.redis: RedisServer | None = None
        self.workers: list[WorkerProcess] = []
        self.serve: ServeProcess | None = None
        try:
            if broker == "private":
                self.redis = RedisServer(folder / "redis").start()
                broker = self.redis.url
            self.broker = broker
            redis.Redis.from_url(broker).flushdb()  # this benchmark's database only: no earlier run's tasks
            fields = {**FIELDS, "home": folder / "home", "broker_url": broker}
            self.env = cluster_env(fields)
            self.workers = [self.add_worker() for _ in range(workers)]
            self.serve = ServeProcess({**fields, "rate_limit_per_minute": 0}, folder).start()
            for w in self.workers:
                w.wait_ready(180)
        except BaseException:
            self.stop()
            raise

    def add_worker(self) -> WorkerProcess:
        w = WorkerProcess(self.env, self.folder, queues="cpu", pool="prefork", cli=True,
                          concurrency=self.concurrency).start()
        self.workers.append(w)
        return w

    def stop(self) -> None:
        if self.serve is not None:
            self.serve.stop()
        for w in self.workers:
            w.stop()
        if self.redis is not None:
            self.redis.stop()
        else:
            try:
                redis.Redis.from_url(self.broker).flushdb()
            except (AttributeError, redis.RedisError):
                pass

    def logs(self) -> str:
        parts = [(w.name, w.log()) for w in self.workers] + ([("serve", self.serve.log())] if self.serve else [])
        return "\n".join(f"--- {name}\n{text[-2500:]}" for name, text in parts)


def query_loop(url: str, k: int, stop: threading.Event, phase: Phase, lock: threading.Lock) -> None:
    rng = random.Random(k)
    client = DocgroundClient(url, timeout=120)
    while not stop.is_set():
        t = time.perf_counter()
        try:
            client.query(KB, rng.choice(QUESTIONS + MORE_QUESTIONS), top_k=5, mode="extractive")
            error = None
        except (DocgroundAPIError, httpx.HTTPError) as exc:
            error = f"query: {type(exc).__name__}: {exc}"
        with lock:
            phase.query_ms.append((time.perf_counter() - t) * 1000)
            if error:
                phase.errors.append(error)
    client.http.close()


def tasks_in_hand(worker: WorkerProcess) -> list[str]:
    """The tasks a live worker has received and not finished, from its log (Celery's info lines)."""
    if worker.proc.poll() is not None:
        return []
    log = worker.log()
    received = {task_id: name for name, task_id in re.findall(r"Task ([\w.]+)\[([0-9a-f-]+)\] received", log)}
    finished = set(re.findall(r"Task [\w.]+\[([0-9a-f-]+)\] (?:succeeded|raised|retry)", log))
    return [name.rsplit(".", 1)[-1] for task_id, name in received.items() if task_id not in finished]


def upload(client: DocgroundClient, name: str, data: bytes, phase: Phase, lock: threading.Lock) -> str | None:
    try:
        return client.upload(KB, data, name).document_id
    except (DocgroundAPIError, httpx.HTTPError) as exc:
        with lock:
            phase.errors.append(f"upload {name}: {type(exc).__name__}: {exc}")
        return None


def run_phase(stack: Stack, phase: Phase, documents: list[tuple[str, bytes]], queriers: int, timeout_s: float,
              kill_at: float | None = None) -> Phase:
    """Upload `documents` at once while `queriers` clients query; wait until each is ready or failed. With
    `kill_at`, once that share of the pages is done, SIGKILL a worker with a task in hand (page batch or
    indexing, read off its log) and start a fresh one."""
    url, lock, stop = stack.serve.url, threading.Lock(), threading.Event()
    threads = [threading.Thread(target=query_loop, args=(url, k, stop, phase, lock), daemon=True)
               for k in range(queriers)]
    for t in threads:
        t.start()
    client = DocgroundClient(url, timeout=300)
    started = time.perf_counter()
    killed_at = None
    try:
        with ThreadPoolExecutor(len(documents)) as pool:
            ids = [i for i in pool.map(lambda d: upload(client, *d, phase, lock), documents) if i]
        pending = set(ids)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            status = {d.document_id: d for d in client.documents(KB) if d.document_id in set(ids)}
            for doc_id in list(pending):
                d = status.get(doc_id)
                if d and d.status in ("ready", "failed"):
                    pending.discard(doc_id)
                    if d.status == "failed":
                        phase.errors.append(f"document {d.filename} failed: {d.error_code} {d.error}")
            total = sum(d.pages_total for d in status.values())
            due = kill_at is not None and killed_at is None and total and \
                sum(d.pages_done for d in status.values()) >= kill_at * total
            victim = next((w for w in stack.workers if tasks_in_hand(w)), None) if due else None
            if victim:
                in_hand = tasks_in_hand(victim)
                victim.kill()
                killed_at = time.perf_counter()
                print(f"  SIGKILL {victim.name} at {killed_at - started:.1f} s with {', '.join(in_hand)} in hand; "
                      "a fresh worker starts", flush=True)
                stack.add_worker()
            time.sleep(0.5)
        phase.ingest_s = time.perf_counter() - started
        final = {d.document_id: d for d in client.documents(KB) if d.document_id in set(ids)}
    finally:
        stop.set()
        for t in threads:
            t.join(150)
    phase.errors += [f"document {final[d].filename} not finished after {timeout_s:.0f} s" for d in pending]
    phase.documents, phase.pages = len(ids), sum(d.pages_total for d in final.values())
    if killed_at is not None:
        phase.kill_to_ready_s = time.perf_counter() - killed_at if pending else started + phase.ingest_s - killed_at
    elif kill_at is not None:
        phase.errors.append("no worker was killed: none was seen with a task in hand before every page was done")
    client.http.close()
    return phase


def seed_kb(stack: Stack) -> None:
    """One document in the knowledge base before the load, so that the first queries have chunks to search."""
    client = DocgroundClient(stack.serve.url, timeout=120)
    doc_id = client.upload(KB, long_pdf(2, seed=999_999), "seed.pdf").document_id
    wait_until(lambda: client.document(doc_id).status in ("ready", "failed"), 300, "the seed document", 0.5)
    if client.document(doc_id).status != "ready":
        raise RuntimeError(f"the seed document failed: {client.document(doc_id).error}\n{stack.logs()}")
    client.http.close()


def table(rows: list[dict]) -> str:
    lines = ["| phase | docs | pages | ingest s | pages/s | queries | query p50 ms | p95 ms | p99 ms | errors "
             "| SIGKILL → all ready s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        kill = "—" if r["kill_to_all_ready_s"] is None else f"{r['kill_to_all_ready_s']:.1f}"
        lines.append(f"| {r['phase']} | {r['documents']} | {r['pages']} | {r['ingest_s']:.1f} | {r['pages_per_s']:.2f} "
                     f"| {r['queries']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['errors']} | {kill} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uploads", type=int, default=50, help="concurrent uploads per phase")
    ap.add_argument("--queriers", type=int, default=10, help="clients querying without pause during each phase")
    ap.add_argument("--workers", type=int, default=2, help="`docground worker --queues cpu` processes")
    ap.add_argument("--concurrency", type=int, default=1, help="prefork processes per worker")
    ap.add_argument("--kill", action="store_true", help="a second phase with one worker SIGKILLed mid-run")
    ap.add_argument("--kill-at", type=float, default=0.25, help="share of the phase's pages done before the kill")
    ap.add_argument("--broker", default="redis://127.0.0.1:6379/11",
                    help="Redis URL (its database is emptied before and after), or `private`")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds a phase may take")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "load.json")
    args = ap.parse_args()
    docs = mixed_documents(args.uploads * (2 if args.kill else 1), 0)
    phases = [("steady", docs[:args.uploads], None)]
    if args.kill:
        phases.append(("1 worker SIGKILLed, fresh one started", docs[args.uploads:], args.kill_at))
    print(f"{args.uploads} uploads x {len(phases)} phase(s), {args.queriers} queriers, {args.workers} CPU workers "
          f"x {args.concurrency} process(es); {os.cpu_count()} CPUs; broker {args.broker}", flush=True)
    results: list[Phase] = []
    with tempfile.TemporaryDirectory(prefix="docground-load-") as tmp:
        stack = Stack(Path(tmp), args.broker, args.workers, args.concurrency)
        try:
            seed_kb(stack)
            for name, batch, kill_at in phases:
                print(f"phase: {name}", flush=True)
                results.append(run_phase(stack, Phase(name), batch, args.queriers, args.timeout, kill_at))
            if any(p.errors for p in results):
                print(stack.logs())
        finally:
            stack.stop()
    rows = [p.row() for p in results]
    print()
    print(table(rows))
    for p in results:
        for e in p.errors[:10]:
            print(f"error ({p.name}): {e}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "cpus": os.cpu_count(),
                                     "phases": rows, "errors": {p.name: p.errors for p in results},
                                     "query_ms": {p.name: p.query_ms for p in results}}, indent=2))
    raise SystemExit(1 if any(p.errors for p in results) else 0)


if __name__ == "__main__":
    main()
