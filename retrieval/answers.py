"""Extractive answers: the query's best-supported sentences, each cited with the boxes of exactly the
lines it was cut from. Nothing is highlighted that the quote does not cover.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from docground.api.models import ChunkOut, Citation, QueryResponse, SpanOut
from docground.ingest.geometry import to_points

from .sparse import terms
from .store import Hit

MAX_SENTENCES = 3
CHUNKS_READ = 3
MIN_SENTENCE_CHARS = 12
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])|(?<=[。！？])|\n+")
_MARKUP = re.compile(r"^[#>\-*\s|]+|[\s|]+$")


@dataclass
class Sentence:
    hit: Hit
    rank: int
    start: int
    end: int
    score: float


def sentences(text: str) -> list[tuple[int, int]]:
    """Sentence and line ranges of chunk text, trimmed of markdown syntax at their ends."""
    out, pos = [], 0
    for m in list(_SENTENCE_END.finditer(text)) + [None]:
        end = m.start() if m else len(text)
        seg = text[pos:end]
        lead = len(seg) - len(seg.lstrip("#>-*| \t"))
        trail = len(seg) - len(seg.rstrip("| \t"))
        s, e = pos + lead, end - trail
        if e - s >= MIN_SENTENCE_CHARS:
            out.append((s, e))
        pos = m.end() if m else len(text)
    return out


def _score(query_terms: dict[str, float], sentence: str) -> float:
    found = set(terms(sentence))
    return sum(w for t, w in query_terms.items() if t in found)


def _query_weights(query: str, hits: list[Hit]) -> dict[str, float]:
    """Rarer query terms weigh more, judged by how many retrieved chunks hold them."""
    qterms = set(terms(query))
    docs = [set(terms(h.payload.get("text", ""))) for h in hits]
    n = max(len(docs), 1)
    return {t: math.log(1 + n / (1 + sum(1 for d in docs if t in d))) + 0.1 for t in qterms}


def _boxes(hit: Hit, start: int, end: int) -> dict[int, list[tuple]]:
    """Boxes of the spans the range [start, end) touches, page by page; a span counts only if the quote
    covers real text of it, not just the separator next to it."""
    text = hit.payload.get("text", "")
    pages: dict[int, list[tuple]] = {}
    for span in hit.payload.get("spans", []):
        lo, hi = max(start, span["char_start"]), min(end, span["char_end"])
        if hi > lo and text[lo:hi].strip():
            box = tuple(span["bbox"])
            if box not in pages.setdefault(span["page"], []):
                pages[span["page"]].append(box)
    return pages


def _page_size(hit: Hit, page: int) -> tuple[float, float]:
    for p in hit.payload.get("page_sizes", []):
        if p["page"] == page:
            return (p["width_pt"], p["height_pt"])
    return (0.0, 0.0)


def chunk_out(hit: Hit) -> ChunkOut:
    p = hit.payload
    sizes = {s["page"]: (s["width_pt"], s["height_pt"]) for s in p.get("page_sizes", [])}
    spans = [SpanOut(block_id=s["block_id"], page=s["page"], bbox=tuple(s["bbox"]),
                     bbox_pt=to_points(tuple(s["bbox"]), *sizes.get(s["page"], (0.0, 0.0))),
                     char_start=s["char_start"], char_end=s["char_end"]) for s in p.get("spans", [])]
    return ChunkOut(chunk_id=hit.id, document_id=p.get("document_id", ""), filename=p.get("filename", ""),
                    text=p.get("text", ""), score=round(hit.score, 6), spans=spans)


def extractive_answer(query: str, hits: list[Hit]) -> QueryResponse:
    weights = _query_weights(query, hits)
    candidates: list[Sentence] = []
    for rank, hit in enumerate(hits[:CHUNKS_READ]):
        text = hit.payload.get("text", "")
        for s, e in sentences(text):
            score = _score(weights, text[s:e])
            if score > 0:
                candidates.append(Sentence(hit, rank, s, e, score * (1.0 - 0.1 * rank)))
    chosen = sorted(candidates, key=lambda c: -c.score)[:MAX_SENTENCES]
    best = chosen[0].score if chosen else 0.0
    chosen = [c for c in chosen if c.score >= 0.5 * best]
    chosen.sort(key=lambda c: (c.rank, c.start))

    citations: list[Citation] = []
    parts: list[str] = []
    for n, c in enumerate(chosen, start=1):
        quote = c.hit.payload["text"][c.start:c.end]
        parts.append(f"{quote} [{n}]")
        for page, boxes in _boxes(c.hit, c.start, c.end).items():
            size = _page_size(c.hit, page)
            citations.append(Citation(
                n=n, document_id=c.hit.payload.get("document_id", ""), filename=c.hit.payload.get("filename", ""),
                page=page, boxes=boxes, boxes_pt=[to_points(b, *size) for b in boxes], page_size_pt=size,
                quote=quote, chunk_id=c.hit.id, score=round(c.score, 4),
            ))
    return QueryResponse(query=query, answer=" ".join(parts) if parts else None, citations=citations,
                         chunks=[chunk_out(h) for h in hits])
