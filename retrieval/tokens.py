"""The words of a text as every lexical part sees them (sparse vectors, answer selection).

Text is folded first (NFKC, so full-width forms become half-width; lower case; Chinese to simplified
characters with OpenCC, so simplified and traditional spellings meet). Latin-script text is split into
words; Chinese, Japanese and Korean runs become overlapping character bigrams (single characters where a
run has one), so a CJK query matches without a word segmenter. Dotted numbers (section and version
numbers) are also terms as a whole.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import opencc

from docground.ingest.builders import CJK_CHAR, UNSPACED_CHAR

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
# A dotted number is also one term: "section 1.4", "gnuplot 5.4", "6.2.2." name one thing, and their
# parts alone ("1", "4") are too common to find it.
_DOTTED = re.compile(r"(?<![\d.])\d+(?:\.\d+)+")


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
    words = _TOKEN.findall(text)
    if CJK_CHAR.search(text):  # most texts have no CJK run to split: one search, not one a word
        words = [t for word in words for t in (_split_cjk(word) if CJK_CHAR.search(word) else [word])]
    return words + _DOTTED.findall(text)
