"""Documents to files, with no knowledge base and no embedding (`docground convert`): the reading-order
markdown, the layout JSON and page images with the blocks' boxes drawn, read by the same router and
engines as ingestion and rendered by `renderers.py`.

For a document whose outputs go to `<folder>/<NAME>`:
  NAME.md                 reading-order markdown; figures linked as figures/<block_id>.png
  NAME.json               the layout JSON (renderers.DocumentLayout)
  NAME.boxes/page-N.png   with `boxes`: page N with every block's box and kind drawn
  figures/<block_id>.png  figure crops (block ids derive from the content, so documents never clash)
  NAME.manifest.json      what the outputs were made from: a document whose manifest matches its
                          content, the engines and the options, and whose outputs all exist, is skipped.

`--stream` reads one page with DeepSeek-OCR-2 and hands its markdown on as the model writes it (the page
goes to the model whatever its text layer holds); with `--out`, the page's outputs are written as above.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from docground.errors import InvalidRequest
from docground.settings import Settings

from .engines.deepseek_ocr2 import DeepseekOcr2Engine
from .engines.deepseek_ocr2.configure import model_in_process, uses_endpoint
from .engines.deepseek_ocr2.output import MarkdownStream
from .engines.deepseek_ocr2.schema import TextSink
from .engines.factory import build_router
from .pipeline import PARSER_VERSION, PageParser, ProgressCallback, document_id, file_sha256, require_readable
from .processors import across_pages
from .processors.figures import figure_path, save_figure_crops
from .providers import PageLimits, Source
from .renderers import RENDERER_VERSION, FigureLink, document_layout, document_markdown, draw_blocks
from .schema import Block, BlockKind, PageLayout

FORMATS = ("md", "json", "boxes")
_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_formats(spec: str) -> tuple[str, ...]:
    """`md,json,boxes` (any of them, any order) → the formats in canonical order."""
    asked = {f.strip().lower() for f in spec.split(",") if f.strip()}
    unknown = sorted(asked - set(FORMATS))
    if unknown or not asked:
        raise InvalidRequest(f"--format: {', '.join(unknown) or '(none)'} unknown; choose from {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in asked)


def parse_page_ranges(spec: str) -> tuple[tuple[int, int], ...]:
    """`1-5,9` → ((1, 5), (9, 9)): 1-based, inclusive."""
    ranges = []
    for part in filter(str.strip, spec.split(",")):
        match = _RANGE.match(part)
        first, last = (int(match[1]), int(match[2] or match[1])) if match else (0, 0)
        if not match or not 1 <= first <= last:
            raise InvalidRequest(f"--pages: {part.strip()!r} is not a page or a range such as 1-5")
        ranges.append((first, last))
    if not ranges:
        raise InvalidRequest("--pages: no page given")
    return tuple(ranges)


def selected_pages(ranges: tuple[tuple[int, int], ...] | None, page_count: int) -> list[int]:
    if ranges is None:
        return list(range(1, page_count + 1))
    return sorted({n for first, last in ranges for n in range(first, min(last, page_count) + 1)})


@dataclass(frozen=True)
class ConvertOptions:
    formats: tuple[str, ...] = FORMATS
    pages: tuple[tuple[int, int], ...] | None = None  # None: every page
    dpi: int = 144  # of the figure crops and the boxes images
    stream: bool = False  # one page, read by DeepSeek-OCR-2 whatever its text layer holds, printed as it is read


@dataclass
class Conversion:
    source: Path
    target: Path  # <folder>/<NAME>: the outputs' common stem
    pages: int = 0
    up_to_date: bool = False  # skipped: its outputs already match
    error: str | None = None
    outputs: list[Path] = field(default_factory=list)


def manifest_path(target: Path) -> Path:
    return target.with_name(f"{target.name}.manifest.json")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f"{path.name}.part")
    part.write_bytes(data)
    part.replace(path)


class Converter:
    def __init__(self, parser: PageParser, options: ConvertOptions):
        self.parser = parser
        self.options = options

    def made_from(self, sha256: str) -> dict:
        """What a document's outputs depend on: its content, the parser and engines, the renderer, the options."""
        o = self.options
        return {"sha256": sha256, "parser": PARSER_VERSION, "engines": self.parser.engine_versions,
                "renderer": RENDERER_VERSION, "formats": list(o.formats),
                "pages": [list(r) for r in o.pages] if o.pages else None, "dpi": o.dpi, "stream": o.stream}

    def up_to_date(self, target: Path, made_from: dict) -> list[Path] | None:
        """The outputs, when the manifest says they were made from exactly this and they all exist."""
        try:
            manifest = json.loads(manifest_path(target).read_text())
        except (OSError, ValueError):
            return None
        outputs = [target.parent / name for name in manifest.get("outputs", [])]
        if manifest.get("made_from") != made_from or not all(p.is_file() for p in outputs):
            return None
        return outputs

    def convert(self, path: Path, target: Path, progress: ProgressCallback | None = None) -> Conversion:
        """One document's outputs; a file that cannot be read comes back with its error, nothing raised."""
        result = Conversion(source=path, target=target)
        try:
            data = path.read_bytes()
            made_from = self.made_from(file_sha256(data))
            if (outputs := self.up_to_date(target, made_from)) is not None:
                result.up_to_date, result.outputs = True, outputs
                return result
            result.pages, result.outputs = self._convert(data, document_id("", made_from["sha256"]), target, progress)
            self._write_manifest(target, made_from, result.outputs)
        except Exception as exc:  # every failure is reported with its file; the other files go on
            result.error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        return result

    def _convert(self, data: bytes, doc_id: str, target: Path,
                 progress: ProgressCallback | None) -> tuple[int, list[Path]]:
        source = self.parser.open(data)
        try:
            numbers = selected_pages(self.options.pages, source.page_count)
            if not numbers:
                raise InvalidRequest(f"--pages selects none of the document's {source.page_count} page(s)")
            layouts = self.parser.parse_pages(source, doc_id, numbers, progress)
            require_readable(layouts)
            across_pages(layouts)
            return len(layouts), self._render(source, doc_id, layouts, target)
        finally:
            source.close()

    def stream(self, path: Path, target: Path | None, on_markdown: TextSink) -> PageLayout:
        """One page read by DeepSeek-OCR-2, its markdown handed to `on_markdown` as the model writes it; with
        a target, the page's outputs written as `convert` writes them. Errors raise (one file, nothing to go on
        with); a page the model fails is still read down the engine's ladder and fallbacks, as in `convert`,
        and its layout's reason says so."""
        engine = self.parser.router.ocr
        if not isinstance(engine, DeepseekOcr2Engine):
            raise InvalidRequest("--stream needs DeepSeek-OCR-2 as the OCR engine (see streaming_problem)")
        data = path.read_bytes()
        made_from = self.made_from(file_sha256(data))
        doc_id = document_id("", made_from["sha256"])
        source = self.parser.open(data)
        try:
            page = source.page(self._one_page(path, source.page_count))
            if page.refused is not None:
                raise page.refused
            route = self.parser.router.route(page)
            markdown = MarkdownStream(on_markdown)
            layout = engine.stream(page, doc_id, markdown.feed)
            markdown.close()
            layout.reason = f"{route.reason}; streamed: {layout.reason}"
            if target is not None:
                across_pages([layout])
                self._write_manifest(target, made_from, self._render(source, doc_id, [layout], target))
            return layout
        finally:
            source.close()

    def _one_page(self, path: Path, page_count: int) -> int:
        numbers = selected_pages(self.options.pages, page_count)
        if len(numbers) == 1:
            return numbers[0]
        if self.options.pages is None:
            raise InvalidRequest(f"--stream reads one page; {path.name} has {page_count}: choose one with --pages N")
        raise InvalidRequest(f"--stream reads one page; --pages selects {len(numbers)} of {path.name}'s "
                             f"{page_count} page(s)")

    def _render(self, source: Source, doc_id: str, layouts: list[PageLayout], target: Path) -> list[Path]:
        folder, formats, outputs = target.parent, self.options.formats, []
        link = _figure_links(folder)
        if "md" in formats or "json" in formats:
            save_figure_crops(folder, source, layouts, self.options.dpi)
            outputs += [figure_path(folder, b.id) for lay in layouts for b in lay.blocks
                        if b.kind == BlockKind.figure and link(b)]
        if "md" in formats:
            outputs.append(target.with_name(f"{target.name}.md"))
            _write(outputs[-1], document_markdown(layouts, page_markers=True, figure_link=link).encode())
        if "json" in formats:
            outputs.append(target.with_name(f"{target.name}.json"))
            _write(outputs[-1], document_layout(doc_id, layouts, link).model_dump_json(indent=1).encode())
        if "boxes" in formats:
            outputs += self._draw_pages(source, layouts, target)
        return outputs

    def _draw_pages(self, source: Source, layouts: list[PageLayout], target: Path) -> list[Path]:
        folder = target.with_name(f"{target.name}.boxes")
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for layout in layouts:
            page = source.page(layout.page)
            if page.refused is not None:
                continue  # too large to render: its layout says why
            paths.append(folder / f"page-{layout.page}.png")
            part = paths[-1].with_name(f"{paths[-1].name}.part")
            draw_blocks(page.render(self.options.dpi), layout).save(part, format="PNG", compress_level=3)
            part.replace(paths[-1])
        return paths

    @staticmethod
    def _write_manifest(target: Path, made_from: dict, outputs: list[Path]) -> None:
        names = [p.relative_to(target.parent).as_posix() for p in outputs]
        _write(manifest_path(target), json.dumps({"made_from": made_from, "outputs": names}, indent=1).encode())


def _figure_links(folder: Path) -> FigureLink:
    """Figures linked relative to the markdown beside them; a figure without a crop (a speck) has no link."""
    def link(block: Block) -> str | None:
        path = figure_path(folder, block.id)
        return path.relative_to(folder).as_posix() if path.is_file() else None

    return link


# ---- documents spread over processes: the text layer and Tesseract read one page per process at a time,
# so a folder converts in parallel; a vision model in this process keeps its own pages in flight instead.

_converter: Converter | None = None


def streaming_problem(settings: Settings) -> str | None:
    """Why `--stream` cannot run with these settings, naming the setting to change; None when it can (an
    endpoint, or vLLM in this process: the backends that hand text on while the model writes it)."""
    if uses_endpoint(settings) or settings.ocr_backend == "vllm":
        return None
    if settings.ocr_backend == "auto" and model_in_process(settings):
        return None  # vLLM and a GPU are here
    how = ("set DOCGROUND_OCR_ENDPOINT to an OpenAI-compatible `vllm serve` URL ending in /v1 (with "
           "DOCGROUND_OCR_BACKEND=auto or endpoint), or DOCGROUND_OCR_BACKEND=vllm on a machine with vLLM and a GPU")
    reader = {"none": "DOCGROUND_OCR_BACKEND=none reads pages from their text layer alone",
              "cpu": "DOCGROUND_OCR_BACKEND=cpu reads pages with Tesseract",
              "transformers": "DOCGROUND_OCR_BACKEND=transformers runs DeepSeek-OCR-2 in batches"}.get(
        settings.ocr_backend, "no DeepSeek-OCR-2 backend is configured (DOCGROUND_OCR_BACKEND=auto found no "
                              "DOCGROUND_OCR_ENDPOINT, nor vLLM with a GPU), so Tesseract reads pages")
    return f"--stream prints the markdown as DeepSeek-OCR-2 writes it, but {reader}, which does not stream: {how}"


def default_workers(settings: Settings, documents: int) -> int:
    if settings.ocr_backend != "none" and model_in_process(settings):
        return 1
    return max(1, min(documents, os.cpu_count() or 1))


def build_converter(settings: Settings, options: ConvertOptions) -> Converter:
    """The converter with ingestion's router and page limits (ingest/engines/factory.py)."""
    parser = PageParser(build_router(settings), PageLimits.from_settings(settings), settings.page_batch_size)
    return Converter(parser, options)


def _start_worker(settings: Settings, options: ConvertOptions) -> None:
    global _converter
    _converter = build_converter(settings, options)


def _convert_in_worker(source: Path, target: Path) -> Conversion:
    return _converter.convert(source, target)


def convert_in_processes(settings: Settings, options: ConvertOptions, targets: list[tuple[Path, Path]],
                         workers: int) -> Iterator[Conversion]:
    """Each document converted by one of `workers` processes; conversions come back as they finish."""
    context = multiprocessing.get_context("spawn")  # no state of this process leaks into the workers
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(settings, options)) as pool:
        futures = [pool.submit(_convert_in_worker, source, target) for source, target in targets]
        for future in as_completed(futures):
            yield future.result()
