from __future__ import annotations

from collections.abc import Iterator

import pymupdf
from PIL import Image

from docground.errors import CorruptFile, DocgroundError, EncryptedFile, TooManyPages

from .guard import PageLimits, PageProbe

LETTER = (612.0, 792.0)  # the size given to a refused page whose own size cannot be read safely


class PdfPage:
    refused = None

    def __init__(self, page: pymupdf.Page, limits: PageLimits):
        self.pdf_page = page
        self.limits = limits
        self.number = page.number + 1
        self.width_pt = float(page.rect.width)
        self.height_pt = float(page.rect.height)

    def render(self, dpi: int) -> Image.Image:
        zoom = dpi / 72 * self.limits.render_scale(self.width_pt * dpi / 72, self.height_pt * dpi / 72)
        pix = self.pdf_page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), alpha=False, colorspace=pymupdf.csRGB)
        return Image.frombytes("RGB", (pix.width, pix.height), pix.samples)

    def text_in(self, box: tuple[float, float, float, float]) -> str:
        """The text layer's words whose centres lie inside a box given in the one coordinate form."""
        x0, y0, x1, y1 = box
        matrix = self.pdf_page.rotation_matrix
        inside = []
        for w in self.pdf_page.get_text("words"):
            r = pymupdf.Rect(w[:4]) * matrix
            cx, cy = (r.x0 + r.x1) / 2 / self.width_pt, (r.y0 + r.y1) / 2 / self.height_pt
            if x0 <= cx <= x1 and y0 <= cy <= y1:
                inside.append((r.y0, r.x0, w[4]))
        # Displayed order: by line (rounded top), then left to right.
        inside.sort(key=lambda t: (round(t[0] / 4), t[1]))
        return " ".join(t[2] for t in inside)


class RefusedPage:
    """A page the guard kept from the engines: its size and why; it cannot be rendered."""

    def __init__(self, number: int, size: tuple[float, float], refused: DocgroundError):
        self.number = number
        self.width_pt, self.height_pt = size
        self.refused = refused

    def render(self, dpi: int) -> Image.Image:
        raise self.refused


class PdfSource:
    kind = "pdf"
    rendition: bytes | None = None

    def __init__(self, data: bytes, limits: PageLimits | None = None):
        self.limits = limits or PageLimits()
        try:
            self.doc = pymupdf.open(stream=data, filetype="pdf")
        except Exception as exc:  # MuPDF raises its own types for every kind of damage
            raise CorruptFile(f"the PDF could not be opened: {exc}") from exc
        if self.doc.needs_pass and not self.doc.authenticate(""):
            self.doc.close()
            raise EncryptedFile("the PDF is password-protected")
        try:
            self.page_count = self.doc.page_count  # a broken page tree fails here, not when opened
        except Exception as exc:
            self.doc.close()
            raise CorruptFile(f"the PDF's page tree is broken: {exc}") from exc
        if self.page_count == 0:
            self.doc.close()
            raise CorruptFile("the PDF has no pages")
        if self.page_count > self.limits.max_pages:
            self.doc.close()
            raise TooManyPages(f"the document has {self.page_count} pages; the limit is {self.limits.max_pages} "
                               "(DOCGROUND_MAX_PAGES)")
        self.probe = PageProbe(self.doc, self.limits) if self.limits.time_s > 0 else None

    def page(self, number: int) -> PdfPage | RefusedPage:
        if not 1 <= number <= self.page_count:
            raise IndexError(f"page {number} of {self.page_count}")
        refused = self.probe.refusal(number) if self.probe is not None else None
        if refused is not None:
            return RefusedPage(number, self._size(number), refused)
        try:
            return PdfPage(self.doc.load_page(number - 1), self.limits)
        except Exception as exc:  # only without the probe: with it, such a page is refused above
            raise CorruptFile(f"page {number} could not be read: {exc}") from exc

    def pages(self) -> Iterator[PdfPage | RefusedPage]:
        for i in range(self.page_count):
            yield self.page(i + 1)

    def close(self) -> None:
        if self.probe is not None:
            self.probe.close()
        self.doc.close()

    def _size(self, number: int) -> tuple[float, float]:
        """A refused page's size as displayed, from its dictionary alone (the page itself is not loaded)."""
        try:
            box = self.doc.page_cropbox(number - 1)
            kind, rotation = self.doc.xref_get_key(self.doc.page_xref(number - 1), "Rotate")
            turned = kind == "int" and int(rotation) % 180 == 90
            size = (float(box.height), float(box.width)) if turned else (float(box.width), float(box.height))
        except Exception:  # a refused page's dictionary may be as broken as its content
            return LETTER
        return size if size[0] > 0 and size[1] > 0 else LETTER
