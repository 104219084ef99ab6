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
from docground.webhooks import CALLBACK_URL_PATTERN, MAX_URL_CHARS
from docground.webhooks import DocumentEvent as DocumentEvent

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
UPLOAD_MEDIA_TYPES = (
    "application/pdf", "image/png", "image/jpeg", "image/tiff", "image/webp",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.presentation",
    "application/vnd.oasis.opendocument.spreadsheet", "application/rtf", "application/msword",
    "application/vnd.ms-powerpoint", "application/vnd.ms-excel", "text/html", "text/markdown", "text/plain",
)
# Declared here, enforced (with a message saying what is wrong) by docground/webhooks.py: check_callback_url,
# which also refuses hosts that are or resolve to private, loopback or link-local addresses.
CALLBACK_URL_DESCRIPTION = ("an http(s) URL POSTed (signed, README: \"Webhooks\") when the document becomes ready "
                            "or failed; hosts on private, loopback or link-local addresses are refused unless the "
                            "operator allows them")
CallbackUrl = Annotated[str, Field(max_length=MAX_URL_CHARS,
                                   json_schema_extra={"format": "uri", "pattern": CALLBACK_URL_PATTERN})]
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
    callback_url: CallbackUrl | None = Field(None, description="told of every document of the knowledge base "
                                             "that becomes ready or failed: " + CALLBACK_URL_DESCRIPTION)


class KnowledgeBaseUpdate(RequestModel):
    """The settings to change; a field left out stays as it is."""

    callback_url: CallbackUrl | None = Field(None, description="null removes it; " + CALLBACK_URL_DESCRIPTION)


class DocumentUpload(RequestModel):
    file: UploadFile = Field(description="a PDF, a page image (PNG, JPEG, TIFF, WebP), an Office document (DOCX, "
                                         "PPTX, XLSX, ODT, ODP, ODS, RTF, DOC, PPT, XLS), a web page, Markdown or "
                                         "UTF-8 text, not empty; the type is read from the content, not the name",
                             json_schema_extra={"format": "binary", "minLength": 1})
    callback_url: CallbackUrl = Field(None, description="this upload's own callback, besides the knowledge "
                                      "base's: " + CALLBACK_URL_DESCRIPTION)


class KnowledgeBaseKey(BaseModel):
    name: str
    api_key: str = Field(description="shown once: only its hash is stored")


class KnowledgeBaseInfo(BaseModel):
    name: str
    documents: int
    has_api_key: bool
    callback_url: str | None = Field(None, description="told of every document that becomes ready or failed")
    has_webhook_secret: bool = Field(False, description="webhooks are signed with a secret already made")


class WebhookSecret(BaseModel):
    name: str
    secret: str = Field(description="shown once: webhooks are signed with it from now on (README: \"Webhooks\")")


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
