"""What the page guard costs and how fast bad input gets its answer (`python bench/hostile.py`).

1. The guard's cost on ordinary PDFs: the text-layer parse of the evaluation corpus' PDFs (or generated
   two-column PDFs when the corpus is absent), with the page check on (DOCGROUND_PAGE_TIME_LIMIT_S=10)
   and off (0), best of three runs each.
2. Each hostile file of docground_testing/hostile_files.py: its outcome through `Pipeline.open` and every page, and
   how long that took.

Prints two tables; writes JSON to bench/results/hostile.json.

    python bench/hostile.py [--corpus DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from docground.errors import DocgroundError
from docground.ingest.chunking import ChunkerConfig
from docground.ingest.pipeline import Pipeline
from docground.ingest.providers import PageLimits
from docground.ingest.routing import Router
from docground_testing import hostile_files as hostile
from docground_testing.pdfgen import two_column_pdf

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "eval" / "corpus" / "docs"


def pipeline(limits: PageLimits) -> Pipeline:
    return Pipeline(Router(ocr=None), lambda texts: [len(t.split()) for t in texts], ChunkerConfig(), "words", limits)


def parse_all(files: list[bytes], limits: PageLimits) -> tuple[int, float]:
    pipe, pages = pipeline(limits), 0
    started = time.perf_counter()
    for data in files:
        source = pipe.open(data)
        try:
            pages += len(pipe.parse_pages(source, "bench"))
        finally:
            source.close()
    return pages, time.perf_counter() - started


def guard_cost(files: list[bytes]) -> dict:
    runs = {name: min((parse_all(files, limits) for _ in range(3)), key=lambda r: r[1])
            for name, limits in (("off", PageLimits(time_s=0)), ("on", PageLimits(time_s=10)))}
    pages = runs["on"][0]
    return {"documents": len(files), "pages": pages, "ms_per_page_off": 1000 * runs["off"][1] / pages,
            "ms_per_page_on": 1000 * runs["on"][1] / pages, "overhead": runs["on"][1] / runs["off"][1] - 1}


CASES = {
    "empty file": lambda: b"",
    "random bytes (60 MB)": lambda: hostile.random_bytes(60 * 2**20),
    "junk behind %PDF- (60 MB)": lambda: b"%PDF-1.7\n" + hostile.random_bytes(60 * 2**20),
    "PDF with a user password": lambda: hostile.encrypted_pdf(True),
    "PNG bomb 50000x50000": hostile.bomb_png,
    "TIFF bomb 60000x60000": hostile.bomb_tiff,
    "PDF of 5001 pages": lambda: hostile.many_pages_pdf(5001),
    "PDF of 4000 pages (all checked)": lambda: hostile.many_pages_pdf(4000),
    "forms drawing forms (1 page)": hostile.form_bomb_pdf,
    "60000x60000 image in a page": hostile.huge_image_pdf,
    "font inflating to 200 MB": hostile.font_bomb_pdf,
    "200 x 200 inch page (render)": hostile.poster_pdf,
    "JavaScript and attachment": hostile.scripted_pdf,
}


def outcome(data: bytes, limits: PageLimits) -> str:
    try:
        source = pipeline(limits).open(data)
    except DocgroundError as exc:
        return f"refused: {exc.code}"
    try:
        skipped = [p.refused.code for p in source.pages() if p.refused is not None]
        if not skipped:
            image = source.page(1).render(144)
            return f"read; page 1 renders at {image.width}x{image.height}"
        return f"{len(skipped)} of {source.page_count} page(s) skipped: {skipped[0]}"
    finally:
        source.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--limit", type=int, default=0, help="at most this many corpus PDFs")
    args = parser.parse_args()
    paths = sorted(args.corpus.glob("*/*.pdf")) if args.corpus.is_dir() else []
    files = [p.read_bytes() for p in paths[:args.limit or None]]
    source = f"{len(files)} corpus PDFs" if files else "20 generated PDFs (corpus absent)"
    files = files or [two_column_pdf(pages=5, seed=i)[0] for i in range(20)]

    cost = guard_cost(files)
    print(f"\nPage guard cost, text-layer parse of {source} ({cost['pages']} pages), best of 3")
    print(f"{'check':<8}{'ms/page':>10}")
    print(f"{'off':<8}{cost['ms_per_page_off']:>10.2f}\n{'on':<8}{cost['ms_per_page_on']:>10.2f}")
    print(f"overhead {cost['overhead']:+.1%}")

    limits = PageLimits()  # the defaults: 10 s a page, 2048 MiB, 200 M image pixels, 50 M render pixels
    rows = []
    for name, make in CASES.items():
        data = make()
        started = time.perf_counter()
        result = outcome(data, limits)
        rows.append({"case": name, "outcome": result, "seconds": time.perf_counter() - started})
    print("\nHostile files, default limits (open, check every page, render page 1 when readable)")
    print(f"{'case':<34}{'seconds':>9}  outcome")
    for r in rows:
        print(f"{r['case']:<34}{r['seconds']:>9.2f}  {r['outcome']}")

    out = ROOT / "bench" / "results" / "hostile.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"guard": cost, "cases": rows}, indent=2))


if __name__ == "__main__":
    main()
