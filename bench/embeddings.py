"""Embedding backends on the CPU: PyTorch against ONNX Runtime (float and int8) on real chunk texts.

Chunks come from the corpus's born-digital PDFs (parsed and chunked as ingest does); for each backend, in one
run: load time (the ONNX export included on its first use), throughput in chunks/s and the time of a query
on one thread, and how far its vectors are from PyTorch's: the cosine between the two vectors of a chunk,
and the share of PyTorch's 5 nearest chunks it also returns, for short queries and for each chunk as a query;
and retrieval itself: how often a query made of a few words of a chunk finds that chunk in its top 5.
Prints one table; writes JSON to bench/results/embeddings.json.

    python bench/embeddings.py [--corpus DIR] [--chunks 1000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from docground.ingest.pipeline import document_id, file_sha256
from docground.retrieval.embeddings import BACKENDS, Embedder
from docground.service import Docground
from docground.settings import Settings
from docground_testing.corpus import CORPUS

ROOT = Path(__file__).resolve().parents[1]


def chunk_texts(corpus: Path, limit: int) -> list[str]:
    manifest = json.loads((corpus / "manifest.json").read_text())
    files = sorted(r["file"] for r in manifest if r["file"].startswith("docs/") and r["file"].endswith(".pdf")
                   and not r.get("pages_without_text_layer") and "scanned" not in r["tags"])
    texts: list[str] = []
    with tempfile.TemporaryDirectory() as home:
        service = Docground(Settings(home=Path(home)))
        pipeline = service.pipeline
        for name in files:
            data = (corpus / name).read_bytes()
            doc_id = document_id("bench", file_sha256(data))
            source = pipeline.open(data)
            try:
                texts += [c.embedding_text() for c in pipeline.chunk(pipeline.parse_pages(source, doc_id), doc_id)]
            except Exception:
                continue
            if len(texts) >= limit:
                break
    return texts[:limit]


def top5(queries: np.ndarray, chunks: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    scores = queries @ chunks.T
    if exclude_self:
        np.fill_diagonal(scores, -np.inf)
    return np.argsort(-scores, axis=1)[:, :5]


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / 5 for x, y in zip(a, b)]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--chunks", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1, help="threads for the throughput run (queries run on one)")
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()

    texts = chunk_texts(args.corpus, args.chunks)
    rng = random.Random(0)
    sources = rng.sample(range(len(texts)), min(args.queries, len(texts)))
    # a few words of a chunk's end: a query whose answer is known (that chunk), to score retrieval itself
    queries = [" ".join(texts[i].split()[-40:][:rng.randint(4, 12)]) for i in sources]
    print(f"{len(texts)} chunks, {len(queries)} queries")
    rows, vectors, query_vectors = [], {}, {}
    with tempfile.TemporaryDirectory() as cache:
        for backend in BACKENDS:
            start = time.perf_counter()
            embedder = Embedder(backend=backend, threads=args.threads, cache_dir=Path(cache))
            load_s = time.perf_counter() - start
            embedder.embed(texts[:16])  # warm up
            start = time.perf_counter()
            vectors[backend] = embedder.embed(texts)
            chunk_rate = len(texts) / (time.perf_counter() - start)
            start = time.perf_counter()
            query_vectors[backend] = np.stack([embedder.embed_query(q) for q in queries])
            query_ms = (time.perf_counter() - start) * 1000 / len(queries)
            ref, got = vectors["torch"], vectors[backend]
            cosines = np.sum(ref * got, axis=1)
            query_top = top5(query_vectors["torch"], ref), top5(query_vectors[backend], got)
            rows.append({
                "backend": backend, "load_s": round(load_s, 2), "exported": embedder.exported,
                "chunks_per_s": round(chunk_rate, 1), "query_ms": round(query_ms, 2),
                "cosine_mean": round(float(cosines.mean()), 4), "cosine_min": round(float(cosines.min()), 4),
                "query_recall5": round(agreement(*query_top), 3),
                "source_hit5": round(float(np.mean([s in top for s, top in zip(sources, query_top[1])])), 3),
                "chunk_recall5": round(agreement(top5(ref, ref, True), top5(got, got, True)), 3),
            })
            del embedder
    header = ["backend", "load_s", "chunks_per_s", "query_ms", "cosine_mean", "cosine_min", "query_recall5",
              "chunk_recall5", "source_hit5"]
    print(" | ".join(f"{h:>13}" for h in header))
    for row in rows:
        print(" | ".join(f"{row[h]!s:>13}" for h in header))
    out = ROOT / "bench" / "results" / "embeddings.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"chunks": len(texts), "queries": len(queries), "threads": args.threads,
                               "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
