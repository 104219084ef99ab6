"""CPU OCR (Tesseract) on scans: character error rate against the text layer, and pages per second.

Born-digital pages of the evaluation corpus are rendered to image-only PDFs at 150 DPI (a scan with no
text layer), read by the CPU OCR engine as docground would (languages `auto` unless told), and compared
with what the original's text layer says, both in reading order. CER counts edits over letters and digits
only (any script; case, spacing and punctuation ignored), divided by the text layer's count. The corpus
has no Korean pages and only table or vertical Chinese and Japanese ones, so prose pages in Chinese,
Japanese and Korean are also drawn here (PyMuPDF's built-in CJK fonts). Two rows read real scans (one
askew, one turned 0/90/180/270) against their published transcription.

    .venv/bin/python bench/ocr_cpu.py [--languages auto] [--dpi 200] [--workers 0]

Timings on a shared 2-core machine are noisy: CPU seconds per page are steadier than pages/s.
"""

from __future__ import annotations

import argparse
import sys
import time
import unicodedata

import pymupdf
from rapidfuzz.distance import Levenshtein

from docground.ingest.engines.tesseract import TesseractEngine
from docground.ingest.engines.textlayer import TextLayerEngine
from docground.ingest.providers import open_source
from docground_testing.corpus import CORPUS
from docground_testing.pdfgen import image_only_pdf, prose_pdf

SCAN_DPI = 150
# (row, [(source, 1-based pages)]): a corpus file, or "generated:<language>" for a page drawn here.
SETS = [
    ("English", [("docs/academic/deepseek_ocr2_paper.pdf", [1, 2, 3]), ("docs/academic/olmocr2_paper.pdf", [1, 2])]),
    ("two-column", [("docs/academic/pdfminer_naacl06_shinyama.pdf", [1, 2]),
                    ("docs/academic/mineru_demo2_ieee_stereo.pdf", [1]),
                    ("docs/academic/olmocr_tobacco_control_2004.pdf", [4])]),
    ("Chinese table", [("docs/cjk/pymupdf_chinese-tables.pdf", [1])]),
    ("Chinese (generated)", [("generated:zh", [1])]),
    ("Japanese (generated)", [("generated:ja", [1])]),
    ("Japanese vertical", [("docs/cjk/pdfminer_jo_vertical_ja.pdf", [1])]),
    ("Korean (generated)", [("generated:ko", [1])]),
]
# Real scans with a transcription: one page askew, and the same page turned 0/90/180/270.
REAL_SCANS = [
    ("real scan, askew", "docs/scanned/ocrmypdf_skew.pdf", "groundtruth/ocrmypdf_linn/linn.txt"),
    ("real scans, turned", "docs/scanned/ocrmypdf_cardinal_rotations.pdf", "groundtruth/ocrmypdf_linn/linn.txt"),
]

def pages_of(file: str, numbers: list[int]) -> bytes:
    if file.startswith("generated:"):
        return prose_pdf(file.split(":", 1)[1])
    src = pymupdf.open(CORPUS / file)
    out = pymupdf.open()
    for n in numbers:
        out.insert_pdf(src, from_page=n - 1, to_page=n - 1)
    return out.tobytes()


def letters(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())


def layout_letters(layouts) -> str:
    return letters("".join(b.markdown for lay in layouts for b in lay.blocks))


def born_digital(file: str, numbers: list[int]) -> tuple[bytes, str]:
    """An image-only scan of born-digital pages, and what their text layer says."""
    original = pages_of(file, numbers)
    reference = layout_letters([TextLayerEngine().parse(p, "ref") for p in open_source(original).pages()])
    return image_only_pdf(original, SCAN_DPI), reference


def real_scan(file: str, transcript: str) -> tuple[bytes, str]:
    """A scan as published, and its transcription once per page (every page shows the same text)."""
    data = (CORPUS / file).read_bytes()
    return data, letters((CORPUS / transcript).read_text()) * open_source(data).page_count


def measure(engine: TesseractEngine, label: str, jobs: list[tuple[bytes, str]]) -> dict:
    ref_chars, edits, pages, wall, cpu = 0, 0, 0, 0.0, 0.0
    reasons: set[str] = set()
    for n, (scan, reference) in enumerate(jobs):
        scanned = list(open_source(scan).pages())
        t, c = time.perf_counter(), time.process_time()
        layouts = engine.parse_many(scanned, f"bench-{label}-{n}")
        wall += time.perf_counter() - t
        cpu += time.process_time() - c
        ref_chars += len(reference)
        edits += Levenshtein.distance(reference, layout_letters(layouts))
        pages += len(scanned)
        reasons |= {lay.reason.split(",")[0].removeprefix("tesseract ") for lay in layouts}
    return {"set": label, "pages": pages, "chars": ref_chars, "cer": edits / max(ref_chars, 1),
            "pages_s": pages / wall, "cpu_s": cpu / pages, "languages": " ".join(sorted(reasons))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--languages", default="auto")
    parser.add_argument("--dpi", type=int, default=None, help="OCR render resolution (default: the engine's)")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    if not CORPUS.exists():
        sys.exit(f"evaluation corpus not found at {CORPUS}")
    kwargs = {"dpi": args.dpi} if args.dpi else {}
    engine = TesseractEngine(languages=args.languages, workers=args.workers, **kwargs)
    print(f"tesseract {engine.version}, languages {args.languages}, render at most {engine.dpi} DPI (by text size), "
          f"{engine.workers} workers; scans at {SCAN_DPI} DPI")
    rows = [measure(engine, label, [born_digital(f, pages) for f, pages in files]) for label, files in SETS]
    rows += [measure(engine, label, [real_scan(file, transcript)]) for label, file, transcript in REAL_SCANS]
    header = f"{'set':<20} {'pages':>5} {'chars':>7} {'CER':>7} {'pages/s':>8} {'CPU s/page':>10}  languages"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['set']:<20} {r['pages']:>5} {r['chars']:>7} {r['cer']:>7.2%} {r['pages_s']:>8.2f} "
              f"{r['cpu_s']:>10.2f}  {r['languages']}")


if __name__ == "__main__":
    main()
