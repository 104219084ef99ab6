"""What an answer is made of: chunks with their spans, citations with their boxes, the response."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Box = tuple[float, float, float, float]
AnswerMode = Literal["auto", "extractive", "generate"]


class SpanOut(BaseModel):
    block_id: str
    page: int
    bbox: Box = Field(description="0..1, origin top-left of the page as displayed")
    bbox_pt: Box = Field(description="PDF points, origin top-left of the page as displayed")
    char_start: int
    char_end: int


class ChunkOut(BaseModel):
    chunk_id: str
    document_id: str
    filename: str
    text: str
    score: float
    spans: list[SpanOut]


class Citation(BaseModel):
    n: int = Field(description="the [n] marker in the answer")
    document_id: str
    filename: str
    page: int = Field(description="1-based")
    boxes: list[Box] = Field(description="the lines the quote comes from, 0..1, top-left origin")
    boxes_pt: list[Box]
    page_size_pt: tuple[float, float]
    quote: str
    chunk_id: str
    score: float


class QueryResponse(BaseModel):
    query: str
    answer: str | None = Field(description="null when nothing relevant was retrieved")
    citations: list[Citation]
    chunks: list[ChunkOut]
    answer_mode: Literal["extractive", "generated", "not_found"] = "extractive"
