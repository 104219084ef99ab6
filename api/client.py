"""A typed Python client for the docground HTTP API, sync and async, speaking the server's own models.

    from docground.api.client import DocgroundClient
    with DocgroundClient("http://127.0.0.1:8000", api_key="dgk_...") as dg:
        doc = dg.wait(dg.upload("papers", "paper.pdf").document_id)
        answer = dg.query("papers", "What dataset was used?")
        for event in dg.query_stream("papers", "What dataset was used?", mode="generate"):
            print(event.text if event.name == "delta" else event.response.answer)

`AsyncDocgroundClient` has the same methods, awaited (`async for` for the stream). Errors the server
answers come back as `DocgroundAPIError` with its stable `code`, the message and the HTTP status.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
from pydantic import TypeAdapter

from .models import (
    AnswerMode,
    ContentFormat,
    DocumentAccepted,
    DocumentChunk,
    DocumentChunks,
    DocumentDeleted,
    DocumentLayout,
    DocumentList,
    DocumentPages,
    DocumentStatus,
    KnowledgeBaseInfo,
    KnowledgeBaseKey,
    QueryResponse,
    WebhookSecret,
)

T = TypeVar("T")
DONE_STATES = ("ready", "failed")


class DocgroundAPIError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass
class StreamEvent:
    """A server-sent event. A streamed answer: `delta` (text as the model writes it), then `done` (its
    `response` is the answer to show: markers repaired, citations verified). A document's progress:
    `progress`, then `done` (its `response` is the final DocumentStatus). Or `error`."""

    name: str
    data: dict
    response: Any = None

    @property
    def text(self) -> str:
        return self.data.get("text", "")


@dataclass
class _Call(Generic[T]):
    """One API call, whichever client sends it: the request and how to read its answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    kwargs: dict[str, Any] = field(default_factory=dict)


def _model(cls: Any) -> Callable[[httpx.Response], Any]:
    adapter = TypeAdapter(cls)
    return lambda r: adapter.validate_python(r.json())


def _raise_for(r: httpx.Response) -> None:
    if r.is_success:
        return
    try:
        body = r.json()
        code, message = body.get("code", "error"), body.get("message") or str(body)
    except ValueError:
        code, message = "error", r.text[:500]
    raise DocgroundAPIError(r.status_code, code, message)


def _file(file: str | Path | bytes, filename: str | None) -> tuple[str, bytes]:
    if isinstance(file, bytes):
        return filename or "upload", file
    path = Path(file)
    return filename or path.name, path.read_bytes()


def _kb(kb: str, tail: str = "") -> str:
    return f"/v1/knowledge-bases/{kb}{tail}"


def _document(document_id: str, tail: str = "") -> str:
    return f"/v1/documents/{document_id}{tail}"


class _Calls:
    """The API, one function per route; both clients send what these build."""

    @staticmethod
    def health() -> _Call[bool]:
        return _Call("GET", "/healthz", lambda r: r.json().get("status") == "ok")

    @staticmethod
    def create_knowledge_base(name: str, callback_url: str | None = None) -> _Call[KnowledgeBaseKey]:
        body = {"name": name} | ({"callback_url": callback_url} if callback_url else {})
        return _Call("POST", "/v1/knowledge-bases", _model(KnowledgeBaseKey), {"json": body})

    @staticmethod
    def update_knowledge_base(kb: str, callback_url: str | None) -> _Call[KnowledgeBaseInfo]:
        return _Call("PATCH", _kb(kb), _model(KnowledgeBaseInfo),
                     {"json": {"callback_url": callback_url}})

    @staticmethod
    def rotate_webhook_secret(kb: str) -> _Call[WebhookSecret]:
        return _Call("POST", _kb(kb, "/webhook-secret"), _model(WebhookSecret))

    @staticmethod
    def rotate_key(kb: str) -> _Call[KnowledgeBaseKey]:
        return _Call("POST", _kb(kb, "/api-key"), _model(KnowledgeBaseKey))

    @staticmethod
    def knowledge_bases() -> _Call[list[KnowledgeBaseInfo]]:
        return _Call("GET", "/v1/knowledge-bases", _model(list[KnowledgeBaseInfo]))

    @staticmethod
    def knowledge_base(kb: str) -> _Call[KnowledgeBaseInfo]:
        return _Call("GET", _kb(kb), _model(KnowledgeBaseInfo))

    @staticmethod
    def upload(kb: str, file: str | Path | bytes, filename: str | None, idempotency_key: str | None,
               callback_url: str | None = None) -> _Call[DocumentAccepted]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        data = {"callback_url": callback_url} if callback_url else {}
        return _Call("POST", _kb(kb, "/documents"), _model(DocumentAccepted),
                     {"files": {"file": _file(file, filename)}, "data": data, "headers": headers})

    @staticmethod
    def document(document_id: str) -> _Call[DocumentStatus]:
        return _Call("GET", _document(document_id), _model(DocumentStatus))

    @staticmethod
    def document_pages(document_id: str) -> _Call[DocumentPages]:
        return _Call("GET", _document(document_id, "/pages"), _model(DocumentPages))

    @staticmethod
    def documents(kb: str) -> _Call[list[DocumentStatus]]:
        return _Call("GET", _kb(kb, "/documents"), lambda r: DocumentList(**r.json()).documents)

    @staticmethod
    def document_events(document_id: str) -> _Call[None]:
        return _Call("GET", _document(document_id, "/events"), lambda r: None)

    @staticmethod
    def delete_document(document_id: str) -> _Call[DocumentDeleted]:
        return _Call("DELETE", _document(document_id), _model(DocumentDeleted))

    @staticmethod
    def document_content(document_id: str, content_format: ContentFormat) -> _Call[str | DocumentLayout]:
        parse = (lambda r: r.text) if content_format == "markdown" else _model(DocumentLayout)
        return _Call("GET", _document(document_id, "/content"), parse, {"params": {"format": content_format}})

    @staticmethod
    def document_chunks(document_id: str) -> _Call[list[DocumentChunk]]:
        return _Call("GET", _document(document_id, "/chunks"), lambda r: DocumentChunks(**r.json()).chunks)

    @staticmethod
    def figure(document_id: str, block_id: str) -> _Call[bytes]:
        return _Call("GET", _document(document_id, f"/figures/{block_id}"), lambda r: r.content)

    @staticmethod
    def query(kb: str, question: str, top_k: int, mode: AnswerMode, stream: bool = False) -> _Call[QueryResponse]:
        body = {"query": question, "top_k": top_k, "mode": mode, "stream": stream}
        return _Call("POST", _kb(kb, "/query"), _model(QueryResponse), {"json": body})

    @staticmethod
    def page_image(document_id: str, page: int, dpi: int, boxes: Iterable[Iterable[float]] | None) -> _Call[bytes]:
        params: dict[str, Any] = {"dpi": dpi}
        if boxes:
            params["boxes"] = ";".join(",".join(f"{v:.6f}" for v in b) for b in boxes)
        return _Call("GET", _document(document_id, f"/pages/{page}/image"), lambda r: r.content,
                     {"params": params})


class _Events:
    """Server-sent events read line by line; `done` carries the final object (`parse` reads it)."""

    def __init__(self, parse: Callable[[dict], Any] = lambda data: QueryResponse(**data)):
        self.name, self.data, self.parse = "message", "", parse

    def feed(self, line: str) -> StreamEvent | None:
        if line.startswith("event:"):
            self.name = line[6:].strip()
        elif line.startswith("data:"):
            self.data += line[5:].strip()
        elif not line and self.data:
            data = json.loads(self.data)
            event = StreamEvent(self.name, data, self.parse(data) if self.name == "done" else None)
            self.name, self.data = "message", ""
            if event.name == "error":
                raise DocgroundAPIError(200, data.get("code", "error"), data.get("message", ""))
            return event
        return None


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class DocgroundClient:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, timeout: float = 120.0,
                 transport: httpx.BaseTransport | None = None):
        self.http = httpx.Client(base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport)

    def _run(self, call: _Call[T]) -> T:
        r = self.http.request(call.method, call.path, **call.kwargs)
        _raise_for(r)
        return call.parse(r)

    def health(self) -> bool:
        return self._run(_Calls.health())

    def create_knowledge_base(self, name: str, callback_url: str | None = None) -> KnowledgeBaseKey:
        """Admin only (with DOCGROUND_ADMIN_KEY set): the new knowledge base and its API key, shown once.
        `callback_url` is told (signed webhooks) of every document that becomes ready or failed."""
        return self._run(_Calls.create_knowledge_base(name, callback_url))

    def update_knowledge_base(self, kb: str, callback_url: str | None) -> KnowledgeBaseInfo:
        """Set the knowledge base's webhook callback URL (None removes it)."""
        return self._run(_Calls.update_knowledge_base(kb, callback_url))

    def rotate_webhook_secret(self, kb: str) -> WebhookSecret:
        """A new secret webhooks are signed with, shown once; the old one stops verifying."""
        return self._run(_Calls.rotate_webhook_secret(kb))

    def rotate_key(self, kb: str) -> KnowledgeBaseKey:
        return self._run(_Calls.rotate_key(kb))

    def knowledge_bases(self) -> list[KnowledgeBaseInfo]:
        return self._run(_Calls.knowledge_bases())

    def knowledge_base(self, kb: str) -> KnowledgeBaseInfo:
        return self._run(_Calls.knowledge_base(kb))

    def upload(self, kb: str, file: str | Path | bytes, filename: str | None = None,
               idempotency_key: str | None = None, callback_url: str | None = None) -> DocumentAccepted:
        """`callback_url` is POSTed a signed event when the document becomes ready or failed."""
        return self._run(_Calls.upload(kb, file, filename, idempotency_key, callback_url))

    def document(self, document_id: str) -> DocumentStatus:
        return self._run(_Calls.document(document_id))

    def document_pages(self, document_id: str) -> DocumentPages:
        """Each page's state and the engine that produced it, with the reason."""
        return self._run(_Calls.document_pages(document_id))

    def documents(self, kb: str) -> list[DocumentStatus]:
        return self._run(_Calls.documents(kb))

    def delete_document(self, document_id: str) -> DocumentDeleted:
        return self._run(_Calls.delete_document(document_id))

    def document_markdown(self, document_id: str) -> str:
        """A ready document's reading-order markdown: page markers, tables, LaTeX formulas, figure links."""
        return self._run(_Calls.document_content(document_id, "markdown"))

    def document_layout(self, document_id: str) -> DocumentLayout:
        """A ready document's pages and blocks, boxes in 0..1 and in points, each page's engine and why."""
        return self._run(_Calls.document_content(document_id, "json"))

    def document_chunks(self, document_id: str) -> list[DocumentChunk]:
        """A ready document's chunks as indexed: text and the page regions it came from."""
        return self._run(_Calls.document_chunks(document_id))

    def figure(self, document_id: str, block_id: str) -> bytes:
        """A figure's crop as a PNG (the layout's `figure` field links it)."""
        return self._run(_Calls.figure(document_id, block_id))

    def wait(self, document_id: str, timeout: float = 600.0, poll: float = 0.5) -> DocumentStatus:
        """The document's status once it is ready or failed (TimeoutError after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while (status := self.document(document_id)).status not in DONE_STATES:
            if time.monotonic() > deadline:
                raise TimeoutError(f"document {document_id} is still {status.status} after {timeout:.0f} s")
            time.sleep(poll)
        return status

    def query(self, kb: str, question: str, top_k: int = 5, mode: AnswerMode = "auto") -> QueryResponse:
        return self._run(_Calls.query(kb, question, top_k, mode))

    def query_stream(self, kb: str, question: str, top_k: int = 5, mode: AnswerMode = "auto") -> Iterator[StreamEvent]:
        return self._stream(_Calls.query(kb, question, top_k, mode, stream=True), _Events())

    def document_events(self, document_id: str) -> Iterator[StreamEvent]:
        """The document's progress as it is ingested, until it is ready or failed."""
        return self._stream(_Calls.document_events(document_id), _Events(lambda data: DocumentStatus(**data)))

    def _stream(self, call: _Call, events: _Events) -> Iterator[StreamEvent]:
        with self.http.stream(call.method, call.path, **call.kwargs) as r:
            if not r.is_success:
                r.read()
                _raise_for(r)
            for line in r.iter_lines():
                if (event := events.feed(line)) is not None:
                    yield event

    def page_image(self, document_id: str, page: int, dpi: int = 110,
                   boxes: Iterable[Iterable[float]] | None = None) -> bytes:
        """The page as a PNG, with the given boxes (0..1, top-left origin) highlighted."""
        return self._run(_Calls.page_image(document_id, page, dpi, boxes))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> DocgroundClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncDocgroundClient:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, timeout: float = 120.0,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.http = httpx.AsyncClient(base_url=base_url, headers=_headers(api_key), timeout=timeout,
                                      transport=transport)

    async def _run(self, call: _Call[T]) -> T:
        r = await self.http.request(call.method, call.path, **call.kwargs)
        _raise_for(r)
        return call.parse(r)

    async def health(self) -> bool:
        return await self._run(_Calls.health())

    async def create_knowledge_base(self, name: str, callback_url: str | None = None) -> KnowledgeBaseKey:
        return await self._run(_Calls.create_knowledge_base(name, callback_url))

    async def update_knowledge_base(self, kb: str, callback_url: str | None) -> KnowledgeBaseInfo:
        return await self._run(_Calls.update_knowledge_base(kb, callback_url))

    async def rotate_webhook_secret(self, kb: str) -> WebhookSecret:
        return await self._run(_Calls.rotate_webhook_secret(kb))

    async def rotate_key(self, kb: str) -> KnowledgeBaseKey:
        return await self._run(_Calls.rotate_key(kb))

    async def knowledge_bases(self) -> list[KnowledgeBaseInfo]:
        return await self._run(_Calls.knowledge_bases())

    async def knowledge_base(self, kb: str) -> KnowledgeBaseInfo:
        return await self._run(_Calls.knowledge_base(kb))

    async def upload(self, kb: str, file: str | Path | bytes, filename: str | None = None,
                     idempotency_key: str | None = None, callback_url: str | None = None) -> DocumentAccepted:
        return await self._run(_Calls.upload(kb, file, filename, idempotency_key, callback_url))

    async def document(self, document_id: str) -> DocumentStatus:
        return await self._run(_Calls.document(document_id))

    async def document_pages(self, document_id: str) -> DocumentPages:
        return await self._run(_Calls.document_pages(document_id))

    async def documents(self, kb: str) -> list[DocumentStatus]:
        return await self._run(_Calls.documents(kb))

    async def delete_document(self, document_id: str) -> DocumentDeleted:
        return await self._run(_Calls.delete_document(document_id))

    async def document_markdown(self, document_id: str) -> str:
        return await self._run(_Calls.document_content(document_id, "markdown"))

    async def document_layout(self, document_id: str) -> DocumentLayout:
        return await self._run(_Calls.document_content(document_id, "json"))

    async def document_chunks(self, document_id: str) -> list[DocumentChunk]:
        return await self._run(_Calls.document_chunks(document_id))

    async def figure(self, document_id: str, block_id: str) -> bytes:
        return await self._run(_Calls.figure(document_id, block_id))

    async def wait(self, document_id: str, timeout: float = 600.0, poll: float = 0.5) -> DocumentStatus:
        deadline = time.monotonic() + timeout
        while (status := await self.document(document_id)).status not in DONE_STATES:
            if time.monotonic() > deadline:
                raise TimeoutError(f"document {document_id} is still {status.status} after {timeout:.0f} s")
            await asyncio.sleep(poll)
        return status

    async def query(self, kb: str, question: str, top_k: int = 5, mode: AnswerMode = "auto") -> QueryResponse:
        return await self._run(_Calls.query(kb, question, top_k, mode))

    def query_stream(self, kb: str, question: str, top_k: int = 5,
                     mode: AnswerMode = "auto") -> AsyncIterator[StreamEvent]:
        return self._stream(_Calls.query(kb, question, top_k, mode, stream=True), _Events())

    def document_events(self, document_id: str) -> AsyncIterator[StreamEvent]:
        return self._stream(_Calls.document_events(document_id), _Events(lambda data: DocumentStatus(**data)))

    async def _stream(self, call: _Call, events: _Events) -> AsyncIterator[StreamEvent]:
        async with self.http.stream(call.method, call.path, **call.kwargs) as r:
            if not r.is_success:
                await r.aread()
                _raise_for(r)
            async for line in r.aiter_lines():
                if (event := events.feed(line)) is not None:
                    yield event

    async def page_image(self, document_id: str, page: int, dpi: int = 110,
                         boxes: Iterable[Iterable[float]] | None = None) -> bytes:
        return await self._run(_Calls.page_image(document_id, page, dpi, boxes))

    async def close(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncDocgroundClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
