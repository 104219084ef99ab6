"""Renderers turn a document's page layouts into outputs: reading-order markdown, the layout JSON and
page images with every block's box drawn. `docground convert`, `docground export` and
`GET /v1/documents/{id}/content` all render through here: one renderer, several entry points.

Figures are linked through a function the caller gives (a file beside the markdown, an API URL): it
answers None for a figure that has no crop, and the figure is then left out of the markdown.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from PIL import Image, ImageDraw
from pydantic import BaseModel, Field

from .geometry import to_points
from .schema import FURNITURE, BBox, Block, BlockKind, PageLayout, PageOutcome

# Raise it when the outputs change, so that resumable conversions render again.
RENDERER_VERSION = "1"

FigureLink = Callable[[Block], str | None]

_DISPLAY_MATH = re.compile(r"^\s*(?:\\\[(?P<bracket>.*)\\\]|\$\$(?P<dollars>.*)\$\$)\s*$", re.S)
_INLINE_MATH = re.compile(r"^\s*\\\((?P<body>.*)\\\)\s*$", re.S)


def no_figures(block: Block) -> str | None:
    return None


def _ordered(layouts: Sequence[PageLayout]) -> list[PageLayout]:
    return sorted(layouts, key=lambda lay: lay.page)


# ---- markdown


def formula_markdown(markdown: str) -> str:
    """LaTeX display math as `$$...$$`, whichever delimiters the engine used (DeepSeek-OCR-2 writes `\\[...\\]`);
    a formula read as plain characters (the text layer, OCR) has no delimiters and stays as it was read."""
    match = _DISPLAY_MATH.match(markdown) or _INLINE_MATH.match(markdown)
    if match is None:
        return markdown
    body = next(v for v in match.groupdict().values() if v is not None)
    return f"$$\n{body.strip()}\n$$"


def block_markdown(block: Block, figure_link: FigureLink = no_figures) -> str:
    """A block as markdown: tables as the engine wrote them (markdown or HTML), formulas as LaTeX,
    figures as an image link followed by any text the engine read inside them."""
    if block.kind == BlockKind.formula:
        return formula_markdown(block.markdown)
    if block.kind == BlockKind.figure:
        link = figure_link(block)
        image = f"![figure]({link})" if link else ""
        return "\n\n".join(part for part in (image, block.markdown.strip()) if part)
    return block.markdown


def document_markdown(layouts: Sequence[PageLayout], furniture: bool = False, page_markers: bool = False,
                      figure_link: FigureLink = no_figures) -> str:
    """The document's markdown in reading order; page furniture left out unless asked for. Page markers
    are HTML comments (`<!-- page 3 -->`), invisible where the markdown is displayed."""
    parts: list[str] = []
    for layout in _ordered(layouts):
        if page_markers:
            parts.append(f"<!-- page {layout.page} -->")
        parts += [text for block in layout.blocks
                  if (furniture or block.kind not in FURNITURE)
                  and (text := block_markdown(block, figure_link)).strip()]
    return "\n\n".join(parts) + ("\n" if parts and page_markers else "")


# ---- layout JSON


class LineOut(BaseModel):
    bbox: BBox = Field(description="0..1, origin top-left of the page as displayed")
    bbox_pt: BBox = Field(description="PDF points, origin top-left of the page as displayed")
    start: int = Field(description="where the line's text starts in the block's markdown")
    end: int


class BlockOut(BaseModel):
    id: str
    kind: BlockKind
    level: int | None = Field(None, description="heading level (1 = top)")
    markdown: str
    bbox: BBox = Field(description="0..1, origin top-left of the page as displayed")
    bbox_pt: BBox = Field(description="PDF points, origin top-left of the page as displayed")
    lines: list[LineOut] = Field(default_factory=list, description="line boxes, where the engine has them")
    confidence: float | None = None
    figure: str | None = Field(None, description="where the figure's crop is (figure blocks that have one)")


class PageOut(BaseModel):
    page: int = Field(description="1-based")
    width_pt: float
    height_pt: float
    engine: str = Field(description="the engine that read the page")
    engine_version: str
    outcome: PageOutcome = Field(description="read, fallback (another engine read it), skipped or unread")
    reason: str = Field(description="why that engine: the routing decision and any retries")
    blocks: list[BlockOut]


class DocumentLayout(BaseModel):
    """A document's pages and their blocks in reading order, boxes in both coordinate forms."""

    document_id: str
    renderer_version: str = RENDERER_VERSION
    pages: list[PageOut]


def block_out(block: Block, size_pt: tuple[float, float], figure_link: FigureLink = no_figures) -> BlockOut:
    lines = [LineOut(bbox=ln.bbox, bbox_pt=to_points(ln.bbox, *size_pt), start=ln.start, end=ln.end)
             for ln in block.lines]
    return BlockOut(id=block.id, kind=block.kind, level=block.level, markdown=block.markdown, bbox=block.bbox,
                    bbox_pt=to_points(block.bbox, *size_pt), lines=lines, confidence=block.confidence,
                    figure=figure_link(block) if block.kind == BlockKind.figure else None)


def page_out(layout: PageLayout, figure_link: FigureLink = no_figures) -> PageOut:
    return PageOut(page=layout.page, width_pt=layout.width_pt, height_pt=layout.height_pt, engine=layout.engine,
                   engine_version=layout.engine_version, outcome=layout.outcome, reason=layout.reason,
                   blocks=[block_out(b, layout.size_pt, figure_link) for b in layout.blocks])


def document_layout(document_id: str, layouts: Sequence[PageLayout],
                    figure_link: FigureLink = no_figures) -> DocumentLayout:
    return DocumentLayout(document_id=document_id, pages=[page_out(lay, figure_link) for lay in _ordered(layouts)])


# ---- boxes drawn over the page

KIND_COLORS: dict[BlockKind, tuple[int, int, int]] = {
    BlockKind.title: (200, 0, 0), BlockKind.heading: (230, 80, 0), BlockKind.text: (0, 90, 220),
    BlockKind.list: (0, 150, 150), BlockKind.table: (0, 160, 0), BlockKind.figure: (160, 0, 200),
    BlockKind.caption: (200, 0, 140), BlockKind.formula: (150, 110, 0), BlockKind.code: (90, 90, 90),
    BlockKind.page_header: (150, 150, 150), BlockKind.page_footer: (150, 150, 150),
    BlockKind.page_number: (150, 150, 150), BlockKind.footnote: (110, 60, 30),
}


def draw_blocks(image: Image.Image, layout: PageLayout) -> Image.Image:
    """The page image with every block's box outlined in its kind's colour, labelled with the kind and
    its place in reading order."""
    page = image.convert("RGB")
    draw = ImageDraw.Draw(page)
    w, h = page.size
    width = max(1, round(min(w, h) / 400))
    for n, block in enumerate(layout.blocks, 1):
        x0, y0, x1, y1 = block.bbox
        box = (round(x0 * w), round(y0 * h),
               max(round(x0 * w), round(x1 * w) - 1), max(round(y0 * h), round(y1 * h) - 1))
        color = KIND_COLORS.get(block.kind, (0, 0, 0))
        draw.rectangle(box, outline=color, width=width)
        _label(draw, f"{n} {block.kind.value}", box, color)
    return page


def _label(draw: ImageDraw.ImageDraw, text: str, box: tuple[int, int, int, int], color: tuple[int, int, int]) -> None:
    """The label sits on the box's top edge, outside it where there is room above."""
    left, top, right, bottom = draw.textbbox((0, 0), text)
    height = bottom - top + 2
    y = box[1] - height if box[1] >= height else box[1]
    draw.rectangle((box[0], y, box[0] + right - left + 2, y + height), fill=color)
    draw.text((box[0] + 1, y + 1 - top), text, fill=(255, 255, 255))
