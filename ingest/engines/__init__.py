"""Page engines: one page in, one page layout out, in the one coordinate form."""

from .base import PageEngine, block_id

__all__ = ["PageEngine", "block_id"]
