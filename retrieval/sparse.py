"""Lexical sparse vectors, BM25-style: the store multiplies in IDF (Qdrant's IDF modifier).

Latin-script text is split into words; Chinese, Japanese and Korean runs become overlapping character
bigrams (single characters where a run has one), so a CJK query matches without a word segmenter. The
vectors also hold each CJK character once as a unigram at a lower query weight (a one-character word such
as 表 still matches), and Chinese is folded to simplified characters (OpenCC), so a question in simplified
characters finds a document in traditional ones; full-width forms fold to half-width (NFKC).
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from functools import lru_cache

import opencc

from docground.ingest.builders import CJK_CHAR, UNSPACED_CHAR

# Part of the pipeline fingerprint: a change here re-indexes documents on their next ingest.
VERSION = "2"
K1 = 1.2
UNIGRAM_QUERY_WEIGHT = 0.3
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


@lru_cache(maxsize=1)
def _to_simplified() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def fold(text: str) -> str:
    """NFKC, lower case, Chinese in simplified characters."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _to_simplified().convert(text) if UNSPACED_CHAR.search(text) else text


def unigrams(text: str) -> list[str]:
    """The CJK characters of a text, each once per occurrence."""
    return UNSPACED_CHAR.findall(fold(text)) + [c for c in fold(text) if "\uac00" <= c <= "\ud7af"]


def terms(text: str) -> list[str]:
    text = fold(text)
    out: list[str] = []
    for word in _TOKEN.findall(text):
        out += _split_cjk(word) if CJK_CHAR.search(word) else [word]
    return out


def term_id(term: str) -> int:
    return zlib.crc32(term.encode("utf-8"))


def _unigram_id(ch: str) -> int:
    return term_id("\x01" + ch)  # apart from a one-character run's own term


def document_vector(text: str) -> tuple[list[int], list[float]]:
    counts = Counter(term_id(t) for t in terms(text))
    counts.update(_unigram_id(c) for c in unigrams(text))
    length = sum(counts.values())
    norm = K1 * (1 - B + B * length / AVG_TERMS)
    ids = sorted(counts)
    return ids, [round(counts[i] * (K1 + 1) / (counts[i] + norm), 4) for i in ids]


def query_vector(text: str) -> tuple[list[int], list[float]]:
    weights = {_unigram_id(c): UNIGRAM_QUERY_WEIGHT for c in unigrams(text)}
    weights.update((term_id(t), 1.0) for t in terms(text))
    ids = sorted(weights)
    return ids, [weights[i] for i in ids]
