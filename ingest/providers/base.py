from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from PIL import Image

from docground.errors import DocgroundError


class SourcePage(Protocol):
    """One page as a viewer displays it (rotation applied), sized in PDF points."""

    number: int  # 1-based
    width_pt: float
    height_pt: float
    refused: DocgroundError | None  # why the page must not be read (providers/guard.py), or None

    def render(self, dpi: int) -> Image.Image:
        """The page as an RGB image at about this resolution (less for huge pages or short memory), in
        display orientation; raises `refused` for a refused page."""
        ...


class Source(Protocol):
    kind: str  # pdf, png, jpeg, tiff, webp; docx, pptx, xlsx, odt, odp, ods, rtf, doc, ppt, xls, html, md, txt
    page_count: int
    rendition: bytes | None  # the PDF a converted document's pages are those of (providers/office.py)

    def pages(self) -> Iterator[SourcePage]: ...

    def page(self, number: int) -> SourcePage: ...

    def close(self) -> None: ...
