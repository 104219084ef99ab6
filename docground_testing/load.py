"""The load behind bench/load.py and tests/test_workers_load.py: a local stack (the HTTP API, and with
`celery` a private redis-server and `docground worker` processes), concurrent uploads through the API while
clients query without pause, and the table of what that cost."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from docground.settings import Settings

from .cluster import RedisServer, WorkerProcess, cluster_env, long_pdf
from .live_server import LiveServer

QUESTIONS = ["Which section covers the redis broker?", "visibility timeout of the worker queue",
             "durable registry document status", "retry after a crash restart", "embedding vector index"]


@dataclass
class LoadResult:
    uploads: int
    pages: int
    ingest_s: float
    upload_ms: list[float]
    idle_query_ms: list[float]
    load_query_ms: list[float]
    document_ids: list[str]
    errors: list[str] = field(default_factory=list)

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.ingest_s if self.ingest_s else 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run_load(base_url: str, kb: str, uploads: int, pages: int, query_threads: int = 2, idle_queries: int = 20,
             timeout_s: float = 600, seed: int = 11) -> LoadResult:
    """Seed the knowledge base, time queries while idle, then upload `uploads` distinct documents at once
    while `query_threads` clients query without pause until every document is ready or failed."""
    errors: list[str] = []
    client = httpx.Client(base_url=base_url, timeout=120)
    seed_id = _upload(client, kb, long_pdf(2, seed=seed), "seed.pdf", errors)[0]
    _wait_all(client, [seed_id], timeout_s, errors)
    idle = [_query(client, kb, QUESTIONS[i % len(QUESTIONS)], errors) for i in range(idle_queries)]

    documents = [long_pdf(pages, seed=seed + 1 + i) for i in range(uploads)]
    done = threading.Event()
    load_ms: list[float] = []
    lock = threading.Lock()

    def query_loop(k: int) -> None:
        rng = random.Random(k)
        with httpx.Client(base_url=base_url, timeout=120) as qc:
            while not done.is_set():
                ms = _query(qc, kb, rng.choice(QUESTIONS), errors)
                with lock:
                    load_ms.append(ms)

    queriers = [threading.Thread(target=query_loop, args=(k,), daemon=True) for k in range(query_threads)]
    for t in queriers:
        t.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(uploads) as pool, httpx.Client(base_url=base_url, timeout=120) as uc:
        answers = list(pool.map(lambda i: _upload(uc, kb, documents[i], f"load-{i}.pdf", errors), range(uploads)))
    ids = [doc_id for doc_id, _ in answers if doc_id]
    _wait_all(client, ids, timeout_s, errors)
    ingest_s = time.perf_counter() - started
    done.set()
    for t in queriers:
        t.join(120)
    client.close()
    return LoadResult(uploads, uploads * pages, ingest_s, [ms for _, ms in answers], [ms for ms in idle if ms],
                      load_ms, [seed_id, *ids], errors)


def _upload(client: httpx.Client, kb: str, data: bytes, name: str, errors: list[str]) -> tuple[str | None, float]:
    t = time.perf_counter()
    r = client.post(f"/v1/knowledge-bases/{kb}/documents", files={"file": (name, data, "application/pdf")})
    ms = (time.perf_counter() - t) * 1000
    if r.status_code != 202:
        errors.append(f"upload {name}: {r.status_code} {r.text[:200]}")
        return None, ms
    return r.json()["document_id"], ms


def _query(client: httpx.Client, kb: str, question: str, errors: list[str]) -> float:
    t = time.perf_counter()
    try:
        r = client.post(f"/v1/knowledge-bases/{kb}/query", json={"query": question, "top_k": 5})
    except httpx.HTTPError as exc:
        errors.append(f"query: {type(exc).__name__}: {exc}")
        return 0.0
    ms = (time.perf_counter() - t) * 1000
    if r.status_code != 200:
        errors.append(f"query: {r.status_code} {r.text[:200]}")
    return ms


def _wait_all(client: httpx.Client, ids: list[str], timeout_s: float, errors: list[str]) -> None:
    deadline = time.monotonic() + timeout_s
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        for doc_id in list(pending):
            body = client.get(f"/v1/documents/{doc_id}").json()
            if body["status"] in ("ready", "failed"):
                pending.discard(doc_id)
                if body["status"] == "failed":
                    errors.append(f"document {doc_id} failed: {body['error']}")
        time.sleep(0.2)
    errors.extend(f"document {d} not finished after {timeout_s:.0f} s" for d in pending)


def local_stack(mode: str, home: Path, workers: int, concurrency: int):
    """Start the API (and with `celery`, a private redis-server and `docground worker` processes);
    returns (api, stop). What started is stopped again if a later part fails to start."""
    fields = {"home": home, "embedding_threads": 1, "ocr_backend": "cpu", "rate_limit_per_minute": 0}
    redis, procs, api = None, [], None

    def stop() -> None:
        if api is not None:
            api.stop()
        for p in procs:
            p.stop()
        if redis is not None:
            redis.stop()

    try:
        if mode == "celery":
            redis = RedisServer(home.parent / "redis").start()
            fields["broker_url"] = redis.url
        settings = Settings(**{k: v for k, v in fields.items() if k in Settings.model_fields})
        env = cluster_env({k: v for k, v in fields.items() if k != "rate_limit_per_minute"})
        for _ in range(workers if redis else 0):
            procs.append(WorkerProcess(env, home.parent, queues="cpu,gpu", pool="prefork", cli=True,
                                       concurrency=concurrency).start())
        api = LiveServer(settings).start()
        for p in procs:
            p.wait_ready()
    except BaseException:
        stop()
        raise
    return api, stop


def table(result: LoadResult, label: str) -> str:
    rows = [
        ("setup", label),
        ("uploads (concurrent)", f"{result.uploads} x {result.pages // max(1, result.uploads)} pages"),
        ("ingest wall time", f"{result.ingest_s:.1f} s ({result.pages_per_s:.1f} pages/s)"),
        ("upload p50 / p95", f"{percentile(result.upload_ms, 50):.0f} / {percentile(result.upload_ms, 95):.0f} ms"),
        ("query idle p50 / p95", (f"{percentile(result.idle_query_ms, 50):.0f} / "
                                  f"{percentile(result.idle_query_ms, 95):.0f} ms ({len(result.idle_query_ms)})")),
        ("query under load p50 / p95 / max", (f"{percentile(result.load_query_ms, 50):.0f} / "
                                              f"{percentile(result.load_query_ms, 95):.0f} / "
                                              f"{max(result.load_query_ms, default=float('nan')):.0f} ms "
                                              f"({len(result.load_query_ms)} queries)")),
        ("errors", str(len(result.errors))),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'measure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    return "\n".join(lines)
