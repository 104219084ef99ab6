"""Layouts → chunks sized to the embedder's window, each carrying the spans its text came from.

The unit of packing is a line (a table row, a wrapped line of a paragraph) or, for engines without
line boxes, a sentence of a block. A chunk's text is cut from the blocks' own markdown, so each unit's
characters land at a known offset in the chunk and become one span with the unit's box. Headings open
a chunk and give it its section path; tables stay whole unless a table alone overflows, and then each
piece repeats the header row; overlap repeats the previous chunk's last lines with their spans.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .schema import FURNITURE, BBox, Block, BlockKind, Chunk, PageLayout, PageSize, Span

CHUNK_NAMESPACE = uuid.UUID("9d3c0c2e-7c1f-4f55-9a57-2a0d2f8b1e64")
HEADINGS = (BlockKind.title, BlockKind.heading)
_SENTENCE = re.compile(r"(?<=[.!?。！？；;])\s+|(?<=[。！？])")
_ENDS_SENTENCE = re.compile(r"[.!?:。！？：][\"'”’)\]）」]*\s*$")

TokenCounter = Callable[[Sequence[str]], list[int]]


@dataclass
class ChunkerConfig:
    max_tokens: int = 224
    overlap_tokens: int = 32
    # A chunk that would open mid-sentence repeats more of the previous one, back to the sentence's start,
    # up to this much: a sentence cut in two is citable in neither chunk.
    sentence_overlap_tokens: int = 64
    min_tokens: int = 48  # a heading opens a new chunk only once the current one holds this much


@dataclass(eq=False)
class Unit:
    block: Block
    seq: int  # place among its block's units
    last: bool
    start: int  # the unit's text in block.markdown
    end: int
    bbox: BBox
    tokens: int = 0

    @property
    def is_table(self) -> bool:
        """A table packed row by row (a table without row boxes is one unit, whole)."""
        return self.block.kind == BlockKind.table and bool(self.block.lines)

    @property
    def line_start(self) -> int:
        return self.start - 2 if self.is_table else self.start  # a table row's "| "

    @property
    def line_end(self) -> int:
        return self.end + 2 if self.is_table else self.end


def _units(block: Block) -> list[tuple[int, int, BBox]]:
    if block.lines:
        return [(ln.start, ln.end, ln.bbox) for ln in block.lines]
    text = block.markdown
    if block.kind == BlockKind.table:
        return [(0, len(text), block.bbox)]
    pieces, pos = [], 0
    for m in _SENTENCE.finditer(text):
        if m.end() > pos:
            pieces.append((pos, m.start() if m.start() > pos else m.end()))
            pos = m.end()
    pieces.append((pos, len(text)))
    return [(s, e, block.bbox) for s, e in pieces if text[s:e].strip()]


def units_of(layouts: Sequence[PageLayout], count_tokens: TokenCounter) -> list[Unit]:
    units: list[Unit] = []
    for layout in layouts:
        for block in layout.blocks:
            if block.kind in FURNITURE or not block.markdown.strip():
                continue
            spans = _units(block)
            units += [Unit(block, i, i == len(spans) - 1, s, e, b) for i, (s, e, b) in enumerate(spans)]
    for u, n in zip(units, count_tokens([u.block.markdown[u.start:u.end] for u in units]), strict=True):
        u.tokens = max(1, n)
    return units


@dataclass
class _Draft:
    units: list[Unit] = field(default_factory=list)
    headings: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(u.tokens for u in self.units)


def _runs(units: list[Unit]) -> list[list[Unit]]:
    """Maximal runs of consecutive units of one block: each run is one contiguous cut of its markdown."""
    runs: list[list[Unit]] = []
    for u in units:
        if runs and runs[-1][-1].block is u.block and u.seq == runs[-1][-1].seq + 1:
            runs[-1].append(u)
        else:
            runs.append([u])
    return runs


def _table_rule(markdown: str) -> str:
    columns = markdown.split("\n", 1)[0].count(" | ") + 1
    return "| " + " | ".join("---" for _ in range(columns)) + " |"


def _render(units: list[Unit]) -> tuple[str, list[Span]]:
    """Chunk text cut from the blocks' markdown, and a span per unit at its offset in that text."""
    text = ""
    spans: list[Span] = []
    prev: list[Unit] | None = None
    for run in _runs(units):
        first, last = run[0], run[-1]
        md = first.block.markdown
        if prev is not None:
            if prev[-1].block is not first.block:
                text += "\n\n"
            elif first.is_table and prev[-1].seq == 0:
                text += "\n" + _table_rule(md) + "\n"  # a repeated header row needs its rule again
            else:
                text += "\n"
        cut_start = 0 if first.seq == 0 else first.line_start
        cut_end = len(md) if last.last else last.line_end
        base = len(text) - cut_start
        text += md[cut_start:cut_end]
        spans += [Span(block_id=u.block.id, page=u.block.page, bbox=u.bbox,
                       char_start=base + u.start, char_end=base + u.end) for u in run]
        prev = run
    return text, spans


class Chunker:
    def __init__(self, config: ChunkerConfig, count_tokens: TokenCounter):
        self.config = config
        self.count_tokens = count_tokens

    def chunk(self, layouts: Sequence[PageLayout], document_id: str, fingerprint: str) -> list[Chunk]:
        drafts = _Packer(self.config).pack(units_of(layouts, self.count_tokens))
        sizes = {lay.page: PageSize(page=lay.page, width_pt=lay.width_pt, height_pt=lay.height_pt) for lay in layouts}
        chunks = []
        for i, d in enumerate(drafts):
            text, spans = _render(d.units)
            pages = sorted({s.page for s in spans})
            chunks.append(Chunk(
                id=chunk_id(document_id, fingerprint, i), document_id=document_id, index=i, text=text,
                spans=spans, headings=d.headings, page_sizes=[sizes[p] for p in pages],
            ))
        return chunks


class _Packer:
    def __init__(self, config: ChunkerConfig):
        self.cfg = config
        self.drafts: list[_Draft] = []
        self.path: list[tuple[int, str]] = []
        self.cur = _Draft()

    def pack(self, units: list[Unit]) -> list[_Draft]:
        i = 0
        while i < len(units):
            u = units[i]
            if u.block.kind in HEADINGS and u.seq == 0:
                self._open_section(u)
            if u.is_table:
                rows = [x for x in units[i:i + len(u.block.lines)] if x.block is u.block]
                self._add_table(rows)
                i += len(rows)
                continue
            if self.cur.units and self.cur.tokens + u.tokens > self.cfg.max_tokens:
                self._flush(overlap=True, following=u)
            self.cur.units.append(u)
            i += 1
        self._flush(overlap=False)
        return self.drafts

    def _open_section(self, heading: Unit) -> None:
        cur = self.cur
        if cur.tokens >= self.cfg.min_tokens or (cur.units and cur.tokens + heading.tokens > self.cfg.max_tokens):
            self._flush(overlap=False)
        level = 0 if heading.block.kind == BlockKind.title else (heading.block.level or 2)
        self.path = [(lv, h) for lv, h in self.path if lv < level] + [(level, _heading_text(heading.block))]
        if not self.cur.units:
            self.cur.headings = [h for _, h in self.path[:-1]]

    def _flush(self, overlap: bool, following: Unit | None = None) -> None:
        done = self.cur
        if not done.units:
            return
        self.drafts.append(done)
        carry: list[Unit] = []
        if overlap:
            units = done.units
            carry = self._carried(units, self.cfg.overlap_tokens)
            opening = carry[0] if carry else following
            before = units[-len(carry) - 1] if len(carry) < len(units) else None
            if opening is not None and _mid_sentence(before, opening):
                room = self.cfg.max_tokens - (following.tokens if following else 0)
                longer = self._carried(units[1:], min(self.cfg.sentence_overlap_tokens, room))
                for n in range(len(carry) + 1, len(longer) + 1):  # back to the sentence's first line
                    if not _mid_sentence(units[-n - 1], units[-n]):
                        carry = units[-n:]
                        break
        self.cur = _Draft(units=carry, headings=[h for _, h in self.path])

    def _carried(self, units: list[Unit], budget: int) -> list[Unit]:
        """The last lines of a chunk, up to `budget` tokens, never a table's or a heading's."""
        carry: list[Unit] = []
        for u in reversed(units):
            if u.is_table or u.block.kind in HEADINGS or sum(c.tokens for c in carry) + u.tokens > budget:
                break
            carry.insert(0, u)
        return carry

    def _add_table(self, rows: list[Unit]) -> None:
        """A table stays whole in one chunk; only a table too big for any chunk is cut, header repeated."""
        total = sum(r.tokens for r in rows)
        if self.cur.units and self.cur.tokens + total > self.cfg.max_tokens:
            self._flush(overlap=False)
        if total <= self.cfg.max_tokens:
            self.cur.units.extend(rows)
            return
        header = rows[0]
        for row in rows:
            if self.cur.units and self.cur.tokens + row.tokens > self.cfg.max_tokens:
                self._flush(overlap=False)
                self.cur.units.append(header)
            self.cur.units.append(row)


def _mid_sentence(prev: Unit | None, unit: Unit) -> bool:
    """Whether `unit` goes on with a sentence that `prev`, the line before it in its block, began."""
    if prev is None or prev.block is not unit.block or unit.seq == 0:
        return False
    return not _ENDS_SENTENCE.search(prev.block.markdown[prev.start:prev.end])


def _heading_text(block: Block) -> str:
    return block.markdown.lstrip("#").strip()


def chunk_id(document_id: str, fingerprint: str, index: int) -> str:
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{document_id}/{fingerprint}/{index}"))


def fingerprint(*parts: object) -> str:
    """A short hash of everything that shapes a document's chunks (engines, chunker, embedder)."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]
