"""The DeepSeek-OCR-2 page engine: every page of a batch in flight at once, validated, retried, never dropped.

Each rung of the ladder sends all still-failing pages to the backend together, so a batching backend keeps
them all in flight. A page that fails every rung falls back to its own text layer, else to the CPU OCR
engine, else becomes an empty layout that says why. Transport failures (the endpoint is down) skip the
rest of the ladder: another prompt would not help. `stream` reads one page with its first rung's text handed
on as the model writes it (`docground convert --stream`); the rest of the ladder is the same.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from docground.errors import OcrUnavailable

from ...providers import SourcePage
from ...providers.pdf import PdfPage
from ...schema import PageLayout, PageOutcome
from ..base import PageEngine
from ..textlayer import TextLayerEngine
from .output import parse_grounded, parse_plain, to_blocks
from .prompt import Attempt, ladder
from .schema import Backend, Generation, PageRequest, StreamingBackend, TextSink
from .validate import problems

log = logging.getLogger("docground.ocr")

MAX_SIDE = 2304  # 3 tiles of 768: the model sees no more detail than this along a side
WARM_UP_PAGES = 128  # enough for every render worker to render several pages, and for full prefill chunks


@dataclass
class _PageTrail:
    """What happened to one page so far: each failed rung and its problems."""

    failures: list[tuple[Attempt, list[str]]] = field(default_factory=list)
    unavailable: bool = False  # the backend never loaded: nothing was tried

    def summary(self) -> str:
        seen: list[str] = []
        for _, found in self.failures:
            seen += [p for p in found if p not in seen]
        return "; ".join(seen)

    def verdict(self) -> str:
        """Why DeepSeek-OCR-2 gave no usable page, as a phrase: "DeepSeek-OCR-2 failed: no EOS ..."."""
        summary = self.summary() or "no output"
        return f"DeepSeek-OCR-2 {summary}" if self.unavailable else f"DeepSeek-OCR-2 failed: {summary}"


class DeepseekOcr2Engine(PageEngine):
    name = "deepseek-ocr2"
    version = "1"
    queue = "gpu"  # its pages go to the GPU workers (an endpoint backend works from any worker too)
    reads_structure = True  # born-digital pages may come for their structure (routing.py: DOCGROUND_VLM_PAGES)

    def __init__(self, backend: Backend | None = None, fallback: PageEngine | None = None,
                 attempts: tuple[Attempt, ...] | None = None, max_side: int = MAX_SIDE, pages_at_once: int = 64,
                 load_backend: Callable[[], Backend] | None = None):
        """A backend, or `load_backend` to build one on the first page (in-process models load then, not
        when a service starts)."""
        if (backend is None) == (load_backend is None):
            raise ValueError("give DeepseekOcr2Engine a backend or load_backend, one of them")
        self._backend = backend
        self._backend_factory = load_backend
        self._lock = threading.Lock()
        self._load_error: str | None = None
        self._warm = False  # the backend ran its warm-up batch
        self.fallback = fallback
        self.text_layer = TextLayerEngine()
        self.attempts = attempts or ladder()
        self.max_side = max_side
        self.pages_at_once = pages_at_once

    @property
    def backend(self) -> Backend:
        """Built on first use; a backend that failed to load is not tried again on every batch."""
        with self._lock:
            if self._backend is None:
                if self._load_error is None:
                    try:
                        self._backend = self._backend_factory()
                    except Exception as exc:
                        log.exception("DeepSeek-OCR-2 backend failed to load")
                        self._load_error = f"{type(exc).__name__}: {exc}"
                if self._backend is None:
                    raise OcrUnavailable(f"DeepSeek-OCR-2 unavailable: {self._load_error}")
            return self._backend

    def warm_up(self, pages: int | None = None) -> None:
        """Load the backend now and let it run a real batch's shapes once (a backend with a `warm_up`: in-process
        vLLM), so that a GPU worker's first document is as fast as its later ones. A backend that fails to
        load is left for the pages to report (they fall back, saying why)."""
        try:
            backend = self.backend
        except OcrUnavailable:
            return
        warm = getattr(backend, "warm_up", None)
        with self._lock:
            if warm is None or self._warm:
                return
            self._warm = True
        warm(pages=min(self.pages_at_once, WARM_UP_PAGES) if pages is None else pages)

    def parse_many(self, pages: list[SourcePage], document_id: str) -> list[PageLayout]:
        return self._read(pages, document_id)

    def stream(self, page: SourcePage, document_id: str, on_text: TextSink) -> PageLayout:
        """One page whose first rung's raw output goes to `on_text` as the model writes it; a page that
        fails that rung goes on down the ladder, unstreamed, as in `parse_many`."""
        backend = self.backend  # an unavailable backend raises: a stream has nothing to fall back on
        if not isinstance(backend, StreamingBackend):
            raise OcrUnavailable(f"the DeepSeek-OCR-2 {backend.name} backend does not stream: set "
                                 "DOCGROUND_OCR_ENDPOINT to a `vllm serve` URL, or DOCGROUND_OCR_BACKEND=vllm")
        first = self.attempts[0]
        try:
            generation = backend.stream(PageRequest(self._image(page, first.dpi), first.task, first.sampling),
                                        on_text)
        except Exception as exc:  # as in `_generate`: the page falls back rather than being lost
            log.exception("DeepSeek-OCR-2 backend %s failed", backend.name)
            generation = Generation.failed(f"{type(exc).__name__}: {exc}")
        return self._read([page], document_id, first_rung=[generation])[0]

    def _read(self, pages: list[SourcePage], document_id: str,
              first_rung: list[Generation] | None = None) -> list[PageLayout]:
        """`first_rung`: the first attempt's generations when they were already made (streamed)."""
        layer_texts = [_text_layer(p) for p in pages]
        trails = [_PageTrail() for _ in pages]
        done: dict[int, PageLayout] = {}
        pending = list(range(len(pages)))
        try:
            backend = self.backend
        except OcrUnavailable:
            for trail in trails:
                trail.unavailable = True
                trail.failures.append((self.attempts[0], [f"unavailable ({self._load_error})"]))
            pending = []
        for rung, attempt in enumerate(self.attempts):
            if not pending:
                break
            if rung == 0 and first_rung is not None:
                generations = first_rung
            else:
                generations = self._generate(backend, [pages[i] for i in pending], attempt)
            retry = []
            for i, gen in zip(pending, generations, strict=True):
                blocks = parse_grounded(gen.text) if attempt.grounded else parse_plain(gen.text)
                found = problems(gen, blocks, attempt.grounded, layer_texts[i])
                if not found:
                    page = pages[i]
                    done[i] = PageLayout(page=page.number, width_pt=page.width_pt, height_pt=page.height_pt,
                                         blocks=to_blocks(blocks, page.number, document_id), engine=self.name,
                                         engine_version=self.version, reason=self._reason(attempt, trails[i]))
                    continue
                trails[i].failures.append((attempt, found))
                if gen.error is None:
                    retry.append(i)
            pending = retry
        failed = [i for i in range(len(pages)) if i not in done]
        if failed:
            done.update(self._fall_back(pages, failed, trails, layer_texts, document_id))
        return [done[i] for i in range(len(pages))]

    def _generate(self, backend: Backend, pages: list[SourcePage], attempt: Attempt) -> list[Generation]:
        # a generator: pages render as the backend takes them, so the first is in flight before the last renders
        requests = (PageRequest(self._image(p, attempt.dpi), attempt.task, attempt.sampling) for p in pages)
        try:
            return backend.generate(requests)
        except Exception as exc:  # a crashed backend must not lose the document: every page falls back
            log.exception("DeepSeek-OCR-2 backend %s failed", backend.name)
            return [Generation.failed(f"{type(exc).__name__}: {exc}") for _ in pages]

    def _image(self, page: SourcePage, dpi: int) -> Image.Image:
        image = page.render(dpi)
        if max(image.size) > self.max_side:
            image = image.copy()
            image.thumbnail((self.max_side, self.max_side), Image.Resampling.LANCZOS)
        return image

    def _reason(self, attempt: Attempt, trail: _PageTrail) -> str:
        via = f"DeepSeek-OCR-2 via {self.backend.name}"
        if not trail.failures:
            return via
        return f"{via}, retried with {attempt.name}: {trail.summary()}"

    def _fall_back(self, pages: list[SourcePage], failed: list[int], trails: list[_PageTrail],
                   layer_texts: list[str | None], document_id: str) -> dict[int, PageLayout]:
        out: dict[int, PageLayout] = {}
        from_layer = [i for i in failed if (layer_texts[i] or "").strip()]
        for i in from_layer:
            out[i] = self.text_layer.parse(pages[i], document_id)
        rest = [i for i in failed if i not in out]
        if rest and self.fallback is not None:
            for i, layout in zip(rest, self.fallback.parse_many([pages[i] for i in rest], document_id), strict=True):
                out[i] = layout
        for i in failed:
            why = trails[i].verdict()
            if i in out:
                out[i].reason = f"fell back to {out[i].engine}: {why}"
                out[i].outcome = PageOutcome.FALLBACK
            else:
                p = pages[i]
                out[i] = PageLayout(page=p.number, width_pt=p.width_pt, height_pt=p.height_pt, engine=self.name,
                                    engine_version=self.version, outcome=PageOutcome.UNREAD,
                                    reason=f"{why}; no text layer and no fallback engine")
            log.warning("page %d: %s", pages[i].number, out[i].reason)
        return out


def _text_layer(page: SourcePage) -> str | None:
    return page.pdf_page.get_text("text") if isinstance(page, PdfPage) else None
