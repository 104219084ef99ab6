"""Nothing readable is left out of the index: on the corpus's born-digital pages, the text layer's
characters outside page furniture (running headers, footers, page numbers) reach chunk text (≥ 99.5%).

Characters are compared per page as multisets, after folding what the pipeline legitimately rewrites:
accents composed, quotes (``x'' → “x”), list bullets (• → "- "), a word's hyphen at a line break, and
leader or rule runs drawn with characters (". . . . ."), which are not text.
"""

import json
import re
import unicodedata
from collections import Counter

import pymupdf
import pytest

from docground.ingest.chunking import ChunkerConfig
from docground.ingest.pipeline import Pipeline
from docground.ingest.routing import Router
from docground.ingest.schema import FURNITURE, Chunk, PageLayout
from docground_testing.corpus import CORPUS

MIN_COVERAGE = 0.995
MIN_DOCUMENT_COVERAGE = 0.99  # no single document may lose much, whatever the others make up
LAYER_FLAGS = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP  # the text as shown on the page

_QUOTES = {c: "'" for c in "‘’‚‛`'′"} | {c: "''" for c in "“”„‟\"″"}
_DASHES = dict.fromkeys("•◦▪‣∙·●○■□▶►➢✓✔–—*", "-")  # bullets markdown writes as "- "
_ACCENTS = set("ˆˇ")  # spacing accents that are letters to Unicode (the rest are category Sk)
_LEADER = re.compile(r"([.·_\-–—=~*…])(?:\s*\1){3,}")


def born_digital() -> list[str]:
    manifest = CORPUS / "manifest.json"
    if not manifest.exists():
        return []
    return [r["file"] for r in json.loads(manifest.read_text())
            if r["file"].startswith("docs/") and r["file"].endswith(".pdf") and "scanned" not in r["tags"]
            and not r.get("pages_without_text_layer") and not r.get("pages_mostly_image")]


def fold(text: str) -> Counter:
    """The characters a reader would count, as a multiset."""
    out: Counter = Counter()
    for ch in unicodedata.normalize("NFKD", _LEADER.sub(" ", text)):
        ch = _QUOTES.get(ch) or _DASHES.get(ch) or ch
        cat = unicodedata.category(ch[0])
        if not (ch.isspace() or cat[0] in "CMZ" or cat == "Sk" or ch in _ACCENTS or ch == "\ufffd"):
            out[ch[0]] += len(ch)
    return out


def layer_chars(page: pymupdf.Page, furniture: list) -> Counter:
    """The page's text-layer characters whose centres lie outside the furniture blocks."""
    w, h = page.rect.width, page.rect.height
    matrix = page.rotation_matrix
    chars: Counter = Counter()
    for block in page.get_text("rawdict", flags=LAYER_FLAGS)["blocks"]:
        for line in block.get("lines", ()):
            kept = []
            for ch in (c for span in line["spans"] for c in span["chars"]):
                r = pymupdf.Rect(ch["bbox"]) * matrix
                cx, cy = (r.x0 + r.x1) / 2 / w, (r.y0 + r.y1) / 2 / h
                if not any(f[0] <= cx <= f[2] and f[1] <= cy <= f[3] for f in furniture):
                    kept.append(ch["c"])
            text = "".join(kept).rstrip()
            if len(text) > 1 and text[-1] == "-" and text[-2].isalpha():
                text = text[:-1]  # a word broken at the line's end: the pipeline joins its halves
            chars += fold(text)
    return chars


def chunk_chars(chunks: list[Chunk]) -> dict[int, Counter]:
    """Each page's characters in chunk text, each line counted once (overlap repeats lines)."""
    seen: set = set()
    pages: dict[int, Counter] = {}
    for c in chunks:
        for s in c.spans:
            key = (s.block_id, s.bbox, c.text[s.char_start:s.char_end])
            if key not in seen:
                seen.add(key)
                pages.setdefault(s.page, Counter()).update(fold(key[2]))
    return pages


def words(texts):
    return [len(t.split()) for t in texts]


def document_coverage(data: bytes) -> tuple[int, Counter]:
    """(text-layer characters on born-digital pages, those missing from the chunks)."""
    pipeline = Pipeline(Router(ocr=None), words, ChunkerConfig(), "words")
    source = pipeline.open(data)
    try:
        layouts: list[PageLayout] = pipeline.parse_pages(source, "coverage")
    finally:
        source.close()
    got = chunk_chars(pipeline.chunk(layouts, "coverage"))
    doc = pymupdf.open(stream=data)
    total, missing = 0, Counter()
    for layout in layouts:
        if layout.reason != "text layer":  # a page the router doubts is no born-digital page
            continue
        furniture = [b.bbox for b in layout.blocks if b.kind in FURNITURE]
        layer = layer_chars(doc[layout.page - 1], furniture)
        total += sum(layer.values())
        missing += layer - got.get(layout.page, Counter())
    return total, missing


@pytest.mark.timeout(900)
def test_born_digital_text_reaches_chunks():
    files = born_digital()
    if not files:
        pytest.skip(f"evaluation corpus not present: {CORPUS}")
    report, total, lost = [], 0, 0
    for name in files:
        chars, missing = document_coverage((CORPUS / name).read_bytes())
        n = sum(missing.values())
        total, lost = total + chars, lost + n
        share = 1 - n / chars if chars else 1.0
        report.append((share, f"{name}: {share:.2%} ({n} of {chars} missing; {missing.most_common(6)})"))
    assert total > 400_000, "the born-digital corpus is (nearly) all there"
    overall = 1 - lost / total
    detail = f"overall {overall:.3%}\n" + "\n".join(line for _, line in sorted(report))
    assert overall >= MIN_COVERAGE, detail
    assert all(share >= MIN_DOCUMENT_COVERAGE for share, _ in report), detail
