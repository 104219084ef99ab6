"""Renderers turn page layouts into outputs: reading-order markdown of a document."""

from __future__ import annotations

from collections.abc import Sequence

from .schema import FURNITURE, PageLayout


def document_markdown(layouts: Sequence[PageLayout], furniture: bool = False) -> str:
    """The document's markdown in reading order; page furniture left out unless asked for."""
    parts = [b.markdown for lay in sorted(layouts, key=lambda x: x.page) for b in lay.blocks
             if b.markdown.strip() and (furniture or b.kind not in FURNITURE)]
    return "\n\n".join(parts)
