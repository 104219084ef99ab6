"""Ingest benchmark (`make bench`): docground end to end against pymupdf4llm's parse alone.

On the born-digital PDFs of the evaluation corpus, in one run:
  * docground: parse + chunk + embed + index into the embedded store (the embedding model is loaded
    before the clock starts; its load time is reported apart),
  * docground's parse alone (text layer + furniture), for reference,
  * pymupdf4llm.to_markdown(page_chunks=True) with its defaults (layout model; OCR where it decides),
then both systems' markdown scored on the olmOCR-bench sample checks, and docground's citations checked
against the PDFs' text layer (is each quote under its boxes?). Prints one table; writes JSON to
bench/results/ingest.json.

    python bench/ingest.py [--corpus DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pymupdf

from docground.ingest.pipeline import document_id, file_sha256
from docground.ingest.processors.furniture import mark_furniture
from docground.ingest.renderers import document_markdown
from docground.service import Docground
from docground.settings import Settings
from docground_testing import olmocr_checks
from docground_testing.citecheck import questions_from, quote_under_boxes


def default_corpus() -> Path:
    for p in (os.environ.get("DOCGROUND_CORPUS"), ROOT.parent / "shared" / "eval" / "corpus",
              "/work/shared/eval/corpus"):
        if p and Path(p).exists():
            return Path(p)
    sys.exit("evaluation corpus not found: pass --corpus")


def born_digital(corpus: Path) -> list[dict]:
    manifest = json.loads((corpus / "manifest.json").read_text())
    return [r for r in manifest if r["file"].startswith("docs/") and r["file"].endswith(".pdf")
            and not r.get("pages_without_text_layer") and not r.get("pages_mostly_image")
            and "scanned" not in r["tags"]]


def pymupdf4llm_markdown(path: Path) -> tuple[str, int]:
    import pymupdf4llm

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        pages = pymupdf4llm.to_markdown(str(path), page_chunks=True, show_progress=False)
    return "\n\n".join(p["text"] for p in pages), len(pages)


def docground_markdown(service: Docground, data: bytes) -> str:
    pipeline = service.pipeline
    source = pipeline.open(data)
    try:
        layouts = pipeline.parse_pages(source, document_id("bench", file_sha256(data)))
    finally:
        source.close()
    mark_furniture(layouts)
    return document_markdown(layouts)


def score(tests: list[dict], markdown_of) -> dict[str, list[bool]]:
    results: dict[str, list[bool]] = defaultdict(list)
    cache: dict[str, str] = {}
    for t in tests:
        if t["pdf"] not in cache:
            cache[t["pdf"]] = markdown_of(t["pdf"])
        results[t["type"]].append(olmocr_checks.run(t, cache[t["pdf"]]))
    return results


def rate(results: dict[str, list[bool]], skip: tuple[str, ...] = ()) -> tuple[int, int]:
    passed = sum(sum(v) for k, v in results.items() if k not in skip)
    total = sum(len(v) for k, v in results.items() if k not in skip)
    return passed, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=0, help="only the first N documents (a quick run)")
    ap.add_argument("--queries-per-doc", type=int, default=4)
    args = ap.parse_args()
    corpus = args.corpus or default_corpus()
    docs = born_digital(corpus)[: args.limit or None]
    files = {r["file"]: (corpus / r["file"]).read_bytes() for r in docs}
    pages = sum(pymupdf.open(stream=d).page_count for d in files.values())
    print(f"{len(files)} born-digital PDFs, {pages} pages; {os.cpu_count()} CPUs", flush=True)

    home = Path(tempfile.mkdtemp(prefix="docground-bench-"))
    service = Docground(Settings(home=home))
    t = time.perf_counter()
    service.embedder  # noqa: B018 - load the model before the clock starts
    model_load = time.perf_counter() - t

    t = time.perf_counter()
    chunks = 0
    for name, data in files.items():
        result = service.ingest("bench", Path(name).name, data)
        if result.status != "ready":
            print(f"  {name}: {result.status} {result.error}", flush=True)
        chunks += result.chunks
    e2e = time.perf_counter() - t

    t = time.perf_counter()
    for data in files.values():
        docground_markdown(service, data)
    parse_only = time.perf_counter() - t

    t = time.perf_counter()
    for name in files:
        pymupdf4llm_markdown(corpus / name)
    peer = time.perf_counter() - t

    sample = corpus / "groundtruth" / "olmocr_bench_sample"
    tests = [json.loads(line) for f in ("dataset.jsonl", "blanks.jsonl")
             for line in (sample / f).read_text().splitlines() if line.strip()]
    ours = score(tests, lambda pdf: docground_markdown(service, (sample / "pdfs" / pdf).read_bytes()))
    theirs = score(tests, lambda pdf: pymupdf4llm_markdown(sample / "pdfs" / pdf)[0])

    rng = random.Random(7)
    cited = good = 0
    by_name = {Path(n).name: d for n, d in files.items()}
    for data in files.values():
        for question in questions_from(data, rng)[: args.queries_per_doc]:
            for c in service.query("bench", question, top_k=3).citations:
                cited += 1
                good += quote_under_boxes(by_name[c.filename], c)
    service.close()

    rows = [
        ("docground: parse+chunk+embed+index", e2e, rate(ours), rate(ours, ("math",))),
        ("docground: parse only", parse_only, None, None),
        ("pymupdf4llm.to_markdown(page_chunks=True)", peer, rate(theirs), rate(theirs, ("math",))),
    ]
    print()
    print("| system | pages | seconds | pages/s | olmOCR-bench sample pass | excl. math |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, secs, all_rate, no_math in rows:
        def fmt(r):
            return (f"{r[0]}/{r[1]} ({100 * r[0] / r[1]:.1f}%)" if r else "—")
        print(f"| {label} | {pages} | {secs:.1f} | {pages / secs:.2f} | {fmt(all_rate)} | {fmt(no_math)} |")
    print()
    types = sorted(set(ours) | set(theirs))
    print("| olmOCR-bench check | " + " | ".join(types) + " |")
    print("| --- | " + " | ".join("---:" for _ in types) + " |")
    for label, res in (("docground", ours), ("pymupdf4llm", theirs)):
        print(f"| {label} | " + " | ".join(f"{sum(res[k])}/{len(res[k])}" for k in types) + " |")
    print()
    print(f"chunks indexed: {chunks}; embedding model load (not timed above): {model_load:.1f} s")
    print(f"citations whose quote lies under their boxes: {good}/{cited} ({100 * good / max(cited, 1):.1f}%)")

    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ingest.json").write_text(json.dumps({
        "documents": len(files), "pages": pages, "chunks": chunks, "model_load_s": model_load,
        "docground_e2e_s": e2e, "docground_parse_s": parse_only, "pymupdf4llm_s": peer,
        "olmocr_docground": {k: Counter(v) for k, v in ours.items()},
        "olmocr_pymupdf4llm": {k: Counter(v) for k, v in theirs.items()},
        "citations": {"checked": cited, "under_boxes": good},
    }, default=dict, indent=2))


if __name__ == "__main__":
    main()
