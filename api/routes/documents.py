"""Documents: upload into a knowledge base (202, the work goes to a runner), status, progress as
server-sent events, listing, deletion, and a ready document's content: its reading-order markdown or
layout JSON (rendered by ingest/renderers.py, as `docground convert` renders), figure crops and chunks.

The runner (docground/workers/runner.py) starts and stops with the app: Celery workers when
DOCGROUND_BROKER_URL is set, else threads of this process. Authentication and tenant scope come from
the app-wide guard (api/auth.py), which scopes these routes by their `kb` and `document_id` path
parameters.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, FastAPI, File, Header, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from docground.errors import InvalidRequest, NotFound
from docground.ingest.geometry import to_points
from docground.ingest.renderers import FigureLink, document_layout, document_markdown
from docground.ingest.schema import Block, Chunk
from docground.registry import Document, validate_kb_name
from docground.workers.runner import make_runner

from ..models import (
    ContentFormat,
    DocumentAccepted,
    DocumentChunk,
    DocumentChunks,
    DocumentDeleted,
    DocumentLayout,
    DocumentList,
    DocumentPages,
    DocumentStatus,
    PageInfo,
    SpanOut,
)

EVENT_POLL_S = 0.25
KEEPALIVE_S = 15.0
MAX_IDEMPOTENCY_KEY = 255


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Runs inside the app's own lifespan, so the service already exists.
    runner = make_runner(app.state.service)
    app.state.runner = runner
    await run_in_threadpool(runner.start)
    try:
        yield
    finally:
        await run_in_threadpool(runner.close)


router = APIRouter(tags=["documents"], lifespan=lifespan)


def status_of(doc: Document) -> DocumentStatus:
    return DocumentStatus(document_id=doc.id, kb=doc.kb, filename=doc.filename, status=doc.status,
                          pages_total=doc.pages_total, pages_done=doc.pages_done, chunks=doc.chunks,
                          error=doc.error, error_code=doc.error_code)


def _document(request: Request, document_id: str) -> Document:
    doc = request.app.state.service.registry.document(document_id)
    if doc is None:
        raise NotFound(f"document {document_id!r} does not exist")
    return doc


@router.post("/v1/knowledge-bases/{kb}/documents", response_model=DocumentAccepted, status_code=202)
async def upload(kb: str, request: Request, file: Annotated[UploadFile, File()],
                 idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None) -> DocumentAccepted:
    """Accept a file for ingestion. The same file again (or the same Idempotency-Key) answers with the
    same document and starts no new work; the same key with another file is a 409."""
    validate_kb_name(kb)
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidRequest(f"the Idempotency-Key header must be 1-{MAX_IDEMPOTENCY_KEY} characters")
    data = await file.read()
    service = request.app.state.service
    registration = await run_in_threadpool(service.register, kb, file.filename or "upload", data, idempotency_key)
    if registration.created:
        await run_in_threadpool(request.app.state.runner.submit, registration.job.id)
    return DocumentAccepted(document_id=registration.document.id, status=registration.document.status)


@router.get("/v1/documents/{document_id}", response_model=DocumentStatus)
def get_document(document_id: str, request: Request) -> DocumentStatus:
    return status_of(_document(request, document_id))


@router.get("/v1/documents/{document_id}/pages", response_model=DocumentPages)
def document_pages(document_id: str, request: Request) -> DocumentPages:
    """Each page's state, and which engine produced it and why (text layer, OCR, vision model, fallbacks)."""
    doc = _document(request, document_id)
    pages = request.app.state.service.registry.pages(doc.id)
    return DocumentPages(document_id=doc.id, pages=[PageInfo.model_validate(p, from_attributes=True) for p in pages])


@router.get("/v1/documents/{document_id}/content", response_model=DocumentLayout,
            responses={200: {"content": {"text/markdown": {}},
                             "description": "format=markdown: the reading-order markdown; format=json: the layout"}})
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


@router.get("/v1/documents/{document_id}/figures/{block_id}", response_class=FileResponse,
            responses={200: {"content": {"image/png": {}}, "description": "the figure's crop"}})
def figure(document_id: str, block_id: str, request: Request) -> FileResponse:
    path = request.app.state.service.figure_file(_document(request, document_id).id, block_id)
    if path is None:
        raise NotFound(f"document {document_id!r} has no figure {block_id!r}")
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/v1/documents/{document_id}/chunks", response_model=DocumentChunks)
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


@router.get("/v1/knowledge-bases/{kb}/documents", response_model=DocumentList)
def list_documents(kb: str, request: Request) -> DocumentList:
    registry = request.app.state.service.registry
    if registry.get_kb(validate_kb_name(kb)) is None:
        raise NotFound(f"knowledge base {kb!r} does not exist")
    return DocumentList(documents=[status_of(d) for d in registry.documents(kb)])


@router.delete("/v1/documents/{document_id}", response_model=DocumentDeleted)
def delete_document(document_id: str, request: Request) -> DocumentDeleted:
    request.app.state.service.delete_document(document_id)
    return DocumentDeleted(document_id=document_id)


@router.get("/v1/documents/{document_id}/events")
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
