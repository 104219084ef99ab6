"""Which DeepSeek-OCR-2 backend the settings ask for, as a factory: in-process models load on first use.

`ocr_backend`: `endpoint` (needs `ocr_endpoint`), `vllm`, `transformers` (a local model directory), or `auto`:
the endpoint when one is set, else in-process vLLM where vLLM and a GPU are present, else nothing (the
CPU OCR engine reads the pages). A backend asked for by name that cannot run here is a configuration error.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from docground.errors import OcrUnavailable
from docground.settings import Settings

from .schema import Backend


def uses_endpoint(settings: Settings) -> bool:
    return settings.ocr_backend == "endpoint" or (settings.ocr_backend == "auto" and bool(settings.ocr_endpoint))


def model_in_process(settings: Settings) -> bool:
    """Whether the vision model would load into this process (vLLM or transformers, not an endpoint)."""
    return not uses_endpoint(settings) and backend_factory(settings) is not None


def backend_factory(settings: Settings) -> Callable[[], Backend] | None:
    choice = settings.ocr_backend
    if uses_endpoint(settings):
        return _endpoint(settings)
    if choice == "vllm":
        if not _installed("vllm"):
            raise OcrUnavailable("DOCGROUND_OCR_BACKEND=vllm needs vLLM: pip install 'docground[gpu]'")
        return lambda: _vllm(settings)
    if choice == "transformers":
        if not (Path(settings.ocr_model) / "config.json").is_file():
            raise OcrUnavailable(f"DOCGROUND_OCR_BACKEND=transformers needs DOCGROUND_OCR_MODEL to be a local "
                                 f"model directory; {settings.ocr_model!r} is not one")
        return lambda: _transformers(settings)
    if choice == "auto" and _installed("vllm") and _has_gpu():
        return lambda: _vllm(settings)
    return None


def pages_in_flight(settings: Settings) -> int:
    """Pages to hand the engine at once so that the backend stays saturated."""
    if settings.ocr_endpoint:
        return 2 * settings.ocr_concurrency
    if settings.ocr_backend == "transformers":
        return 2 * settings.ocr_batch_size
    return settings.ocr_max_num_seqs


def _endpoint(settings: Settings) -> Callable[[], Backend]:
    url = (settings.ocr_endpoint or "").rstrip("/")
    if not url.startswith(("http://", "https://")) or not url.endswith("/v1"):
        raise OcrUnavailable("DOCGROUND_OCR_ENDPOINT must be an http(s) base URL ending in /v1 "
                             f"(e.g. http://gpu-host:8000/v1); got {settings.ocr_endpoint!r}")
    from .backend_endpoint import EndpointBackend

    backend = EndpointBackend(url, settings.ocr_model, settings.ocr_concurrency, settings.ocr_timeout_s)
    return lambda: backend


def _vllm(settings: Settings) -> Backend:
    from .backend_vllm import VllmBackend

    workers = None if settings.ocr_preprocess_workers < 0 else settings.ocr_preprocess_workers
    ahead = None if settings.ocr_pages_ahead < 0 else settings.ocr_pages_ahead
    return VllmBackend(settings.ocr_model, preprocess_workers=workers, max_num_seqs=settings.ocr_max_num_seqs,
                       gpu_memory_utilization=settings.ocr_gpu_memory_utilization, pages_ahead=ahead)


def _transformers(settings: Settings) -> Backend:
    from .backend_transformers import TransformersBackend

    return TransformersBackend.load(settings.ocr_model, batch_size=settings.ocr_batch_size)


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()
