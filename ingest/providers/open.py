from __future__ import annotations

import filetype

from docground.errors import EmptyFile, UnsupportedFileType

from .base import Source
from .guard import PageLimits
from .image import ImageSource
from .pdf import PdfSource

IMAGE_KINDS = {"png": "png", "jpg": "jpeg", "tif": "tiff", "webp": "webp"}
SUPPORTED = "PDF, PNG, JPEG, TIFF, WebP"


def sniff_kind(data: bytes) -> str:
    """The file's type from its leading bytes: 'pdf', 'png', 'jpeg', 'tiff' or 'webp'."""
    if not data:
        raise EmptyFile("the file is empty")
    # A PDF header may sit anywhere in the first KiB (the spec's allowance for leading junk).
    if b"%PDF-" in data[:1024]:
        return "pdf"
    guess = filetype.guess(data[:8192])
    if guess is not None and guess.extension in IMAGE_KINDS:
        return IMAGE_KINDS[guess.extension]
    found = f"{guess.mime} content" if guess is not None else "content of an unknown type"
    raise UnsupportedFileType(f"found {found}; supported: {SUPPORTED}")


def open_source(data: bytes, limits: PageLimits | None = None) -> Source:
    """The file's pages, within the limits (too many pages, images too large: a DocgroundError)."""
    kind = sniff_kind(data)
    return PdfSource(data, limits) if kind == "pdf" else ImageSource(data, kind, limits)
