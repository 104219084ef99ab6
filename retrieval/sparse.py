"""Lexical sparse vectors, BM25-style: the store multiplies in IDF (Qdrant's IDF modifier).

The terms are retrieval/tokens.py's words and CJK bigrams. Beside them the vectors hold each CJK
character as a unigram (at a lower query weight, so a one-character word such as 表 still matches) and
the Snowball stem of each Latin-script word that has one, in the language the text's function words point
to, so "informally" finds "informal" and "Rechnungen" finds "Rechnung"; an exact word matches twice.
"""


from __future__ import annotations

import zlib
from collections import Counter

from .lexical import language_of, stemmed
from .tokens import terms, unigrams

__all__ = ["VERSION", "document_vector", "query_vector", "term_id", "terms"]

# Part of the pipeline fingerprint: a change here re-indexes documents on their next ingest.
VERSION = "4"
K1 = 1.2
UNIGRAM_QUERY_WEIGHT = 0.3
B = 0.75
AVG_TERMS = 180.0

def term_id(term: str) -> int:
    return zlib.crc32(term.encode("utf-8"))


def _unigram_id(ch: str) -> int:
    return term_id("\x01" + ch)  # apart from a one-character run's own term


def _stem_id(stem: str) -> int:
    return term_id("\x02" + stem)


def _stem_ids(words: list[str], language: str) -> list[int]:
    """Ids of the words' stems, for the words whose stem differs from the word."""
    return [_stem_id(stem) for word, stem in zip(words, stemmed(words, language), strict=True) if stem != word]


def document_vector(text: str) -> tuple[list[int], list[float]]:
    words = terms(text)
    counts = Counter(term_id(t) for t in words)
    counts.update(_unigram_id(c) for c in unigrams(text))
    counts.update(_stem_ids(words, language_of(text)))
    length = sum(counts.values())
    norm = K1 * (1 - B + B * length / AVG_TERMS)
    ids = sorted(counts)
    return ids, [round(counts[i] * (K1 + 1) / (counts[i] + norm), 4) for i in ids]


def query_vector(text: str) -> tuple[list[int], list[float]]:
    words = terms(text)
    weights = {_unigram_id(c): UNIGRAM_QUERY_WEIGHT for c in unigrams(text)}
    weights.update((i, 1.0) for i in _stem_ids(words, language_of(text)))
    weights.update((term_id(t), 1.0) for t in words)
    ids = sorted(weights)
    return ids, [weights[i] for i in ids]
