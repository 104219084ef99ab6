"""Does a citation's quote lie under its boxes? Checked against the PDF's own text layer. And the block
invariants every engine's output keeps, whatever it was fed."""

from __future__ import annotations

import random
import re
import unicodedata

import pymupdf
from rapidfuzz import fuzz

from docground.ingest.providers import open_source

QUERIES_PER_DOC = 4


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"(\w)-\s+(\w)", r"\1\2", text)  # hyphenation at line ends
    text = re.sub(r"^[#>*\-\s|]+", "", text)
    return re.sub(r"[\s|]+", " ", text).strip().lower()


def quote_under_boxes(pdf: bytes, citation, threshold: float = 90.0) -> bool:
    page = open_source(pdf).page(citation.page)
    under = " ".join(page.text_in(tuple(b)) for b in citation.boxes)
    quote = _norm(citation.quote)
    return bool(quote) and fuzz.partial_ratio(quote, _norm(under)) >= threshold


def assert_block_on_page(block) -> None:
    """Every box of the block lies on the page (0..1, x0 <= x1, y0 <= y1); every line's span lies inside the
    block's text."""
    for x0, y0, x1, y1 in [block.bbox] + [line.bbox for line in block.lines]:
        assert 0.0 <= x0 <= x1 <= 1.0 and 0.0 <= y0 <= y1 <= 1.0
    for line in block.lines:
        assert 0 <= line.start < line.end <= len(block.markdown)


def questions_from(data: bytes, rng: random.Random) -> list[str]:
    """Lines of the document's own text layer, as a reader would paste them."""
    doc = pymupdf.open(stream=data)
    lines = [ln.strip() for page in doc for ln in page.get_text().splitlines()]
    lines = [ln for ln in lines if len(ln) >= 25 and sum(c.isalpha() for c in ln) > 0.6 * len(ln)]
    return rng.sample(lines, min(QUERIES_PER_DOC, len(lines)))
