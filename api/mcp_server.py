"""The MCP server (official `mcp` SDK): docground's knowledge bases as tools for MCP clients.

Tools: `list_knowledge_bases`, `search` (chunks with their pages, boxes and viewer links), `answer` (an
answer with [n] markers and its citations: quote, page, boxes, viewer link) and `get_document` (a ready
document's markdown or layout JSON, as GET /v1/documents/{id}/content gives).

Two ways in, one server:
- `docground mcp`: stdio, for a client that starts the server itself (Claude Desktop, IDEs). It opens the
  data directory as the CLI does and reaches every knowledge base there, or only `--kb NAME`'s.
- `docground serve` mounts it at `/mcp` (streamable HTTP, stateless). The same keys as REST: with
  DOCGROUND_ADMIN_KEY set every request carries `Authorization: Bearer <key>`, a knowledge base's key sees
  only its own knowledge base (others answer as forbidden, their documents as not found), and the same
  rate limit counts the calls.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import anyio
from fastapi import APIRouter, FastAPI
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from docground import __version__
from docground.errors import DocgroundError, Forbidden, NotFound
from docground.ingest.renderers import document_layout, document_markdown
from docground.registry import Document, validate_kb_name
from docground.settings import Settings

from .auth import Caller, caller
from .links import LinkedCitation, PageHighlight, base_url, chunk_pages, linked_citations
from .models import AnswerMode
from .routes.kbs import _names

INSTRUCTIONS = (
    "docground answers questions from document knowledge bases with citations that point at exact regions of "
    "exact pages. Call list_knowledge_bases first; answer gives a cited answer, search gives the passages, "
    "get_document the whole document. Show the viewer_url links: they open the page with the source highlighted."
)
LOCAL = Caller(admin=True, kb=None, key_id="local")
SEARCH_TEXT_CHARS = 4000  # of a chunk's text in a search result


class KnowledgeBaseSummary(BaseModel):
    name: str
    documents: int = Field(description="documents in the knowledge base, any status")


class KnowledgeBases(BaseModel):
    knowledge_bases: list[KnowledgeBaseSummary]


class SearchHit(BaseModel):
    chunk_id: str
    document_id: str
    filename: str
    score: float
    text: str
    pages: list[PageHighlight] = Field(description="the pages the text runs over, with boxes and viewer links")


class SearchResult(BaseModel):
    query: str
    hits: list[SearchHit]


class AnswerResult(BaseModel):
    question: str
    answer: str | None = Field(description="with [n] markers; null when nothing relevant was found")
    answer_mode: str = Field(description="extractive, generated or not_found")
    citations: list[LinkedCitation]


@dataclass(frozen=True)
class Access:
    """What one tool call may reach: the service, who is calling, and where viewer links point."""

    service: object  # docground.service.Docground
    who: Caller
    base: str

    def kb(self, name: str) -> str:
        validate_kb_name(name)
        if not self.who.admin and name != self.who.kb:
            raise Forbidden(f"this API key does not grant access to knowledge base {name!r}")
        return name

    def document(self, document_id: str) -> Document:
        doc = self.service.registry.document(document_id)
        if doc is None or (not self.who.admin and doc.kb != self.who.kb):
            raise NotFound(f"document {document_id!r} does not exist")
        return doc


AccessOf = Callable[[Context], Access]


async def _run(fn: Callable, *args):
    """A blocking service call off the event loop, its DocgroundError as the tool's error message."""
    try:
        return await anyio.to_thread.run_sync(fn, *args)
    except DocgroundError as exc:
        raise ToolError(f"{exc.code}: {exc.message}") from exc


def _access(access_of: AccessOf, ctx: Context) -> Access:
    try:
        return access_of(ctx)
    except DocgroundError as exc:
        raise ToolError(f"{exc.code}: {exc.message}") from exc


def build_server(access_of: AccessOf) -> MCPServer:
    # The SDK configures the root logger when it has no handlers yet; at WARNING it changes no more than
    # Python's default does (warnings and errors to stderr), not the app's INFO noise.
    mcp = MCPServer("docground", instructions=INSTRUCTIONS, version=__version__, log_level="WARNING")

    @mcp.tool()
    async def list_knowledge_bases(ctx: Context) -> KnowledgeBases:
        """The knowledge bases this connection may read, with their document counts."""
        access = _access(access_of, ctx)

        def listing() -> KnowledgeBases:
            registry = access.service.registry
            rows = [r for r in _names(registry) if access.who.admin or r.name == access.who.kb]
            return KnowledgeBases(knowledge_bases=[
                KnowledgeBaseSummary(name=r.name, documents=len(registry.documents(r.name))) for r in rows])

        return await _run(listing)

    @mcp.tool()
    async def search(kb: str, query: str, ctx: Context,
                     top_k: int = Field(5, ge=1, le=50, description="passages to return")) -> SearchResult:
        """The passages of a knowledge base that best match the query (hybrid dense and keyword search), each
        with the pages it runs over, the boxes of its text there and a viewer link that highlights them."""
        access = _access(access_of, ctx)

        def hits() -> SearchResult:
            from docground.retrieval.answers import chunk_out

            found = [chunk_out(h) for h in access.service.retrieve(access.kb(kb), query, top_k)]
            return SearchResult(query=query, hits=[
                SearchHit(chunk_id=c.chunk_id, document_id=c.document_id, filename=c.filename, score=c.score,
                          text=c.text[:SEARCH_TEXT_CHARS], pages=chunk_pages(c, access.base)) for c in found])

        return await _run(hits)

    @mcp.tool()
    async def answer(kb: str, question: str, ctx: Context,
                     top_k: int = Field(5, ge=1, le=50, description="passages the answer may draw on"),
                     mode: AnswerMode = Field("auto", description="auto: generated when an LLM endpoint is "
                                              "configured, else extractive")) -> AnswerResult:
        """Answer a question from a knowledge base. Every sentence ends with [n] markers; each citation gives
        the quote, the file, the page, the boxes of the quoted lines and a viewer link highlighting them."""
        access = _access(access_of, ctx)

        def answered() -> AnswerResult:
            response = access.service.query(access.kb(kb), question, top_k, mode)
            return AnswerResult(question=question, answer=response.answer, answer_mode=response.answer_mode,
                                citations=linked_citations(response, access.base))

        return await _run(answered)

    @mcp.tool()
    async def get_document(document_id: str, ctx: Context,
                           format: Literal["markdown", "json"] = "markdown") -> str:
        """A ready document's content. markdown: reading order with `<!-- page N -->` markers, tables,
        formulas as LaTeX, figures linked; json: pages → blocks with kind, boxes and markdown."""
        access = _access(access_of, ctx)

        def content() -> str:
            doc = access.document(document_id)
            layouts = access.service.document_layouts(doc.id)

            def figure(block) -> str | None:
                if access.service.figure_file(doc.id, block.id) is None:
                    return None
                return f"{access.base}/v1/documents/{doc.id}/figures/{block.id}"

            if format == "json":
                return document_layout(doc.id, layouts, figure).model_dump_json()
            return document_markdown(layouts, page_markers=True, figure_link=figure)

        return await _run(content)

    return mcp


# ---- stdio: `docground mcp`
def run_stdio(settings: Settings, kb: str | None = None) -> None:
    """Serve over stdin/stdout until the client closes them. The CLI's data directory, one process's store."""
    from docground.service import Docground

    service = Docground(settings)
    who = LOCAL if kb is None else Caller(admin=False, kb=validate_kb_name(kb), key_id="local")
    access = Access(service, who, base_url(settings))
    try:
        build_server(lambda ctx: access).run("stdio")
    finally:
        service.close()


# ---- streamable HTTP at /mcp of the app
def _http_access(ctx: Context) -> Access:
    request: Request = ctx.request_context.request
    app = request.app
    return Access(app.state.service, caller(request), base_url(app.state.settings, str(request.base_url)))


class _Keyed:
    """The MCP endpoint behind the REST keys and rate limit: no key, no MCP session."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        try:
            who = caller(request)  # remembered on the request's state, where the tools read it again
            request.app.state.rate_limiter.check(who.key_id)
        except DocgroundError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
            await JSONResponse(exc.to_dict(), status_code=exc.http_status, headers=headers)(scope, receive, send)
            return
        await self.inner(scope, receive, send)


def http_router(settings: Settings) -> APIRouter:
    """The MCP endpoint at /mcp, as a router whose lifespan runs the SDK's session manager."""
    server = build_server(_http_access)
    # Without keys the server is reachable from this machine only; a web page must not reach it through a
    # rebound DNS name either. With keys, the key is the guard.
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False) if settings.admin_key else \
        TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"])
    server.streamable_http_app(stateless_http=True, transport_security=security)  # makes the session manager
    manager = server.session_manager

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with manager.run():
            yield

    router = APIRouter(lifespan=lifespan)
    router.add_route("/mcp", _Keyed(StreamableHTTPASGIApp(manager)), methods=["GET", "POST", "DELETE"],
                     include_in_schema=False)
    return router
