"""Page engines: one page in, one page layout out, in the one coordinate form.

Beside each engine, what only it uses (`textlayer_tables.py`, `tesseract_orientation.py`); shared by the
text-layer and Tesseract engines, `reading_order.py`. `deepseek_ocr2/` is a model adapter's package.
"""

from .base import PageEngine, block_id

__all__ = ["PageEngine", "block_id"]
