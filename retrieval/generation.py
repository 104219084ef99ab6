"""Generated answers through any OpenAI-compatible chat endpoint, with citations we verify ourselves.

The model sees the retrieved chunks as numbered sources and is asked to mark each sentence with [n].
Models get markers wrong (missing, malformed, pointing at the wrong source), so the markers are only a
hint: every answer sentence is aligned to the stretch of a retrieved chunk that supports it best (its
claimed source first, any source otherwise); markers are repaired, inserted or dropped accordingly, and
a sentence no retrieved text supports keeps no citation. Quotes are cut from the chunks themselves, so
their boxes come from the chunks' spans.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise

import httpx
import numpy as np

from docground.errors import LLMUnavailable

from .answers import Quote, chunk_out, cite, is_relevant, not_found, sentences
from .lexical import STOPWORDS, topic_terms
from .refine import TextLayer
from .schema import QueryResponse
from .store import Hit
from .tokens import terms

NOT_FOUND = "NOT_FOUND"
SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources you are given. Write a short answer. End every "
    "sentence with the number of the source it comes from in square brackets, like [1] or [2]. Do not use "
    f"knowledge from outside the sources. If the sources do not answer the question, reply with exactly {NOT_FOUND}."
)
SOURCE_CHARS = 2400  # of each chunk shown to the model
MAX_SOURCES = 8
# A sentence is supported when most of its topic words (numbers count double) are in the quote, or,
# with an embedder, when words and meaning together say so.
SUPPORT_MIN = 0.6
SUPPORT_MIN_WITH_MEANING = 0.5
MEANING_WEIGHT = 0.4
# A two-sentence quote is chosen over one sentence only when it supports clearly more.
PAIR_GAIN = 0.15
MAX_CITATIONS_PER_SENTENCE = 2
CANDIDATES_EMBEDDED = 6

# [1], [1, 2], [1-3], [Source 1], [ID:1], 【1】, ^1: the forms models actually write.
_MARKER = re.compile(r"\[\s*(?:sources?|source\s*id|id|doc(?:ument)?|ref)?\s*:?\s*"
                     r"(\d+(?:\s*(?:[,;]|-|–|and)\s*\d+)*)\s*\]"
                     r"|【\s*(\d+)\s*】|\^(\d+)", re.IGNORECASE)
_ANSWER_SPLIT = re.compile(r"(?<=[.!?。！？])\s+|\n+")
_NUMBER = re.compile(r"^\d[\d.,]*$")
_WORD_OR_FIGURE = re.compile(r"\d[\d,]*(?:\.\d+)?|[^\W\d_]+")
_UNITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
          "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty")
_TENS = ("thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(_UNITS)} | {w: str(30 + 10 * i) for i, w in enumerate(_TENS)}

Embed = Callable[[list[str]], np.ndarray]


@dataclass
class ChatClient:
    """An OpenAI-compatible /chat/completions endpoint (vLLM, llama.cpp, TGI, OpenAI...)."""

    endpoint: str  # base URL ending in /v1
    model: str
    api_key: str | None = None
    timeout_s: float = 120.0
    max_tokens: int = 512
    temperature: float = 0.0

    @property
    def url(self) -> str:
        return self.endpoint.rstrip("/") + "/chat/completions"

    def _request(self, messages: list[dict], stream: bool) -> dict:
        return {"model": self.model, "messages": messages, "max_tokens": self.max_tokens,
                "temperature": self.temperature, "stream": stream}

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def complete(self, messages: list[dict]) -> str:
        try:
            r = httpx.post(self.url, json=self._request(messages, False), headers=self._headers(),
                           timeout=self.timeout_s)
            r.raise_for_status()
            return r.json()["choices"][0]["message"]["content"] or ""
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            raise LLMUnavailable(f"the language model at {self.endpoint} failed: {_reason(exc)}") from exc

    def stream(self, messages: list[dict]) -> Iterator[str]:
        try:
            with httpx.stream("POST", self.url, json=self._request(messages, True), headers=self._headers(),
                              timeout=self.timeout_s) as r:
                r.raise_for_status()
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    delta = (json.loads(data).get("choices") or [{}])[0].get("delta", {}).get("content")
                    if delta:
                        yield delta
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            raise LLMUnavailable(f"the language model at {self.endpoint} failed: {_reason(exc)}") from exc


def _reason(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def messages(question: str, hits: list[Hit]) -> list[dict]:
    blocks = []
    for n, hit in enumerate(hits[:MAX_SOURCES], start=1):
        p = hit.payload
        pages = ",".join(str(pg) for pg in sorted({s["page"] for s in p.get("spans", [])}))
        blocks.append(f"[{n}] {p.get('filename', '')}, page {pages}\n{p.get('text', '')[:SOURCE_CHARS]}")
    user = "Sources:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


# ---- grounding: answer sentences → verified quotes

@dataclass
class Claim:
    text: str  # the sentence without markers
    sources: list[int]  # 0-based indices of the sources the model named
    separator: str  # what followed the sentence in the answer


def claims(answer: str, source_count: int) -> list[Claim]:
    """The answer's sentences with the sources their markers name; a marker opening a sentence belongs
    to the sentence before it ("... 2004. [1] Next ...")."""
    out: list[Claim] = []
    pos = 0
    for m in list(_ANSWER_SPLIT.finditer(answer)) + [None]:
        end = m.start() if m else len(answer)
        raw = answer[pos:end]
        lead = re.match(r"^(\s*(?:" + _MARKER.pattern + r")\s*)+", raw, re.IGNORECASE)
        if lead and out:
            out[-1].sources += _marker_numbers(lead.group(0), source_count)
            raw = raw[lead.end():]
        text = re.sub(r"\s+([.,;:!?])", r"\1", _MARKER.sub("", raw)).strip()
        text = re.sub(r"\s{2,}", " ", text)
        if text:
            out.append(Claim(text, _marker_numbers(raw, source_count), m.group(0) if m else ""))
        elif out and m:
            out[-1].separator = m.group(0)
        pos = m.end() if m else len(answer)
    return out


def _marker_numbers(text: str, source_count: int) -> list[int]:
    found: list[int] = []
    for m in _MARKER.finditer(text):
        group = next(g for g in m.groups() if g)
        for part in re.split(r"\s*(?:[,;]|and)\s*", group):
            lo, _, hi = re.sub(r"\s*[–-]\s*", "-", part).partition("-")
            if not lo.isdigit():
                continue
            for n in range(int(lo), int(hi) + 1 if hi.isdigit() and int(hi) - int(lo) < 10 else int(lo) + 1):
                if 1 <= n <= source_count and n - 1 not in found:
                    found.append(n - 1)
    return found


class Support:
    """How well a quote supports a sentence: the share of the sentence's topic words (rarer words across
    the sources weigh more, numbers double) the quote holds, blended with meaning when an embedder is given."""

    def __init__(self, quotes: list[Quote], embed: Embed | None):
        self.quotes = quotes
        self.embed = embed
        self.quote_terms = [set(terms(q.text)) for q in quotes]
        self.quote_figures = [figures(q.text, 2) for q in quotes]
        n = len(quotes) or 1
        df: dict[str, int] = {}
        for ts in self.quote_terms:
            for t in ts:
                df[t] = df.get(t, 0) + 1
        self.idf = {t: math.log(1 + n / c) for t, c in df.items()}
        self.default_idf = math.log(1 + n)
        self._embedded: dict[str, np.ndarray] = {}

    def _vectors(self, texts: list[str]) -> np.ndarray:
        """Embeddings, each text embedded once however many sentences it is weighed against."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._embedded]
        if missing:
            self._embedded.update(zip(missing, self.embed(missing), strict=True))
        return np.stack([self._embedded[t] for t in texts])

    def _weight(self, term: str) -> float:
        w = self.idf.get(term, self.default_idf)
        return 2 * w if _NUMBER.match(term) else w

    def figures_hold(self, sentence: str, index: int) -> bool:
        """Each figure of the sentence is in the quote, next to the same unit or subject where the sentence
        names one: a citation never vouches for a figure it lacks ("forty percent" is not "forty stations")."""
        quote = self.quote_figures[index]
        return all(f in quote and (not near or near & quote[f]) for f, near in figures(sentence, 1).items())

    def lexical(self, sentence_terms: set[str], quote_terms: set[str]) -> float:
        total = sum(self._weight(t) for t in sentence_terms)
        return sum(self._weight(t) for t in sentence_terms & quote_terms) / total if total else 0.0

    def scores(self, sentence: str, allowed: list[int]) -> list[tuple[float, int]]:
        """(support, quote index) for the allowed quotes, best first."""
        wanted = topic_terms(sentence)
        allowed = [i for i in allowed if self.figures_hold(sentence, i)]
        if not wanted or not allowed:
            return []
        lex = sorted(((self.lexical(wanted, self.quote_terms[i]), i) for i in allowed), reverse=True)
        if self.embed is None:
            return [(s, i) for s, i in lex if s >= SUPPORT_MIN]
        top = lex[:CANDIDATES_EMBEDDED]
        vectors = self._vectors([sentence] + [self.quotes[i].text for _, i in top])
        cosines = vectors[1:] @ vectors[0]
        blended = [((1 - MEANING_WEIGHT) * s + MEANING_WEIGHT * max(0.0, float(c)), i)
                   for (s, i), c in zip(top, cosines, strict=True)]
        return sorted(((s, i) for s, i in blended if s >= SUPPORT_MIN_WITH_MEANING), reverse=True)


def figures(text: str, reach: int) -> dict[str, set[str]]:
    """The figures a text states (digits or small number words: "twelve" and "12" are one), each with
    the topic words within `reach` words of it: its unit, what it counts."""
    words = [_NUMBER_WORDS.get(w, w) for w in (t.lower().replace(",", "") for t in _WORD_OR_FIGURE.findall(text))]
    out: dict[str, set[str]] = {}
    for i, w in enumerate(words):
        if w[0].isdigit():
            near = words[max(0, i - reach):i] + words[i + 1:i + 1 + reach]
            out.setdefault(w, set()).update(n for n in near if n not in STOPWORDS and not n[0].isdigit())
    return out


@dataclass
class Candidate:
    source: int  # index of the retrieved chunk
    quote: Quote
    pair: bool  # two neighbouring sentences rather than one


def candidate_quotes(hits: list[Hit]) -> list[Candidate]:
    """Every sentence of each source, and every pair of neighbouring sentences."""
    out: list[Candidate] = []
    for src, hit in enumerate(hits):
        ranges = sentences(hit.payload.get("text", ""), hit.payload.get("spans"))
        out += [Candidate(src, Quote(hit, s, e, 0.0), False) for s, e in ranges]
        out += [Candidate(src, Quote(hit, a[0], b[1], 0.0), True) for a, b in pairwise(ranges)]
    return out


def ground(answer: str, hits: list[Hit], embed: Embed | None = None) -> list[tuple[Claim, list[Quote]]]:
    """Each answer sentence with the quotes that verifiably support it (possibly none)."""
    sources = hits[:MAX_SOURCES]
    candidates = candidate_quotes(sources)
    support = Support([c.quote for c in candidates], embed)
    by_source: dict[int, list[int]] = {}
    for i, c in enumerate(candidates):
        by_source.setdefault(c.source, []).append(i)
    out = []
    for claim in claims(answer, len(sources)):
        chosen: list[tuple[float, int]] = []
        for src in claim.sources:  # the sources the model named, where they hold up
            best = _best(support, candidates, claim.text, by_source.get(src, []))
            if best is not None and best[1] not in (i for _, i in chosen):
                chosen.append(best)
        if not chosen:  # a missing or wrong marker: the best support anywhere
            best = _best(support, candidates, claim.text, list(range(len(candidates))))
            chosen = [best] if best is not None else []
        quotes = []
        for score, i in chosen[:MAX_CITATIONS_PER_SENTENCE]:
            q = candidates[i].quote
            quotes.append(Quote(q.hit, q.start, q.end, round(score, 4)))
        out.append((claim, quotes))
    return out


def _best(support: Support, candidates: list[Candidate], sentence: str,
          allowed: list[int]) -> tuple[float, int] | None:
    """The best supporting quote: one sentence unless two neighbouring ones support clearly more."""
    ranked = support.scores(sentence, allowed)
    if not ranked:
        return None
    single = next(((s, i) for s, i in ranked if not candidates[i].pair), None)
    if single is not None and ranked[0][0] - single[0] < PAIR_GAIN:
        return single
    return ranked[0]


def grounded_response(question: str, answer: str, hits: list[Hit], layer: TextLayer | None,
                      embed: Embed | None = None) -> QueryResponse:
    """The model's answer with verified citations renumbered in order of use, or not-found."""
    if not answer.strip() or answer.strip().strip(".").upper().startswith(NOT_FOUND):
        return not_found(question, hits)
    numbers: dict[tuple[str, int, int], int] = {}
    parts: list[str] = []
    citations = []
    for claim, quotes in ground(answer, hits, embed):
        marks = []
        for q in quotes:
            key = (q.hit.id, q.start, q.end)
            if key not in numbers:
                numbers[key] = len(numbers) + 1
                citations += cite(q, numbers[key], layer)
            if f"[{numbers[key]}]" not in marks:
                marks.append(f"[{numbers[key]}]")
        parts.append(claim.text + (" " + "".join(marks) if marks else "") + (claim.separator or " "))
    text = "".join(parts).strip()
    if not text:
        return not_found(question, hits)
    return QueryResponse(query=question, answer=text, citations=citations, chunks=[chunk_out(h) for h in hits],
                         answer_mode="generated")


class Generator:
    """Retrieved chunks → a generated, grounded answer (whole, or streamed as text deltas then the answer)."""

    def __init__(self, client: ChatClient, layer: TextLayer | None = None, embed: Embed | None = None):
        self.client = client
        self.layer = layer
        self.embed = embed

    def answer(self, question: str, hits: list[Hit]) -> QueryResponse:
        if not is_relevant(question, hits):
            return not_found(question, hits)
        text = self.client.complete(messages(question, hits))
        return grounded_response(question, text, hits, self.layer, self.embed)

    def stream(self, question: str, hits: list[Hit]) -> Iterator[tuple[str, dict]]:
        """("delta", {"text"}) events as the model writes, then ("done", response): the done event's answer
        is the one to show, its markers repaired and its citations verified."""
        if not is_relevant(question, hits):
            yield "done", not_found(question, hits).model_dump(mode="json")
            return
        pieces = []
        for delta in self.client.stream(messages(question, hits)):
            pieces.append(delta)
            yield "delta", {"text": delta}
        response = grounded_response(question, "".join(pieces), hits, self.layer, self.embed)
        yield "done", response.model_dump(mode="json")
