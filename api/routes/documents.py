"""Documents: upload into a knowledge base (202, the work goes to a runner), status, progress as
server-sent events, listing, deletion, and a ready document's content: its reading-order markdown or
layout JSON (rendered by ingest/renderers.py, as `docground convert` renders), figure crops and chunks.

Uploads go to the app's runner (`app.state.runner`, docground/workers/runner.py, started by the app's
lifespan in api/app.py): Celery workers when DOCGROUND_BROKER_URL is set, else threads of this process.
Authentication and tenant scope come from the app-wide guard (api/auth.py), which scopes these routes by
their `kb` and `document_id` path parameters.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, File, Header, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from docground.errors import NotFound
from docground.ingest.geometry import to_points
from docground.ingest.renderers import FigureLink, document_layout, document_markdown
from docground.ingest.schema import Block, Chunk
from docground.registry import Document

from .. import models
from ..errors import errors
from ..models import (
    UPLOAD_MEDIA_TYPES,
    ContentFormat,
    DocumentAccepted,
    DocumentChunk,
    DocumentChunks,
    DocumentLayout,
    DocumentPages,
    DocumentStatus,
    DocumentUpload,
    KbName,
    PageInfo,
    SpanOut,
)

EVENT_POLL_S = 0.25
KEEPALIVE_S = 15.0
MAX_IDEMPOTENCY_KEY = 255
# Each server-sent event (Open API before 3.2: the media type's schema describes one event): its name and
# its data, a JSON object (the document's status; for `error`, a code and a message).
SSE = {"text/event-stream": {"schema": {
    "type": "object", "required": ["event", "data"],
    "properties": {"event": {"type": "string", "enum": ["progress", "done", "error"]},
                   "data": {"type": "string", "contentMediaType": "application/json"}}}}}
# Links let generated clients (and schemathesis' stateful runs) follow an accepted document.
DOCUMENT_LINKS = {"links": {
    op: {"operationId": op, "parameters": {"document_id": "$response.body#/document_id"}}
    for op in ("get_document", "document_pages", "document_content", "document_chunks", "document_events",
               "delete_document")}}


router = APIRouter(tags=["documents"])


def status_of(doc: Document) -> DocumentStatus:
    return DocumentStatus(document_id=doc.id, kb=doc.kb, filename=doc.filename, status=doc.status,
                          pages_total=doc.pages_total, pages_done=doc.pages_done, chunks=doc.chunks,
                          error=doc.error, error_code=doc.error_code)


def _document(request: Request, document_id: str) -> Document:
    doc = request.app.state.service.registry.document(document_id)
    if doc is None:
        raise NotFound(f"document {document_id!r} does not exist")
    return doc


@router.post("/v1/knowledge-bases/{kb}/documents", response_model=DocumentAccepted, status_code=202,
             operation_id="upload_document",
             responses={202: DOCUMENT_LINKS, **errors(400, 404, 409, 413, 415, 422, 503, 507)},
             openapi_extra={"requestBody": {"content": {"multipart/form-data": {
                 "encoding": {"file": {"contentType": ", ".join(UPLOAD_MEDIA_TYPES)}}}}}})
async def upload(kb: KbName, request: Request, form: Annotated[DocumentUpload, File()],
                 idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1,
                                                               max_length=MAX_IDEMPOTENCY_KEY)] = None
                 ) -> DocumentAccepted:
    """Accept a file for ingestion: a PDF, a page image (PNG, JPEG, TIFF, WebP), an Office document (DOCX,
    PPTX, XLSX, ODT, ODP, ODS, RTF, DOC, PPT, XLS), a web page, Markdown or plain text, its type read from
    the content. Office, web and text documents are converted to PDF here, before the answer (a few
    seconds). The same file again (or the same Idempotency-Key) answers with the same document and starts
    no new work; the same key with another file is a 409. A `callback_url` is POSTed a signed event when
    the document becomes ready or failed (at once if it already is)."""
    file = form.file
    data = await file.read()
    service = request.app.state.service
    registration = await run_in_threadpool(service.register, kb, file.filename or "upload", data, idempotency_key,
                                           form.callback_url)
    if registration.created:
        await run_in_threadpool(request.app.state.runner.submit, registration.job.id)
    return DocumentAccepted(document_id=registration.document.id, status=registration.document.status)


@router.get("/v1/documents/{document_id}", response_model=DocumentStatus, operation_id="get_document",
            responses=errors(404))
def get_document(document_id: str, request: Request) -> DocumentStatus:
    return status_of(_document(request, document_id))


@router.get("/v1/documents/{document_id}/pages", response_model=DocumentPages, operation_id="document_pages",
            responses=errors(404))
def document_pages(document_id: str, request: Request) -> DocumentPages:
    """Each page's state, and which engine produced it and why (text layer, OCR, vision model, fallbacks)."""
    doc = _document(request, document_id)
    pages = request.app.state.service.registry.pages(doc.id)
    return DocumentPages(document_id=doc.id, pages=[PageInfo.model_validate(p, from_attributes=True) for p in pages])


@router.get("/v1/documents/{document_id}/content", response_model=DocumentLayout, operation_id="document_content",
            responses={200: {"content": {"text/markdown": {"schema": {"type": "string"}}},
                             "description": "format=markdown: the reading-order markdown; format=json: the layout"},
                       **errors(404, 409, 422, 500)})
def document_content(document_id: str, request: Request,
                     content_format: ContentFormat = Query("markdown", alias="format")) -> Response:
    """A ready document's content. markdown: reading order, page markers (`<!-- page N -->`), tables as
    the engine wrote them, formulas as LaTeX, figures linked to their crops. json: pages → blocks with
    kind, boxes (0..1 and points), line boxes, markdown, and each page's engine and why."""
    service = request.app.state.service
    layouts = service.document_layouts(document_id)
    link = figure_links(document_id, service)
    if content_format == "json":
        return Response(document_layout(document_id, layouts, link).model_dump_json(), media_type="application/json")
    return Response(document_markdown(layouts, page_markers=True, figure_link=link),
                    media_type="text/markdown; charset=utf-8")


def figure_links(document_id: str, service) -> FigureLink:
    def link(block: Block) -> str | None:
        if service.figure_file(document_id, block.id) is None:
            return None
        return f"/v1/documents/{document_id}/figures/{block.id}"

    return link


@router.get("/v1/documents/{document_id}/figures/{block_id}", response_class=FileResponse, operation_id="figure",
            responses={200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                             "description": "the figure's crop"}, **errors(404)})
def figure(document_id: str, block_id: str, request: Request) -> FileResponse:
    path = request.app.state.service.figure_file(_document(request, document_id).id, block_id)
    if path is None:
        raise NotFound(f"document {document_id!r} has no figure {block_id!r}")
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/v1/documents/{document_id}/chunks", response_model=DocumentChunks, operation_id="document_chunks",
            responses=errors(404, 409))
def document_chunks(document_id: str, request: Request) -> DocumentChunks:
    """A ready document's chunks in order, as they are indexed: text and the spans it came from."""
    chunks = request.app.state.service.document_chunks(document_id)
    return DocumentChunks(document_id=document_id, chunks=[chunk_out(c) for c in chunks])


def chunk_out(chunk: Chunk) -> DocumentChunk:
    sizes = {p.page: (p.width_pt, p.height_pt) for p in chunk.page_sizes}
    spans = [SpanOut(block_id=s.block_id, page=s.page, bbox=s.bbox, bbox_pt=to_points(s.bbox, *sizes[s.page]),
                     char_start=s.char_start, char_end=s.char_end) for s in chunk.spans]
    return DocumentChunk(chunk_id=chunk.id, index=chunk.index, text=chunk.text, headings=chunk.headings,
                         pages=chunk.pages, spans=spans)


@router.get("/v1/knowledge-bases/{kb}/documents", response_model=models.DocumentList, operation_id="list_documents",
            responses=errors(404, 422))
def list_documents(kb: KbName, request: Request) -> models.DocumentList:
    registry = request.app.state.service.registry
    if registry.get_kb(kb) is None:
        raise NotFound(f"knowledge base {kb!r} does not exist")
    return models.DocumentList(documents=[status_of(d) for d in registry.documents(kb)])


@router.delete("/v1/documents/{document_id}", response_model=models.DocumentDeleted, operation_id="delete_document",
               responses=errors(404, 409))
def delete_document(document_id: str, request: Request) -> models.DocumentDeleted:
    request.app.state.service.delete_document(document_id)
    return models.DocumentDeleted(document_id=document_id)


@router.get("/v1/documents/{document_id}/events", response_class=StreamingResponse, operation_id="document_events",
            responses={200: {"content": SSE, "description": "`progress` events, then one `done` (the final "
                             "DocumentStatus) or `error`"}, **errors(404)})
async def events(document_id: str, request: Request) -> StreamingResponse:
    """Server-sent events: `progress` whenever the status or page count changes, then one `done`
    (ready or failed) and the stream ends. Any process may be doing the work: this reads the registry."""
    registry = request.app.state.service.registry
    await run_in_threadpool(_document, request, document_id)

    async def stream() -> AsyncIterator[str]:
        last, quiet = None, 0.0
        while not await request.is_disconnected():
            doc = await run_in_threadpool(registry.document, document_id)
            if doc is None:
                yield _sse("error", {"code": "not_found", "message": f"document {document_id!r} was deleted"})
                return
            state = status_of(doc).model_dump(mode="json")
            if doc.status in ("ready", "failed"):
                yield _sse("done", state)
                return
            if state != last:
                yield _sse("progress", state)
                last, quiet = state, 0.0
            elif quiet >= KEEPALIVE_S:
                yield ": keep-alive\n\n"
                quiet = 0.0
            await asyncio.sleep(EVENT_POLL_S)
            quiet += EVENT_POLL_S

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"
