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
