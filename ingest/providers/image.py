from __future__ import annotations

import io
from collections.abc import Iterator

from PIL import Image, ImageOps

from docground.errors import CorruptFile, ImageTooLarge, TooManyPages

from .guard import PageLimits

# Without a resolution in the file, one pixel counts as one point (72 DPI), as PDF viewers place images.
DEFAULT_DPI = 72.0
EXIF_ORIENTATION = 0x0112
TURNED = {5, 6, 7, 8}  # EXIF orientations that display the image a quarter turn round


def _dpi(img: Image.Image) -> float:
    dpi = img.info.get("dpi")
    try:
        value = float(dpi[0]) if dpi else 0.0
    except (TypeError, ValueError, IndexError):
        value = 0.0
    return value if 50 <= value <= 2400 else DEFAULT_DPI


class ImagePage:
    """A decoded image as a page."""

    refused = None

    def __init__(self, number: int, image: Image.Image, dpi: float, limits: PageLimits | None = None):
        self.number = number
        self.image = image
        self.dpi = dpi
        self.limits = limits or PageLimits()
        self.width_pt = image.width * 72.0 / dpi
        self.height_pt = image.height * 72.0 / dpi

    def pixels(self) -> Image.Image:
        return self.image

    def render(self, dpi: int) -> Image.Image:
        """The pixels as scanned; scaled down only when far more than asked for (a 600 DPI photo for OCR),
        or beyond the render limit."""
        image = self.pixels()
        wanted = dpi / self.dpi
        scale = min(wanted if wanted < 0.5 else 1.0, self.limits.render_scale(image.width, image.height))
        if scale >= 1.0:
            return image
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        return image.resize(size, Image.Resampling.LANCZOS)


class FramePage(ImagePage):
    """A frame of an image file, decoded when rendered: one frame in memory at a time, however many."""

    def __init__(self, source: ImageSource, number: int, size: tuple[int, int], dpi: float):
        self.source = source
        self.number = number
        self.dpi = dpi
        self.limits = source.limits
        self.width_pt = size[0] * 72.0 / dpi
        self.height_pt = size[1] * 72.0 / dpi

    def pixels(self) -> Image.Image:
        return self.source.frame(self.number)


class ImageSource:
    """An image file's frames; sizes and count are checked from the headers before any pixel is decoded."""

    rendition = None

    def __init__(self, data: bytes, kind: str, limits: PageLimits | None = None):
        self.kind = kind
        self.limits = limits or PageLimits()
        # PIL's own guard (at twice its MAX_IMAGE_PIXELS) must not refuse what the limit admits; it is
        # process-wide, so it is only ever raised. The size check below applies the limit itself.
        if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < self.limits.image_pixels:
            Image.MAX_IMAGE_PIXELS = self.limits.image_pixels
        try:
            self.container = Image.open(io.BytesIO(data))
            self._pages = self._frames()
        except (ImageTooLarge, TooManyPages):
            raise
        except Image.DecompressionBombError as exc:  # PIL's own guard, at twice the limit
            raise ImageTooLarge(f"the image is over the limit of {self.limits.image_pixels:,} pixels "
                                "(DOCGROUND_MAX_IMAGE_PIXELS)") from exc
        except Exception as exc:  # decoders raise many types on damaged input; all mean the same
            raise CorruptFile(f"the image could not be decoded: {exc}") from exc
        if not self._pages:
            raise CorruptFile("the image has no frames")
        self.page_count = len(self._pages)
        self._decoded: tuple[int, Image.Image] | None = None
        self.frame(1)  # a damaged single image is refused on upload; later frames are decoded when read

    def _frames(self) -> list[FramePage]:
        pages: list[FramePage] = []
        while True:
            index = len(pages)
            try:
                self.container.seek(index)  # frame by frame: a TIFF of a million frames stops at the limit
            except EOFError:
                return pages
            if index == self.limits.max_pages:
                raise TooManyPages(f"the image has more than {self.limits.max_pages} frames "
                                   "(DOCGROUND_MAX_PAGES)")
            width, height = self.container.size
            refused = self.limits.image_refusal(width, height, f"frame {index + 1} of the image")
            if refused is not None:
                raise refused
            turned = self.container.getexif().get(EXIF_ORIENTATION) in TURNED
            # EXIF orientation makes a phone photo display upright; boxes must match what is displayed.
            size = (height, width) if turned else (width, height)
            pages.append(FramePage(self, index + 1, size, _dpi(self.container)))

    def frame(self, number: int) -> Image.Image:
        """A frame decoded, upright and RGB; the last one decoded is kept for the next render."""
        if self._decoded is None or self._decoded[0] != number:
            self._decoded = None  # the previous frame goes before the next is decoded
            try:
                self.container.seek(number - 1)
                image = ImageOps.exif_transpose(self.container.copy()).convert("RGB")
            except Exception as exc:  # the header was readable, the pixels are not
                raise CorruptFile(f"frame {number} of the image could not be decoded: {exc}") from exc
            self._decoded = (number, image)
        return self._decoded[1]

    def page(self, number: int) -> FramePage:
        return self._pages[number - 1]

    def pages(self) -> Iterator[FramePage]:
        return iter(self._pages)

    def close(self) -> None:
        self._pages, self._decoded = [], None
        self.container.close()
