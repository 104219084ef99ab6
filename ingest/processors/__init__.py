"""Steps that run after the engines, on a document's page layouts: furniture (running headers, page
numbers) marked across pages, tables continued over a page break given their header again, figure crops
saved beside the document. Steps an engine calls while it reads a page (reading order, orientation, ruled
tables) live with the engines in `engines/`."""

from ..schema import PageLayout
from .furniture import mark_furniture
from .tables import repeat_continued_headers


def across_pages(layouts: list[PageLayout]) -> None:
    """The steps that read a document's pages together, in page order, before chunking or rendering."""
    mark_furniture(layouts)
    repeat_continued_headers(layouts)
