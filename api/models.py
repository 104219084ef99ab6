"""Request and response models shared by the server, the CLI's --json output and the Python client."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path, Query, UploadFile
from pydantic import BaseModel, ConfigDict, Field

# The domain types the responses are made of live in the core (the layout JSON's model with its renderer,
# one for the API, `convert` and `export`); the HTTP schema is built from them.
from docground.ingest.renderers import DocumentLayout as DocumentLayout
from docground.ingest.schema import IngestResult as IngestResult
from docground.registry import KB_NAME
from docground.retrieval.schema import AnswerMode as AnswerMode
from docground.retrieval.schema import Box as Box
from docground.retrieval.schema import ChunkOut as ChunkOut
from docground.retrieval.schema import Citation as Citation
from docground.retrieval.schema import QueryResponse as QueryResponse
from docground.retrieval.schema import SpanOut as SpanOut

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
