"""Lexical sparse vectors, BM25-style: the store multiplies in IDF (Qdrant's IDF modifier).

Latin-script text is split into words; Chinese, Japanese and Korean runs become overlapping character
bigrams (single characters where a run has one), so a CJK query matches without a word segmenter.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter

from docground.ingest.builders import CJK_CHAR

K1 = 1.2
B = 0.75
AVG_TERMS = 180.0

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


def _split_cjk(word: str) -> list[str]:
    """A word of mixed script: CJK runs become bigrams, other runs stay whole."""
    out: list[str] = []
    run = ""
    rest = ""
    for ch in word + " ":
        if CJK_CHAR.match(ch):
            if rest:
                out.append(rest)
                rest = ""
            run += ch
        else:
            if run:
                out += [run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)]
                run = ""
            if ch != " ":
                rest += ch
    if rest:
        out.append(rest)
    return out


def terms(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).lower()
    out: list[str] = []
    for word in _TOKEN.findall(text):
        out += _split_cjk(word) if CJK_CHAR.search(word) else [word]
    return out


def term_id(term: str) -> int:
    return zlib.crc32(term.encode("utf-8"))


def document_vector(text: str) -> tuple[list[int], list[float]]:
    counts = Counter(term_id(t) for t in terms(text))
    length = sum(counts.values())
    norm = K1 * (1 - B + B * length / AVG_TERMS)
    ids = sorted(counts)
    return ids, [round(counts[i] * (K1 + 1) / (counts[i] + norm), 4) for i in ids]


def query_vector(text: str) -> tuple[list[int], list[float]]:
    ids = sorted({term_id(t) for t in terms(text)})
    return ids, [1.0] * len(ids)
