"""Engines chosen from settings: one place decides which OCR engine pages without a text layer get."""

from __future__ import annotations

from docground.settings import Settings

from ..routing import Router
from .base import PageEngine


def build_cpu_ocr(settings: Settings) -> PageEngine | None:
    """The CPU OCR engine (Tesseract), or None where tesserocr or its language data is not installed."""
    try:
        from .tesseract import TesseractEngine, installed_languages
    except ImportError:
        return None
    if not installed_languages(settings.tessdata_dir):
        return None
    return TesseractEngine(settings.tessdata_dir, settings.ocr_languages, settings.ocr_dpi, settings.ocr_workers,
                           settings.ocr_memory_mb)


def build_vision_ocr(settings: Settings, fallback: PageEngine | None) -> PageEngine | None:
    """DeepSeek-OCR-2 (endpoint, vLLM in-process or transformers) when configured, else None."""
    from .deepseek_ocr2 import DeepseekOcr2Engine
    from .deepseek_ocr2.configure import backend_factory, pages_in_flight
    from .deepseek_ocr2.prompt import ladder

    factory = backend_factory(settings)
    if factory is None:
        return None
    return DeepseekOcr2Engine(load_backend=factory, fallback=fallback,
                              attempts=ladder(dpi=settings.render_dpi, max_tokens=settings.ocr_max_tokens),
                              pages_at_once=pages_in_flight(settings))


def build_ocr_engine(settings: Settings) -> PageEngine | None:
    if settings.ocr_backend == "none":
        return None
    cpu = build_cpu_ocr(settings)
    if settings.ocr_backend == "cpu":
        return cpu
    return build_vision_ocr(settings, fallback=cpu) or cpu


def build_router(settings: Settings) -> Router:
    """The OCR engine pages without a usable text layer get, and which born-digital pages a vision model also
    gets (DOCGROUND_VLM_PAGES; only a model that reads structure takes any)."""
    return Router(ocr=build_ocr_engine(settings), vlm_pages=settings.vlm_pages)
