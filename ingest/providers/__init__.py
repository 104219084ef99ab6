"""Providers turn uploaded bytes into pages: the file type is read from the content, never the name.
PDFs and images are read as they are; Office, web and text documents as the PDF LibreOffice makes of them."""

from .base import Source, SourcePage
from .guard import PageLimits
from .open import open_source, pages_kind, sniff_kind

__all__ = ["PageLimits", "Source", "SourcePage", "open_source", "pages_kind", "sniff_kind"]
