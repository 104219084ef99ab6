"""Viewer links that open a cited page with the cited lines highlighted, and the citations and search hits
that carry them: what the MCP tools (api/mcp_server.py) and the OpenAI-compatible chat
(api/routes/openai_compat.py) hand to clients that cannot draw boxes themselves.

A link is `{base}/viewer/documents/{document_id}/pages/{page}?boxes=x0,y0,x1,y1;...` (0..1, top-left origin,
as api/routes/viewer.py reads them). It carries no key: the viewer asks for one, or reads `#key=...`.
"""

from __future__ import annotations

from urllib.parse import quote

from pydantic import BaseModel, Field

from docground.settings import Settings

from .models import Box, ChunkOut, QueryResponse


class LinkedCitation(BaseModel):
    n: int = Field(description="the [n] marker in the answer")
    quote: str = Field(description="the cited text, cut from the document")
    document_id: str
    filename: str
    page: int = Field(description="1-based")
    boxes: list[Box] = Field(description="the lines the quote comes from, 0..1, top-left origin")
    boxes_pt: list[Box] = Field(description="the same boxes in PDF points")
    viewer_url: str = Field(description="opens the page with the quote highlighted")


class PageHighlight(BaseModel):
    page: int = Field(description="1-based")
    boxes: list[Box] = Field(description="where the text is on the page, 0..1, top-left origin")
    viewer_url: str = Field(description="opens the page with the text highlighted")


def base_url(settings: Settings, request_base: str | None = None) -> str:
    """Where the viewer is served: DOCGROUND_PUBLIC_URL, else the request's own, else host and port."""
    base = settings.public_url or request_base or f"http://{settings.host}:{settings.port}"
    return base.rstrip("/")


def viewer_url(base: str, document_id: str, page: int, boxes: list[Box] | list[list[float]]) -> str:
    url = f"{base}/viewer/documents/{quote(document_id, safe='')}/pages/{page}"
    if not boxes:
        return url
    return url + "?boxes=" + ";".join(",".join(f"{min(max(v, 0.0), 1.0):.4f}" for v in box) for box in boxes)


def linked_citations(response: QueryResponse, base: str) -> list[LinkedCitation]:
    return [LinkedCitation(n=c.n, quote=c.quote, document_id=c.document_id, filename=c.filename, page=c.page,
                           boxes=c.boxes, boxes_pt=c.boxes_pt,
                           viewer_url=viewer_url(base, c.document_id, c.page, c.boxes))
            for c in response.citations]


def chunk_pages(chunk: ChunkOut, base: str) -> list[PageHighlight]:
    """The pages a chunk's text runs over, each with the boxes of its spans there, in reading order."""
    pages: dict[int, list[Box]] = {}
    for span in chunk.spans:
        pages.setdefault(span.page, []).append(span.bbox)
    return [PageHighlight(page=page, boxes=boxes, viewer_url=viewer_url(base, chunk.document_id, page, boxes))
            for page, boxes in pages.items()]
