"""Figure crops: every figure block of any engine saved as a PNG with its document.

A crop lands at `<document folder>/figures/<block_id>.png`, cut from the page rendered at the same DPI the
engines read it at. Block ids derive from content, so re-ingesting rewrites nothing.
"""

from __future__ import annotations

from pathlib import Path

from ..providers import Source
from ..schema import BlockKind, PageLayout

MIN_CROP_PX = 8  # a box smaller than this on a side is a speck, not a figure


def figure_path(document_folder: Path, block_id: str) -> Path:
    return document_folder / "figures" / f"{block_id}.png"


def save_figure_crops(document_folder: Path, source: Source, layouts: list[PageLayout], dpi: int) -> int:
    """Crop and save the figures not saved yet; returns how many files were written."""
    written = 0
    for layout in layouts:
        todo = [b for b in layout.blocks
                if b.kind == BlockKind.figure and not figure_path(document_folder, b.id).exists()]
        if not todo:
            continue
        image = source.page(layout.page).render(dpi)
        width, height = image.size
        for block in todo:
            x0, y0, x1, y1 = block.bbox
            box = (round(x0 * width), round(y0 * height), round(x1 * width), round(y1 * height))
            if box[2] - box[0] < MIN_CROP_PX or box[3] - box[1] < MIN_CROP_PX:
                continue
            path = figure_path(document_folder, block.id)
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_suffix(".part")
            image.crop(box).save(part, format="PNG")
            part.replace(path)
            written += 1
    return written
