from __future__ import annotations

from collections.abc import Iterator

import pymupdf
from PIL import Image

from docground.errors import CorruptFile, EncryptedFile


class PdfPage:
    def __init__(self, page: pymupdf.Page):
        self.pdf_page = page
        self.number = page.number + 1
        self.width_pt = float(page.rect.width)
        self.height_pt = float(page.rect.height)

    def render(self, dpi: int) -> Image.Image:
        pix = self.pdf_page.get_pixmap(dpi=dpi, alpha=False, colorspace=pymupdf.csRGB)
        return Image.frombytes("RGB", (pix.width, pix.height), pix.samples)

    def text_in(self, box: tuple[float, float, float, float], margin_pt: float = 1.0) -> str:
        """The text layer's text inside a box given in the one coordinate form (0..1, as displayed)."""
        x0, y0, x1, y1 = box
        shown = pymupdf.Rect(x0 * self.width_pt - margin_pt, y0 * self.height_pt - margin_pt,
                             x1 * self.width_pt + margin_pt, y1 * self.height_pt + margin_pt)
        return self.pdf_page.get_textbox(shown * self.pdf_page.derotation_matrix)


class PdfSource:
    kind = "pdf"

    def __init__(self, data: bytes):
        try:
            self.doc = pymupdf.open(stream=data, filetype="pdf")
        except Exception as exc:  # MuPDF raises its own types for every kind of damage
            raise CorruptFile(f"the PDF could not be opened: {exc}") from exc
        if self.doc.needs_pass and not self.doc.authenticate(""):
            self.doc.close()
            raise EncryptedFile("the PDF is password-protected")
        self.page_count = self.doc.page_count
        if self.page_count == 0:
            raise CorruptFile("the PDF has no pages")

    def page(self, number: int) -> PdfPage:
        return PdfPage(self.doc[number - 1])

    def pages(self) -> Iterator[PdfPage]:
        for i in range(self.page_count):
            yield self.page(i + 1)

    def close(self) -> None:
        self.doc.close()
