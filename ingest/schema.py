"""The contracts between the stages: page layouts made of blocks, and chunks made of spans.

Coordinates: every box is [x0, y0, x1, y1] normalized to 0..1, origin at the top-left of the page as
displayed (rotation applied). The page's size in PDF points travels with the layout so that APIs can
also answer in points. Engines convert their native form into this one at their boundary, once.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

BBox = tuple[float, float, float, float]


class BlockKind(StrEnum):
    title = "title"
    heading = "heading"
    text = "text"
    list = "list"
    table = "table"
    figure = "figure"
    caption = "caption"
    formula = "formula"
    code = "code"
    page_header = "page_header"
    page_footer = "page_footer"
    page_number = "page_number"
    footnote = "footnote"


# Page furniture: tagged so that it stays out of chunks and answers.
FURNITURE = frozenset({BlockKind.page_header, BlockKind.page_footer, BlockKind.page_number})


class Line(BaseModel):
    """A line of a block: its box and where its text sits in the block's markdown."""

    bbox: BBox
    start: int
    end: int


class Block(BaseModel):
    id: str
    page: int = Field(description="1-based page number")
    kind: BlockKind
    markdown: str
    bbox: BBox
    lines: list[Line] = Field(default_factory=list, description="line boxes, where the engine has them")
    level: int | None = Field(None, description="heading level (1 = top)")
    confidence: float | None = None


class PageOutcome(StrEnum):
    """What became of a page; `PageLayout.reason` says why, for people."""

    READ = "read"  # the engine the page was routed to read it
    FALLBACK = "fallback"  # that engine failed, another one read it
    SKIPPED = "skipped"  # kept from every engine (the page check refused it: providers/guard.py)
    UNREAD = "unread"  # no engine could read it (no OCR engine for a scan, or every engine failed)


class PageLayout(BaseModel):
    page: int
    width_pt: float
    height_pt: float
    blocks: list[Block] = Field(default_factory=list)
    engine: str
    engine_version: str
    outcome: PageOutcome = PageOutcome.READ
    refusal: str | None = Field(None, description="the error code of a skipped page's refusal")
    reason: str = Field("", description="why this engine produced the page")

    @property
    def size_pt(self) -> tuple[float, float]:
        return (self.width_pt, self.height_pt)


class Span(BaseModel):
    """A run of a chunk's text and the page region it came from."""

    block_id: str
    page: int
    bbox: BBox
    char_start: int
    char_end: int


class PageSize(BaseModel):
    page: int
    width_pt: float
    height_pt: float


class Chunk(BaseModel):
    id: str
    document_id: str
    index: int
    text: str
    spans: list[Span]
    headings: list[str] = Field(default_factory=list, description="section path above the chunk")
    page_sizes: list[PageSize] = Field(default_factory=list)

    @property
    def pages(self) -> list[int]:
        return sorted({s.page for s in self.spans})

    def embedding_text(self) -> str:
        """The text the embedder sees: the section path gives a chunk without its own heading context."""
        path = " > ".join(h for h in self.headings if h and h not in self.text[: len(h) + 8])
        return f"{path}\n{self.text}" if path else self.text


class IngestResult(BaseModel):
    filename: str
    document_id: str | None
    pages: int = 0
    chunks: int = 0
    status: str
    error: str | None = None
    error_code: str | None = None
