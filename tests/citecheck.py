"""Does a citation's quote lie under its boxes? Checked against the PDF's own text layer."""

from __future__ import annotations

import re
import unicodedata

from rapidfuzz import fuzz

from docground.ingest.providers import open_source


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
