from __future__ import annotations

import filetype

from docground.errors import EmptyFile, UnsupportedFileType

from .base import Source
from .guard import PageLimits
from .image import ImageSource
from .office import KINDS as CONVERTED
from .office import ConvertedSource, office_kind
from .pdf import PdfSource
from .text import looks_like_legacy_text, text_kind

IMAGE_KINDS = {"png": "png", "jpg": "jpeg", "tif": "tiff", "webp": "webp"}
SUPPORTED = ("PDF, PNG, JPEG, TIFF, WebP, DOCX, PPTX, XLSX, ODT, ODP, ODS, RTF, DOC, PPT, XLS, HTML, Markdown, "
             "plain text (UTF-8)")


def sniff_kind(data: bytes) -> str:
    """The file's type from its content (its first bytes are enough): 'pdf'; an image: 'png', 'jpeg',
    'tiff', 'webp'; an Office document: 'docx', 'pptx', 'xlsx', 'odt', 'odp', 'ods', 'rtf', 'doc', 'ppt',
    'xls'; a web page, Markdown or plain text: 'html', 'md', 'txt'."""
    if not data:
        raise EmptyFile("the file is empty")
    # A PDF header may sit anywhere in the first KiB (the spec's allowance for leading junk).
    if b"%PDF-" in data[:1024]:
        return "pdf"
    # Text before the signatures of binary formats: some are two letters ("BM" is a bitmap's).
    kind = office_kind(data) or text_kind(data)
    if kind is not None:
        return kind
    guess = filetype.guess(data[:8192])
    if guess is not None and guess.extension in IMAGE_KINDS:
        return IMAGE_KINDS[guess.extension]
    if guess is None and looks_like_legacy_text(data):
        raise UnsupportedFileType(f"found text that is not Unicode: save it as UTF-8; supported: {SUPPORTED}")
    found = f"{guess.mime} content" if guess is not None else "content of an unknown type"
    raise UnsupportedFileType(f"found {found}; supported: {SUPPORTED}")


def pages_kind(kind: str) -> str:
    """The kind of file a document's pages are read from: a converted document's PDF, else the upload."""
    return "pdf" if kind in CONVERTED else kind


def open_source(data: bytes, limits: PageLimits | None = None, rendition: bytes | None = None) -> Source:
    """The file's pages, within the limits (too many pages, images too large: a DocgroundError). A document
    that is converted to PDF is, once only: pass the PDF kept from its first conversion as `rendition`."""
    kind = sniff_kind(data)
    if kind == "pdf":
        return PdfSource(data, limits)
    if kind in CONVERTED:
        return ConvertedSource(data, kind, limits, rendition)
    return ImageSource(data, kind, limits)
