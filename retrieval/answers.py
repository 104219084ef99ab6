"""Extractive answers: the query's best-supported sentences, each cited with the boxes of exactly the
text it was cut from. Nothing is highlighted that the quote does not cover, and nothing is cited when
nothing relevant was retrieved.
"""

from __future__ import annotations

from dataclasses import dataclass

from docground.ingest.geometry import to_points

from . import selection
from .refine import TextLayer, covered_spans, quote_boxes
from .schema import ChunkOut, Citation, QueryResponse, SpanOut
from .store import Hit
from .units import units

__all__ = ["Quote", "chunk_out", "cite", "extractive_answer", "is_relevant", "not_found", "sentences"]

MAX_SENTENCES = 3


@dataclass
class Quote:
    """A cited stretch [start, end) of a retrieved chunk's text."""

    hit: Hit
    start: int
    end: int
    score: float

    @property
    def text(self) -> str:
        return self.hit.payload.get("text", "")[self.start:self.end]


def sentences(text: str, spans: list[dict] | None = None) -> list[tuple[int, int]]:
    """Sentence and table-row ranges of chunk text, trimmed of markdown syntax at their ends."""
    return [(u.start, u.end) for u in units(text, spans)]


def is_relevant(query: str, hits: list[Hit]) -> bool:
    """Whether any retrieved chunk answers the query, or all of them are only the nearest noise."""
    return selection.is_relevant(query, selection.candidates(query, hits))


def _page_size(hit: Hit, page: int) -> tuple[float, float]:
    for p in hit.payload.get("page_sizes", []):
        if p["page"] == page:
            return (p["width_pt"], p["height_pt"])
    return (0.0, 0.0)


def _page_parts(payload: dict, start: int, end: int) -> dict[int, str]:
    """The text of chunk range [start, end) that lies on each page, from the spans it covers."""
    ranges: dict[int, tuple[int, int]] = {}
    for span, lo, hi in covered_spans(payload, start, end):
        a, b = ranges.get(span["page"], (lo, hi))
        ranges[span["page"]] = (min(a, lo), max(b, hi))
    text = payload.get("text", "")
    return {page: text[a:b] for page, (a, b) in ranges.items()}


def cite(quote: Quote, n: int, layer: TextLayer | None) -> list[Citation]:
    """The citation [n] of a quote: one per page it lies on, with the boxes of exactly its text; a quote
    over a page break is cut there, each page's citation quoting what that page holds."""
    p = quote.hit.payload
    out = []
    pages = quote_boxes(p, quote.start, quote.end, layer)
    parts = _page_parts(p, quote.start, quote.end) if len(pages) > 1 else {}
    for page, boxes in pages.items():
        size = _page_size(quote.hit, page)
        out.append(Citation(
            n=n, document_id=p.get("document_id", ""), filename=p.get("filename", ""), page=page, boxes=boxes,
            boxes_pt=[to_points(b, *size) for b in boxes], page_size_pt=size, quote=parts.get(page, quote.text),
            chunk_id=quote.hit.id, score=round(quote.score, 4),
        ))
    return out


def chunk_out(hit: Hit) -> ChunkOut:
    p = hit.payload
    sizes = {s["page"]: (s["width_pt"], s["height_pt"]) for s in p.get("page_sizes", [])}
    spans = [SpanOut(block_id=s["block_id"], page=s["page"], bbox=tuple(s["bbox"]),
                     bbox_pt=to_points(tuple(s["bbox"]), *sizes.get(s["page"], (0.0, 0.0))),
                     char_start=s["char_start"], char_end=s["char_end"]) for s in p.get("spans", [])]
    return ChunkOut(chunk_id=hit.id, document_id=p.get("document_id", ""), filename=p.get("filename", ""),
                    text=p.get("text", ""), score=round(hit.score, 6), spans=spans)


def not_found(query: str, hits: list[Hit]) -> QueryResponse:
    return QueryResponse(query=query, answer=None, citations=[], chunks=[chunk_out(h) for h in hits],
                         answer_mode="not_found")


def extractive_answer(query: str, hits: list[Hit], layer: TextLayer | None = None,
                      top_k: int | None = None) -> QueryResponse:
    """The units that answer, the best first, each cited; their chunks first among the hits (top_k kept)."""
    found = selection.candidates(query, hits)
    keep = top_k or len(hits)
    if not selection.is_relevant(query, found):
        return not_found(query, hits[:keep])
    best = selection.chosen(found, MAX_SENTENCES)
    ranked = selection.rerank(hits, best)[:keep]
    if not best:
        return not_found(query, ranked)
    citations: list[Citation] = []
    parts: list[str] = []
    for n, c in enumerate(best, start=1):
        quote = Quote(c.hit, c.unit.start, c.unit.end, c.score)
        parts.append(f"{quote.text} [{n}]")
        citations += cite(quote, n, layer)
    return QueryResponse(query=query, answer=" ".join(parts), citations=citations,
                         chunks=[chunk_out(h) for h in ranked], answer_mode="extractive")
