"""Synthetic documents for tests: every fact the tests check is known from how the page was drawn."""

from __future__ import annotations

import io
import random

import pymupdf
from PIL import Image

WORDS = ("ingestion citation retrieval layout column paragraph evidence region engine vector corpus "
         "reading order chunk page span table figure caption heading model answer source").split()
A4 = (595.0, 842.0)


def sentence(rng: random.Random, n: int = 12) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def two_column_pdf(pages: int = 1, seed: int = 0, header: str | None = None) -> tuple[bytes, list[dict]]:
    """Two-column pages; returns the PDF and, per drawn line, its text, page, column and box in points."""
    rng = random.Random(seed)
    doc = pymupdf.open()
    lines: list[dict] = []
    for pno in range(pages):
        page = doc.new_page(width=A4[0], height=A4[1])
        if header:
            page.insert_text((60, 30), f"{header}", fontsize=8)
            page.insert_text((A4[0] / 2 - 5, A4[1] - 25), f"{pno + 1}", fontsize=8)
        if pno == 0:
            page.insert_text((60, 80), "Grounded Retrieval Study", fontsize=22)
        for col, x in enumerate((60, 315)):
            y = 120
            for para in range(4):
                for _ in range(6):
                    text = f"p{pno + 1}c{col}q{para} " + sentence(rng, 5)
                    page.insert_text((x, y), text, fontsize=9)
                    width = pymupdf.get_text_length(text, fontsize=9)
                    lines.append({"text": text, "page": pno + 1, "column": col,
                                  "bbox": (x, y - 9 * 0.8, x + width, y + 9 * 0.25)})
                    y += 12
                y += 14
    return doc.tobytes(), lines


def rotated_pdf(rotation: int) -> bytes:
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_text((72, 100), "Rotated page marker sentence for boxes.", fontsize=12)
    page.insert_text((72, 400), "Second line far below the first one.", fontsize=12)
    page.set_rotation(rotation)
    return doc.tobytes()


def cjk_pdf() -> bytes:
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_text((72, 100), "文档理解与检索增强生成系统", fontname="china-s", fontsize=14)
    # Wide character spacing makes some extractors insert spaces between CJK characters.
    page.insert_text((72, 140), "知 识 库 问 答", fontname="china-s", fontsize=14)
    page.insert_text((72, 180), "日本語の文書を検索します", fontname="japan", fontsize=14)
    page.insert_text((72, 220), "한국어 문서를 검색합니다", fontname="korea", fontsize=14)
    return doc.tobytes()


def table_pdf() -> tuple[bytes, list[list[str]]]:
    rows = [["Region", "Revenue", "Growth"], ["North", "1,204", "3.1%"], ["South", "987", "-0.4%"],
            ["East", "2,310", "7.9%"], ["West", "1,555", "2.2%"]]
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_text((72, 80), "Quarterly figures are listed in the table below.", fontsize=11)
    x0, y0, cw, rh = 72, 100, 120, 22
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            rect = pymupdf.Rect(x0 + c * cw, y0 + r * rh, x0 + (c + 1) * cw, y0 + (r + 1) * rh)
            page.draw_rect(rect, color=(0, 0, 0), width=0.7)
            page.insert_text((rect.x0 + 4, rect.y1 - 7), cell, fontsize=10)
    page.insert_text((72, y0 + len(rows) * rh + 30), "The table ends the quarterly section.", fontsize=11)
    return doc.tobytes(), rows


def image_bytes(fmt: str, size=(400, 300), dpi: int | None = None, frames: int = 1, exif_rotate: bool = False) -> bytes:
    images = [Image.new("RGB", size, (255, 255, 255 - 40 * i)) for i in range(frames)]
    buf = io.BytesIO()
    kwargs: dict = {}
    if dpi:
        kwargs["dpi"] = (dpi, dpi)
    if frames > 1:
        kwargs.update(save_all=True, append_images=images[1:])
    if exif_rotate:
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90° clockwise to display
        kwargs["exif"] = exif
    images[0].save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def image_only_pdf(data: bytes, dpi: int = 150, rotation: int = 0, skew: float = 0.0) -> bytes:
    """A scan of a PDF: each page rendered at `dpi`, tilted by `skew` degrees and turned by `rotation`
    (both counterclockwise, as the page is then displayed), with no text layer left."""
    src = pymupdf.open(stream=data)
    out = pymupdf.open()
    for page in src:
        pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
        img = Image.frombytes("L", (pix.width, pix.height), pix.samples)
        if skew:
            img = img.rotate(skew, resample=Image.Resampling.BILINEAR, fillcolor=255)
        img = img.rotate(rotation, expand=True) if rotation else img
        w, h = (page.rect.height, page.rect.width) if rotation in (90, 270) else (page.rect.width, page.rect.height)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out.new_page(width=w, height=h).insert_image(pymupdf.Rect(0, 0, w, h), stream=buf.getvalue())
    return out.tobytes()


def header_outside_grid_pdf() -> tuple[bytes, list[list[str]]]:
    """A ruled table body whose header row sits above the rules, unruled (as table finders miss it)."""
    rows = [["Source", "Tokens", "Docs"], ["Web pages", "3.71T", "2.95B"], ["Code", "83.0B", "78.7M"],
            ["Papers", "58.6B", "38.8M"], ["Math", "12.2B", "2.89M"]]
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_text((72, 80), "The composition of the data is given below in detail.", fontsize=10)
    x0, cw, rh, top = 72, 130, 18, 120
    for c, cell in enumerate(rows[0]):
        page.insert_text((x0 + c * cw + 4, top - 5), cell, fontsize=10)
    for r, row in enumerate(rows[1:]):
        for c, cell in enumerate(row):
            rect = pymupdf.Rect(x0 + c * cw, top + r * rh, x0 + (c + 1) * cw, top + (r + 1) * rh)
            page.draw_rect(rect, color=(0, 0, 0), width=0.6)
            page.insert_text((rect.x0 + 4, rect.y1 - 5), cell, fontsize=10)
    return doc.tobytes(), rows
