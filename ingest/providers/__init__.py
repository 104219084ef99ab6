"""Providers turn uploaded bytes into pages: the file type is read from the content, never the name."""

from .base import Source, SourcePage, is_skipped, skip_reason
from .guard import PageLimits
from .open import open_source, sniff_kind

__all__ = ["PageLimits", "Source", "SourcePage", "is_skipped", "open_source", "skip_reason", "sniff_kind"]
