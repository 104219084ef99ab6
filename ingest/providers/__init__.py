"""Providers turn uploaded bytes into pages: the file type is read from the content, never the name."""

from .base import Source, SourcePage
from .guard import PageLimits
from .open import open_source, sniff_kind

__all__ = ["PageLimits", "Source", "SourcePage", "open_source", "sniff_kind"]
