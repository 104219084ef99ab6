"""Query latency on the embedded store: p50/p95 of a query (embed, hybrid search, extractive answer
with citations; no LLM) at 10k, 100k and 1M chunks, in process and through HTTP POST /query. The stages
are also timed alone: the hybrid search at the depth the answer stage reads, and the answer stage on
the hits that search returned.

Chunks are synthetic with realistic payloads: ~170 words of Zipf-distributed vocabulary (so the
sparse index sees real term statistics), a span per line with its box, page sizes; dense vectors are
clustered (real embeddings are, and uniform random vectors are a worst case no corpus has). Queries are
phrases from stored chunks embedded by the real model. Stores are built once under --home and reused.

    .venv/bin/python bench/query.py [--sizes 10000,100000,1000000] [--queries 200] [--home DIR] [--optimize]

Targets: p95 <= 30 ms at 100k chunks, <= 50 ms at 1M. The embedded store searches exactly (brute force)
as ingested; --optimize also measures after qdrant-edge's optimize() has built its HNSW index (and the
int8 copies of the vectors, on stores created since quantization).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from docground.retrieval import selection, sparse
from docground.retrieval.answers import extractive_answer
from docground.retrieval.store import IndexedChunk
from docground.service import Docground
from docground.settings import Settings

KB = "bench"
DIM = 384
VOCABULARY = 20_000
CLUSTERS = 512
CHUNKS_PER_DOCUMENT = 400
INCREMENT = 10_000  # a later ingest into an optimized store: enough chunks that optimize() indexes them
BATCH = 5_000
LINE_CHARS = 90
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vi", "so", "pe", "da", "gu", "ho", "zi", "be", "fa", "ly", "or", "en",
             "st", "tr", "an", "el", "is", "um"]


def vocabulary(rng: np.random.Generator) -> list[str]:
    words = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(SYLLABLES, size=rng.integers(2, 5))))
    return list(rng.permutation(sorted(words)))  # frequency rank unrelated to spelling


class Corpus:
    """Chunk i is the same text, spans and vector in every run (seeded by i)."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.words = vocabulary(rng)
        ranks = np.arange(1, VOCABULARY + 1)
        self.cdf = np.cumsum(1 / ranks) / (1 / ranks).sum()
        self.centers = rng.standard_normal((CLUSTERS, DIM)).astype(np.float32)

    def text(self, i: int) -> str:
        rng = np.random.default_rng(1_000_003 + i)
        words = np.minimum(np.searchsorted(self.cdf, rng.random(int(rng.integers(140, 200)))), VOCABULARY - 1)
        sentences, pos = [], 0
        while pos < len(words):
            n = int(rng.integers(10, 25))
            sentences.append(" ".join(self.words[w] for w in words[pos:pos + n]).capitalize() + ".")
            pos += n
        return f"## Section {i % 97}\n\n" + " ".join(sentences)

    def vectors(self, start: int, stop: int) -> np.ndarray:
        rng = np.random.default_rng(start)
        idx = np.arange(start, stop)
        v = self.centers[idx % CLUSTERS] + 0.6 * rng.standard_normal((len(idx), DIM)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def payload(self, i: int) -> dict:
        text = self.text(i)
        doc = f"{i // CHUNKS_PER_DOCUMENT:032x}"
        page = 1 + (i % CHUNKS_PER_DOCUMENT) // 3
        spans, start, y = [], 0, 0.08
        while start < len(text):
            end = min(len(text), start + LINE_CHARS)
            spans.append({"block_id": f"{doc}-p{page}-b{start // 400}", "page": page,
                          "bbox": [0.12, round(y, 6), 0.88, round(y + 0.016, 6)], "char_start": start, "char_end": end})
            start, y = end + 1, y + 0.018
        return {"document_id": doc, "kb": KB, "filename": f"report-{i // CHUNKS_PER_DOCUMENT}.pdf",
                "index": i % CHUNKS_PER_DOCUMENT, "text": text, "headings": [f"Section {i % 97}"], "pages": [page],
                "fingerprint": "bench", "spans": spans,
                "page_sizes": [{"page": page, "width_pt": 612.0, "height_pt": 792.0}]}


def chunks_of(corpus: Corpus, lo: int, hi: int, document_id: str | None = None) -> list[IndexedChunk]:
    out = []
    for i, v in zip(range(lo, hi), corpus.vectors(lo, hi), strict=True):
        payload = corpus.payload(i) | ({"document_id": document_id} if document_id else {})
        out.append(IndexedChunk(f"00000000-0000-4000-8000-{i:012x}", v.tolist(),
                                sparse.document_vector(payload["text"]), payload))
    return out


def reoptimize(service: Docground, corpus: Corpus, size: int) -> float:
    """Seconds optimize() takes after a later ingest of INCREMENT more chunks into the optimized store (they
    are then removed again, so the store stays as measured)."""
    store = service.store(KB)
    store.upsert(chunks_of(corpus, size, size + INCREMENT, "increment"))
    t = time.perf_counter()
    store.optimize()
    seconds = time.perf_counter() - t
    store.delete_document("increment")
    store.optimize()
    return seconds


def build(service: Docground, corpus: Corpus, size: int) -> None:
    service.registry.ensure_kb(KB)
    store = service.store(KB)
    have = store.count()
    if have >= size:
        return
    started = time.perf_counter()
    for lo in range(have, size, BATCH):
        hi = min(size, lo + BATCH)
        store.upsert(chunks_of(corpus, lo, hi))
        print(f"  {hi:>9,} chunks indexed ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    store.flush()


def questions(corpus: Corpus, size: int, count: int) -> dict[str, np.ndarray]:
    """Questions made of a phrase of a stored chunk, each with the vector it is planted at: near its
    chunk's (cosine about 0.9), as a real embedder puts a question near the passage that answers it."""
    rng = np.random.default_rng(7)
    out = {}
    for i in rng.integers(0, size, count):
        words = corpus.text(int(i)).split("\n\n", 1)[1].rstrip(".").split()
        start = int(rng.integers(0, max(1, len(words) - 8)))
        v = corpus.vectors(int(i), int(i) + 1)[0] + 0.02 * rng.standard_normal(DIM).astype(np.float32)
        out["What about " + " ".join(words[start:start + 6]).lower() + "?"] = v / np.linalg.norm(v)
    return out


class PlantedEmbedder:
    """The real model runs on every question (its time counts); the vector used is the planted one."""

    def __init__(self, real, planted: dict[str, np.ndarray]):
        self.real, self.planted = real, planted

    def embed(self, texts):
        vectors = self.real.embed(texts)
        return np.stack([self.planted.get(t, v) for t, v in zip(texts, vectors, strict=True)])

    def __getattr__(self, name):
        return getattr(self.real, name)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e3, ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1e3


def timed(fn, items) -> list[float]:
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - t)
    return out


class Server:
    def __init__(self, service: Docground):
        import uvicorn

        from docground.api.app import create_app

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        app = create_app(service.settings, service)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True).start()
        while True:
            try:
                if httpx.get(self.url + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)

    def stop(self) -> None:
        self.server.should_exit = True


def latencies(service: Docground, planted: dict[str, np.ndarray], real_embedder) -> dict:
    asked = list(planted)
    store = service.store(KB)
    for q in asked[:10]:  # warm: model, store pages, caches
        service.query(KB, q, 5, "extractive")
    depth = max(5, selection.RERANK_DEPTH)  # what service.query's extractive answer retrieves
    hits = {q: store.search(planted[q], sparse.query_vector(q), depth) for q in asked}
    row = {"embed": percentiles(timed(real_embedder.embed_query, asked)),
           "search": percentiles(timed(lambda q: store.search(planted[q], sparse.query_vector(q), depth), asked)),
           "answer": percentiles(timed(lambda q: extractive_answer(q, hits[q], service.text_layer, top_k=5),
                                        asked)),
           "query": percentiles(timed(lambda q: service.query(KB, q, 5, "extractive"), asked))}
    server = Server(service)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        def post(q: str) -> dict:
            r = http.post(f"/v1/knowledge-bases/{KB}/query", json={"query": q, "top_k": 5, "mode": "extractive"})
            r.raise_for_status()
            return r.json()

        row["http"] = percentiles(timed(post, asked))
        row["cited"] = sum(1 for q in asked[:50] if post(q)["citations"])
    server.stop()
    time.sleep(1)
    return row


def measure(home: Path, corpus: Corpus, size: int, count: int, optimize: bool) -> list[dict]:
    settings = Settings(home=home / f"{size}", rate_limit_per_minute=0)
    service = Docground(settings)
    t = time.perf_counter()
    build(service, corpus, size)
    built = time.perf_counter() - t
    planted = questions(corpus, size, count)
    real = service.embedder
    service._embedder = PlantedEmbedder(real, planted)
    rows = [{"size": size, "index": "as ingested (exact)", "seconds": built} | latencies(service, planted, real)]
    service.close()
    if optimize:  # HNSW, which qdrant-edge builds in optimize(): on a copy, so the exact store stays as it was
        copy = home / f"{size}-optimized"
        t = time.perf_counter()
        if not copy.exists():
            shutil.copytree(home / f"{size}", copy)
            service = Docground(Settings(home=copy, rate_limit_per_minute=0))
            service.store(KB).shard.optimize()
        else:
            service = Docground(Settings(home=copy, rate_limit_per_minute=0))
        service._embedder = PlantedEmbedder(real, planted)
        rows.append({"size": size, "index": "after optimize() (HNSW)", "seconds": time.perf_counter() - t}
                    | latencies(service, planted, real) | {"again": reoptimize(service, corpus, size)})
        service.close()
    for row in rows:
        print(f"  {row}", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--home", type=Path, default=Path("/tmp/docground-bench-query"))
    parser.add_argument("--optimize", action="store_true", help="also measure after building the HNSW index")
    args = parser.parse_args()
    corpus = Corpus()
    rows = [r for s in args.sizes.split(",") for r in measure(args.home, corpus, int(s), args.queries, args.optimize)]
    print(f"queries per size: {args.queries}; top_k 5; extractive answers with citations; times in ms (p50 / p95)")
    print("| chunks | dense index | embed query | hybrid search (16) | answer stage | service.query | HTTP POST /query "
          "| cited (of 50) | build / optimize s | optimize after +10k s |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cells = " | ".join(f"{r[k][0]:.1f} / {r[k][1]:.1f}" for k in ("embed", "search", "answer", "query", "http"))
        again = f"{r['again']:.1f}" if "again" in r else ""
        print(f"| {r['size']:,} | {r['index']} | {cells} | {r['cited']} | {r['seconds']:.0f} | {again} |")


if __name__ == "__main__":
    main()
