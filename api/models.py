"""Request and response models shared by the server, the CLI's --json output and the Python client."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path, Query, UploadFile
from pydantic import BaseModel, ConfigDict, Field

# The layout JSON's model lives with its renderer (one for the API, `convert` and `export`).
from docground.ingest.renderers import DocumentLayout as DocumentLayout
from docground.registry import KB_NAME

Box = tuple[float, float, float, float]
AnswerMode = Literal["auto", "extractive", "generate"]

KB_NAME_RULE = "1-64 characters: letters, digits, '_', '-', '.', starting with a letter or digit"
KbName = Annotated[str, Path(min_length=1, max_length=64, pattern=KB_NAME.pattern,
                             description="the knowledge base's name: " + KB_NAME_RULE)]
# What a page image may draw: x0,y0,x1,y1 corners in 0..1 (any two opposite corners), boxes joined by ';'.
_UNIT = r"(?:0(?:\.[0-9]{1,8})?|1(?:\.0{1,8})?)"
_BOX = rf"{_UNIT},{_UNIT},{_UNIT},{_UNIT}"
BOXES_PATTERN = rf"^{_BOX}(?:;{_BOX}){{0,63}}$"
Boxes = Annotated[str | None, Query(pattern=BOXES_PATTERN, max_length=4096,
                                    description="boxes to draw: x0,y0,x1,y1;... (0..1, top-left origin)")]
# Content sniffing decides (ingest/providers/open.py); the declared part type is informative.
UPLOAD_MEDIA_TYPES = ("application/pdf", "image/png", "image/jpeg", "image/tiff", "image/webp")
MAX_QUERY_CHARS = 4000
MAX_TOP_K = 50


class RequestModel(BaseModel):
    """Every request body refuses fields it does not know (422 invalid_request): a misspelt option is an
    error, never silently ignored. One rule for the whole API."""

    model_config = ConfigDict(extra="forbid")


class QueryRequest(RequestModel):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    top_k: int = Field(5, ge=1, le=MAX_TOP_K)
    mode: AnswerMode = Field("auto", description="auto: generate when an LLM endpoint is configured, else extractive")
    stream: bool = Field(False, description="answer as server-sent events: delta events, then one done event")


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


class IngestResult(BaseModel):
    filename: str
    document_id: str | None
    pages: int = 0
    chunks: int = 0
    status: str
    error: str | None = None
    error_code: str | None = None


class ErrorBody(BaseModel):
    """Every error the API answers: a stable machine-readable code (README: "Error codes") and a message
    for people."""

    code: str = Field(description="stable, machine-readable: not_found, invalid_request, ...")
    message: str = Field(description="for people; wording may change")


class KnowledgeBaseCreate(RequestModel):
    name: str = Field(min_length=1, max_length=64, pattern=KB_NAME.pattern, description=KB_NAME_RULE)


class DocumentUpload(RequestModel):
    file: UploadFile = Field(description="a PDF or a page image (PNG, JPEG, TIFF, WebP), not empty; the type is "
                                         "read from the content, not the name",
                             json_schema_extra={"format": "binary", "minLength": 1})


class KnowledgeBaseKey(BaseModel):
    name: str
    api_key: str = Field(description="shown once: only its hash is stored")


class KnowledgeBaseInfo(BaseModel):
    name: str
    documents: int
    has_api_key: bool


DocumentState = Literal["queued", "processing", "ready", "failed"]


class DocumentAccepted(BaseModel):
    document_id: str = Field(description="derived from the file's content within its knowledge base")
    status: DocumentState


class DocumentStatus(BaseModel):
    document_id: str
    kb: str
    filename: str
    status: DocumentState
    pages_total: int
    pages_done: int
    chunks: int
    error: str | None = None
    error_code: str | None = None


class DocumentList(BaseModel):
    documents: list[DocumentStatus]


class PageInfo(BaseModel):
    page: int = Field(description="1-based")
    status: str = Field(description="pending, done or failed")
    engine: str | None = Field(None, description="the engine that produced the page's layout")
    engine_version: str | None = None
    reason: str | None = Field(None, description="why that engine: the routing decision and any retries")
    blocks: int = 0
    error: str | None = None


class DocumentPages(BaseModel):
    document_id: str
    pages: list[PageInfo]


class DocumentChunk(BaseModel):
    chunk_id: str
    index: int = Field(description="the chunk's place in the document, from 0")
    text: str
    headings: list[str] = Field(description="the section path above the chunk")
    pages: list[int]
    spans: list[SpanOut] = Field(description="where each run of the text is on its page")


class DocumentChunks(BaseModel):
    document_id: str
    chunks: list[DocumentChunk]


ContentFormat = Literal["markdown", "json"]


class DocumentDeleted(BaseModel):
    document_id: str
    deleted: bool = True
