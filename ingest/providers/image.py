from __future__ import annotations

import io
from collections.abc import Iterator

from PIL import Image, ImageOps, ImageSequence

from docground.errors import CorruptFile, ImageTooLarge

# Without a resolution in the file, one pixel counts as one point (72 DPI), as PDF viewers place images.
DEFAULT_DPI = 72.0
MAX_PIXELS = 200_000_000


def _dpi(img: Image.Image) -> float:
    dpi = img.info.get("dpi")
    try:
        value = float(dpi[0]) if dpi else 0.0
    except (TypeError, ValueError, IndexError):
        value = 0.0
    return value if 50 <= value <= 2400 else DEFAULT_DPI


class ImagePage:
    def __init__(self, number: int, image: Image.Image, dpi: float):
        self.number = number
        self.image = image
        self.dpi = dpi
        self.width_pt = image.width * 72.0 / dpi
        self.height_pt = image.height * 72.0 / dpi

    def render(self, dpi: int) -> Image.Image:
        """The pixels as scanned; only scaled down when far more than asked for (a 600 DPI photo for OCR)."""
        scale = dpi / self.dpi
        if scale >= 0.5:
            return self.image
        size = (max(1, round(self.image.width * scale)), max(1, round(self.image.height * scale)))
        return self.image.resize(size, Image.Resampling.LANCZOS)


class ImageSource:
    def __init__(self, data: bytes, kind: str):
        self.kind = kind
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        try:
            container = Image.open(io.BytesIO(data))
            frames = [self._upright(f) for f in ImageSequence.Iterator(container)]
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge(f"the image is too large to process: {exc}") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise CorruptFile(f"the image could not be decoded: {exc}") from exc
        if not frames:
            raise CorruptFile("the image has no frames")
        self._pages = [ImagePage(i + 1, img, dpi) for i, (img, dpi) in enumerate(frames)]
        self.page_count = len(self._pages)

    @staticmethod
    def _upright(frame: Image.Image) -> tuple[Image.Image, float]:
        dpi = _dpi(frame)
        # EXIF orientation makes a phone photo display upright; boxes must match what is displayed.
        upright = ImageOps.exif_transpose(frame.copy())
        return upright.convert("RGB"), dpi

    def page(self, number: int) -> ImagePage:
        return self._pages[number - 1]

    def pages(self) -> Iterator[ImagePage]:
        return iter(self._pages)

    def close(self) -> None:
        self._pages = []
