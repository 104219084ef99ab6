"""OmniDocBench end-to-end scores of `docground convert`, one table per engine available.

    .venv/bin/python bench/omnidocbench.py                      # Tesseract; DeepSeek-OCR-2 where configured
    .venv/bin/python bench/omnidocbench.py --predictions DIR    # score a folder of NAME.md from any tool

Every page image of the OmniDocBench demo (../shared/eval/corpus/groundtruth/omnidocbench_demo) is converted
by `docground convert --format md`, and each page's markdown is scored against the human annotation with
OmniDocBench's end-to-end metrics, as its evaluation code defines them (opendatalab/OmniDocBench; the
snapshot read is the fork invofox/OmniDocBench@33a5f76, whose demo data the corpus holds).
The metrics, and how each follows the benchmark's code, are in docground_testing/omnidocbench.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from docground_testing.omnidocbench import Scores, score_folder

ROOT = Path(__file__).resolve().parents[1]
DEMO = "groundtruth/omnidocbench_demo"

@dataclass
class Run:
    engine: str
    pages: int = 0
    convert_s: float = 0.0  # as `docground convert` measured it (its own start-up not included)
    wall_s: float = 0.0
    error: str | None = None


def convert(engine: str, images: Path, out: Path, env: dict[str, str]) -> Run:
    run = Run(engine)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "docground.api.cli", "convert", str(images), "--out", str(out),
                           "--format", "md"], capture_output=True, text=True, env=env, timeout=3600)
    run.wall_s = time.perf_counter() - started
    summary = re.search(r"(\d+) pages in ([\d.]+) s", done.stdout)
    if summary:
        run.pages, run.convert_s = int(summary.group(1)), float(summary.group(2))
    if done.returncode != 0:
        run.error = (done.stderr.strip() or done.stdout.strip())[-2000:]
    return run


def deepseek_skipped() -> str | None:
    """Why DeepSeek-OCR-2 is not run here, naming the settings that enable it; None when it is configured."""
    from docground.ingest.engines.deepseek_ocr2.configure import backend_factory, uses_endpoint
    from docground.settings import Settings

    settings = Settings()
    if uses_endpoint(settings):
        return None
    weights = Path(settings.ocr_model)
    has_weights = weights.is_dir() and any(weights.glob("*.safetensors"))
    if has_weights and settings.ocr_backend in ("auto", "vllm", "transformers"):
        try:
            if backend_factory(settings) is not None:
                return None
        except Exception as exc:  # vLLM asked for and absent, and the like
            return f"{exc}"
    return ("no DeepSeek-OCR-2 weights are configured: set DOCGROUND_OCR_ENDPOINT to an OpenAI-compatible "
            "`vllm serve deepseek-ai/DeepSeek-OCR-2` URL ending in /v1, or DOCGROUND_OCR_MODEL to a local weights "
            "directory (with DOCGROUND_OCR_BACKEND=vllm on a GPU, or transformers)")


ROWS = (("Text edit distance ↓", "text", "text"), ("Formula edit distance ↓", "formula", "formula"),
        ("Table TEDS ↑", "table_teds", "table"), ("Table TEDS (structure) ↑", "table_teds_structure", "table"),
        ("Table edit distance ↓", "table_edit", "table"), ("Reading-order edit distance ↓", "reading_order", "order"))
OVER = {"text": "text blocks", "formula": "formulas", "table": "tables", "order": "pages"}


def print_table(title: str, scores: Scores, run: Run | None = None) -> None:
    print(f"\n{title}")
    print(f"| {'metric':<30} | {'value':>7} | {'over':<15} |")
    print(f"|{'-' * 32}|{'-' * 9}|{'-' * 17}|")
    for label, key, count in ROWS:
        value = getattr(scores, key)
        over = f"{scores.counts.get(count, 0)} {OVER[count]}"
        print(f"| {label:<30} | {'n/a' if value is None else f'{value:.3f}':>7} | {over:<15} |")
    if run is not None:
        rate = f"{run.pages / run.convert_s:.2f}" if run.convert_s else "n/a"
        print(f"| {'pages/s (docground convert)':<30} | {rate:>7} | {f'{run.pages} pages':<15} |")
        print(f"| {'seconds, convert / wall':<30} | {f'{run.convert_s:.0f}/{run.wall_s:.0f}':>7} | {'':<15} |")


def corpus_dir() -> Path:
    candidates = [Path(os.environ["DOCGROUND_CORPUS"]) if os.environ.get("DOCGROUND_CORPUS") else None,
                  ROOT.parent / "shared" / "eval" / "corpus", Path("/work/shared/eval/corpus")]
    return next((p for p in candidates if p is not None and p.is_dir()), ROOT.parent / "shared" / "eval" / "corpus")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", type=Path, default=corpus_dir() / DEMO, help="the OmniDocBench demo folder")
    parser.add_argument("--predictions", type=Path, help="score this folder of NAME.md instead of converting")
    parser.add_argument("--out", type=Path, help="keep the conversions here (default: a temporary folder)")
    args = parser.parse_args(argv)
    truth_file = args.demo / "OmniDocBench_demo.json"
    if not truth_file.is_file():
        print(f"OmniDocBench demo not found at {args.demo} (set DOCGROUND_CORPUS or --demo)", file=sys.stderr)
        return 2
    truth = json.loads(truth_file.read_text(encoding="utf-8"))
    print(f"OmniDocBench demo: {len(truth)} pages, end-to-end metrics (quick match)")
    if args.predictions:
        scores, missing = score_folder(truth, args.predictions)
        print_table(f"predictions in {args.predictions}", scores)
        if missing:
            print(f"no prediction for {len(missing)} page(s): {', '.join(missing)}")
        return 0

    engines: list[tuple[str, dict[str, str]]] = [
        ("Tesseract (DOCGROUND_OCR_BACKEND=cpu)", {"DOCGROUND_OCR_BACKEND": "cpu"})]
    if (why := deepseek_skipped()) is None:
        engines.append(("DeepSeek-OCR-2", {}))
    failed = False
    with tempfile.TemporaryDirectory(prefix="omnidocbench-") as tmp:
        for engine, overrides in engines:
            out = (args.out or Path(tmp)) / re.sub(r"\W+", "-", engine.split(" (")[0].lower())
            env = {**os.environ, "DOCGROUND_HOME": str(Path(tmp) / "home"), **overrides}
            run = convert(engine, args.demo / "images", out, env)
            if run.error:
                print(f"\n{engine}: docground convert failed:\n{run.error}", file=sys.stderr)
                failed = True
                continue
            scores, missing = score_folder(truth, out)
            print_table(engine, scores, run)
            if missing:
                print(f"no output for {len(missing)} page(s): {', '.join(missing)}")
    if why is not None:
        print(f"\nDeepSeek-OCR-2: skipped — {why}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
