"""The viewer: document pages as images (citation boxes drawn on request), a page view that draws
citation boxes over the page, and a small ask-and-cite page. Images go through the API with the
caller's key like any /v1 route; the HTML and scripts are public shells.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path as FilePath
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, Response
from PIL import Image

from docground.errors import InvalidRequest, NotFound
from docground.ingest.providers import PageLimits, open_source, pages_kind

from ..errors import errors
from ..models import Boxes

router = APIRouter(tags=["viewer"])
ASSETS = FilePath(__file__).resolve().parents[1] / "viewer"
STATIC = {"viewer.js": "text/javascript", "viewer.css": "text/css"}
HIGHLIGHT = np.array([1.0, 213 / 255, 0.0])  # multiplied into the page: text under it stays legible
PAGES_CACHED = 32


@router.get("/v1/documents/{document_id}/pages/{page}/image", response_class=Response, operation_id="page_image",
            responses={200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                             "description": "the page as displayed"}, **errors(404, 413, 422)})
def page_image(document_id: str, page: Annotated[int, Path(ge=1)], request: Request,
               dpi: int = Query(110, ge=36, le=300), boxes: Boxes = None) -> Response:
    service = request.app.state.service
    doc = service.registry.document(document_id)
    path = service.blob_dir(document_id) / f"original.{pages_kind(doc.kind)}" if doc is not None else None
    if path is None or not path.is_file():
        raise NotFound(f"document {document_id!r} does not exist")
    if not 1 <= page <= max(doc.pages_total, 1):
        raise NotFound(f"document {document_id!r} has no page {page}")
    png = _render(str(path), page, dpi, PageLimits.from_settings(request.app.state.settings))
    if boxes:
        png = _draw(png, parse_boxes(boxes))
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/viewer", include_in_schema=False)
def ask_page() -> FileResponse:
    return FileResponse(ASSETS / "index.html", media_type="text/html")


@router.get("/viewer/documents/{document_id}/pages/{page}", include_in_schema=False)
def page_view(document_id: str, page: int) -> FileResponse:
    """The page with ?boxes=x0,y0,x1,y1;... drawn over it (the script fetches the image with the key)."""
    return FileResponse(ASSETS / "page.html", media_type="text/html")


@router.get("/viewer/static/{name}", include_in_schema=False)
def static(name: str) -> FileResponse:
    if name not in STATIC:
        raise NotFound(f"no viewer asset {name!r}")
    return FileResponse(ASSETS / name, media_type=STATIC[name])


def parse_boxes(text: str) -> list[tuple[float, float, float, float]]:
    out = []
    for part in filter(None, text.split(";")):
        try:
            x0, y0, x1, y1 = (float(v) for v in part.split(","))
        except ValueError as exc:
            raise InvalidRequest(f"boxes: {part!r} is not x0,y0,x1,y1") from exc
        if not all(0 <= v <= 1 for v in (x0, y0, x1, y1)):
            raise InvalidRequest(f"boxes: {part!r} is not inside 0..1")
        out.append((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))  # any two opposite corners
    return out


@lru_cache(maxsize=PAGES_CACHED)
def _render(path: str, page: int, dpi: int, limits: PageLimits) -> bytes:
    source = open_source(FilePath(path).read_bytes(), limits)
    try:
        if page > source.page_count:
            raise NotFound(f"the document has no page {page}")
        image = source.page(page).render(dpi)
    finally:
        source.close()
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", optimize=False, compress_level=3)
    return buffer.getvalue()


def _draw(png: bytes, boxes: list[tuple[float, float, float, float]]) -> bytes:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)
    h, w = pixels.shape[:2]
    for x0, y0, x1, y1 in boxes:
        region = pixels[round(y0 * h):round(y1 * h), round(x0 * w):round(x1 * w)]
        region *= HIGHLIGHT
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()
