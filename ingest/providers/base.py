from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from PIL import Image


class SourcePage(Protocol):
    """One page as a viewer displays it (rotation applied), sized in PDF points."""

    number: int  # 1-based
    width_pt: float
    height_pt: float

    def render(self, dpi: int) -> Image.Image:
        """The page as an RGB image at about this resolution, in display orientation."""
        ...


class Source(Protocol):
    kind: str  # pdf, png, jpeg, tiff, webp
    page_count: int

    def pages(self) -> Iterator[SourcePage]: ...

    def page(self, number: int) -> SourcePage: ...

    def close(self) -> None: ...
