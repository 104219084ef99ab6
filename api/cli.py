"""The `docground` command: ingest files, query a knowledge base, serve the HTTP API."""

from __future__ import annotations

import json
import sys
from collections import Counter
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from docground.errors import DocgroundError, InvalidRequest
from docground.ingest.providers import sniff_kind
from docground.settings import Settings, describe_error

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
err = Console(stderr=True)
out = Console()

HomeOption = Annotated[Path | None, typer.Option("--home",
                                                 help="data directory (default: $DOCGROUND_HOME or ~/.docground)")]
KbOption = Annotated[str, typer.Option("--kb", help="knowledge base name")]
JsonOption = Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]


def _settings(home: Path | None) -> Settings:
    try:
        return Settings(home=home) if home else Settings()
    except ValidationError as exc:  # a typo in DOCGROUND_<NAME>: say which, and what it accepts
        err.print(f"[red]error:[/red] {escape(describe_error(exc))}")
        raise typer.Exit(2) from exc


def _service(settings: Settings):
    from docground.service import Docground

    return Docground(settings)


def _server(settings: Settings):
    """A client of the `docground serve` that holds this home (api/home.py), or None: then this process
    opens the home itself. The admin key is the one the server reads, from the same settings."""
    from docground.api.client import DocgroundClient
    from docground.api.home import running_server

    lock = running_server(settings.home)
    if lock is None:
        return None
    return DocgroundClient(lock.url, api_key=settings.admin_key, timeout=600.0)


def _server_failed(exc: Exception) -> typer.Exit:
    """An error the server answered (its message, as the embedded path prints it) or a lost connection."""
    from docground.api.client import DocgroundAPIError

    message = exc.message if isinstance(exc, DocgroundAPIError) else f"the server stopped answering: {exc}"
    if isinstance(exc, DocgroundAPIError) and exc.status == 401:
        message += " (the server of this home has an admin key: set DOCGROUND_ADMIN_KEY here too)"
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(2)


def collect_files(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Files named on the command line, and the supported files found under named folders."""
    files: list[Path] = []
    missing: list[Path] = []
    for p in paths:
        if p.is_dir():
            for f in sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith(".")):
                try:
                    with f.open("rb") as fh:
                        sniff_kind(fh.read(8192))
                except (DocgroundError, OSError):
                    continue
                files.append(f)
        elif p.is_file():
            files.append(p)
        else:
            missing.append(p)
    return files, missing


@app.command()
def ingest(paths: Annotated[list[Path], typer.Argument(help="files or folders (searched recursively)")],
           kb: KbOption, as_json: JsonOption = False, home: HomeOption = None) -> None:
    """Ingest files into a knowledge base. Ingesting the same file again changes nothing."""
    from docground.api.models import IngestResult

    files, missing = collect_files(paths)
    results = [IngestResult(filename=str(p), document_id=None, status="failed", error="no such file or folder",
                            error_code="not_found") for p in missing]
    settings = _settings(home)
    service = runner = server = None
    show_bar = not as_json and err.is_terminal
    try:
        if server := _server(settings):
            ingest_file = _server_ingest(server, kb, files)
        else:
            service = _service(settings)
            ingest_file = service.ingest
            if service.settings.broker_url:
                runner, ingest_file = _workers_ingest(service, kb, files)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, disable=not show_bar, transient=True) as bar:
            overall = bar.add_task("files", total=len(files))
            for f in files:
                task = bar.add_task(f.name[:40], total=None)

                def on_page(done: int, total: int, task=task) -> None:
                    bar.update(task, completed=done, total=total)

                result = ingest_file(kb, f.name, f.read_bytes(), progress=on_page)
                result.filename = str(f)
                results.append(result)
                bar.remove_task(task)
                bar.advance(overall)
                if not as_json:
                    _print_result(result)
            if service is not None and any(r.status == "ready" for r in results):
                bar.add_task("indexing vectors", total=None)
                service.optimize(kb)  # this process answers no queries, so it can take the time
    except DocgroundError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    except Exception as exc:
        if server is None or not _is_server_error(exc):
            raise
        raise _server_failed(exc) from exc
    finally:
        if runner is not None:
            runner.close()
        if service is not None:
            service.close()
        if server is not None:
            server.close()
    if as_json:
        keys = ("filename", "document_id", "pages", "chunks", "status", "error")
        print(json.dumps([{k: getattr(r, k) for k in keys} for r in results], indent=2))
    else:
        for r in results[: len(missing)]:
            _print_result(r)
    if any(r.status == "failed" for r in results):
        raise typer.Exit(1)


@contextmanager
def _through(server):
    """A call through the home's server: its failures read as the server's, and the client is closed."""
    try:
        yield server
    except Exception as exc:
        if not _is_server_error(exc):
            raise
        raise _server_failed(exc) from exc
    finally:
        server.close()


def _is_server_error(exc: Exception) -> bool:
    import httpx

    from docground.api.client import DocgroundAPIError

    return isinstance(exc, DocgroundAPIError | httpx.HTTPError)


def _server_ingest(server, kb: str, files: list[Path]):
    """Through the server that holds the home: every file is uploaded first (its runner takes them in
    turn), then followed through its document events with the same progress bar."""
    from collections import deque

    from docground.api.client import DocgroundAPIError
    from docground.api.models import DocumentStatus, IngestResult

    submitted: deque[IngestResult | str] = deque()
    for f in files:
        try:
            submitted.append(server.upload(kb, f.read_bytes(), f.name).document_id)
        except DocgroundAPIError as exc:
            if exc.status >= 500 or exc.status in (401, 403, 429):  # the server's trouble, not the file's
                raise
            submitted.append(IngestResult(filename=f.name, document_id=None, status="failed", error=exc.message,
                                          error_code=exc.code))

    def ingest_file(kb: str, filename: str, data: bytes, progress=None) -> IngestResult:
        found = submitted.popleft()
        if isinstance(found, IngestResult):
            return found
        doc = None
        for event in server.document_events(found):
            doc = event.response if event.name == "done" else DocumentStatus(**event.data)
            if progress is not None and doc.pages_total:
                progress(doc.pages_done, doc.pages_total)
        doc = doc or server.document(found)
        return IngestResult(filename=doc.filename, document_id=doc.document_id, pages=doc.pages_total,
                            chunks=doc.chunks, status=doc.status, error=doc.error, error_code=doc.error_code)

    return ingest_file


def convert_targets(paths: list[Path], out: Path) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Each file and where its outputs go: a folder's files keep their place below it. Files whose
    names differ only in their extension keep the extension in their outputs' names."""
    pairs: dict[Path, tuple[Path, Path]] = {}
    missing: list[Path] = []
    for p in paths:
        files, gone = collect_files([p])
        missing += gone
        for f in files:
            rel = f.relative_to(p) if p.is_dir() else Path(f.name)
            pairs.setdefault(f.resolve(), (f, out / rel.parent / rel.stem))
    taken = Counter(target for _, target in pairs.values())
    return [(f, t if taken[t] == 1 else t.with_name(f.name)) for f, t in pairs.values()], missing


@app.command()
def convert(paths: Annotated[list[Path], typer.Argument(help="files or folders (searched recursively)")],
            out: Annotated[Path | None, typer.Option("--out", help="folder for the outputs (needed unless "
                                                     "--stream)")] = None,
            formats: Annotated[str, typer.Option("--format", help="any of md, json, boxes")] = "md,json,boxes",
            pages: Annotated[str | None, typer.Option("--pages", help="pages to convert, e.g. 1-5,9")] = None,
            workers: Annotated[int, typer.Option("--workers", min=0, help="documents converted at once, each in its "
                                                 "own process; 0: one per core (1 with a vision model in this "
                                                 "process, which keeps its pages in flight itself)")] = 0,
            stream: Annotated[bool, typer.Option("--stream", help="one image or one page (--pages N): print its "
                                                 "markdown as DeepSeek-OCR-2 writes it (endpoint or vLLM backend); "
                                                 "with --out, its outputs are written too")] = False,
            home: HomeOption = None) -> None:
    """Convert documents to reading-order markdown, layout JSON and pages with their blocks' boxes drawn:
    no knowledge base, no embedding. Documents whose outputs are up to date are skipped."""
    import time

    from docground.ingest.convert import ConvertOptions, default_workers, parse_formats, parse_page_ranges

    settings = _settings(home)
    if out is None and not stream:
        err.print("[red]error:[/red] --out is needed (the folder for the outputs), unless --stream prints one page")
        raise typer.Exit(2)
    try:
        options = ConvertOptions(parse_formats(formats), parse_page_ranges(pages) if pages else None,
                                 settings.render_dpi, stream)
        if stream:
            _convert_streaming(settings, options, paths, out)
            return
        targets, missing = convert_targets(paths, out)
        workers = workers or default_workers(settings, len(targets))
        started = time.perf_counter()
        results = _convert_all(settings, options, targets, workers)
    except DocgroundError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    _print_conversions(results, missing, time.perf_counter() - started)
    if missing or any(r.error for r in results):
        raise typer.Exit(1)


def _convert_streaming(settings, options, paths: list[Path], out: Path | None) -> None:
    """One page's markdown to stdout as the model writes it; how the page was read, to stderr."""
    import time

    from docground.ingest.convert import build_converter, streaming_problem

    if problem := streaming_problem(settings):
        raise InvalidRequest(problem)
    if len(paths) != 1 or not paths[0].is_file():
        raise InvalidRequest("--stream reads one file (an image, or one page of a PDF with --pages N); "
                             f"got {', '.join(map(str, paths))}")
    source = paths[0]
    target = convert_targets([source], out)[0][0][1] if out is not None else None

    def show(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    started = time.perf_counter()
    try:
        layout = build_converter(settings, options).stream(source, target, show)
    except OSError as exc:
        raise InvalidRequest(f"{source}: {exc.strerror or exc}") from exc
    read = layout.outcome == "read"  # not a fallback: what was printed is what the model read
    mark = "[green]✓[/green]" if read else "[red]✗[/red]"
    written = f" → {escape(str(target))}.*" if target is not None else ""
    err.print(f"{mark} {escape(str(source))} page {layout.page} in {time.perf_counter() - started:.1f} s "
              f"({escape(layout.reason or '')}){written}", soft_wrap=True)
    if not read:
        raise typer.Exit(1)


def _convert_all(settings, options, targets: list[tuple[Path, Path]], workers: int) -> list:
    """One process: a bar per document's pages too; several: documents spread over the processes."""
    from docground.ingest.convert import build_converter, convert_in_processes

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, disable=not err.is_terminal, transient=True) as bar:
        overall = bar.add_task("documents", total=len(targets))
        if workers == 1:
            return _convert_here(build_converter(settings, options), targets, bar, overall)
        results = []
        for result in convert_in_processes(settings, options, targets, workers):
            results.append(result)
            bar.advance(overall)
        return results


def _convert_here(converter, targets: list[tuple[Path, Path]], bar: Progress, overall) -> list:
    results = []
    for source, target in targets:
        task = bar.add_task(source.name[:40], total=None)

        def on_page(done: int, total: int, task=task) -> None:
            bar.update(task, completed=done, total=total)

        results.append(converter.convert(source, target, on_page))
        bar.remove_task(task)
        bar.advance(overall)
    return results


def _print_conversions(results: list, missing: list[Path], seconds: float) -> None:
    for r in results:
        if r.error:
            err.print(f"[red]✗[/red] {escape(str(r.source))}: {escape(r.error)}", soft_wrap=True)
        elif r.up_to_date:
            out.print(f"[dim]= {escape(str(r.source))}: up to date[/dim]", soft_wrap=True)
        else:
            out.print(f"[green]✓[/green] {escape(str(r.source))}: {r.pages} pages → {escape(str(r.target))}.*",
                      soft_wrap=True)
    for p in missing:
        err.print(f"[red]✗[/red] {escape(str(p))}: no such file or folder", soft_wrap=True)
    pages = sum(r.pages for r in results if not r.error)
    converted = sum(1 for r in results if not r.error and not r.up_to_date)
    failed = len(missing) + sum(1 for r in results if r.error)
    skipped = sum(1 for r in results if r.up_to_date)
    rate = f" ({pages / seconds:.1f} pages/s)" if pages and seconds > 0 else ""
    out.print(f"{converted} converted, {skipped} up to date, {failed} failed; {pages} pages in {seconds:.1f} s{rate}")


def _workers_ingest(service, kb: str, files: list[Path]):
    """With DOCGROUND_BROKER_URL the workers do the work: every file is submitted first (so the workers
    take them in parallel), then followed in the registry with the same progress bar. This process owns
    an embedded store meanwhile and writes the chunks the workers embedded (docground/workers/runner.py)."""
    from collections import deque

    from docground.api.models import IngestResult
    from docground.workers.runner import CeleryRunner, wait_for

    runner = CeleryRunner(service)
    runner.start()
    submitted: deque[IngestResult | str] = deque()  # in the order the caller then asks for them
    for f in files:
        try:
            registration = service.register(kb, f.name, f.read_bytes())
        except DocgroundError as exc:
            submitted.append(IngestResult(filename=f.name, document_id=None, status="failed", error=exc.message,
                                          error_code=exc.code))
            continue
        if registration.created:
            runner.submit(registration.job.id)
        submitted.append(registration.document.id)

    def ingest_file(kb: str, filename: str, data: bytes, progress=None) -> IngestResult:
        found = submitted.popleft()
        if isinstance(found, IngestResult):
            return found
        doc = wait_for(service, found, progress)
        return IngestResult(filename=doc.filename, document_id=doc.id, pages=doc.pages_total, chunks=doc.chunks,
                            status=doc.status, error=doc.error, error_code=doc.error_code)

    return runner, ingest_file


@app.command()
def worker(queues: Annotated[str, typer.Option("--queues", "-Q", help="comma-separated: cpu, gpu")] = "cpu,gpu",
           concurrency: Annotated[int | None, typer.Option(help="processes (prefork) or threads")] = None,
           pool: Annotated[str | None, typer.Option(help="prefork | solo | threads; default: threads for a gpu-only "
                                                         "worker (one process, one engine, "
                                                         "DOCGROUND_GPU_WORKER_TASKS batches at once), else "
                                                         "prefork")] = None,
           loglevel: Annotated[str, typer.Option(help="debug | info | warning")] = "info",
           home: HomeOption = None) -> None:
    """Start a Celery worker on the given queues (needs DOCGROUND_BROKER_URL): `gpu` for the vision model's
    pages (one worker per GPU), `cpu` for the text layer, CPU OCR, chunking and embedding."""
    import os

    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    if home:
        os.environ["DOCGROUND_HOME"] = str(home)  # the worker's tasks read settings from the environment
    settings = _settings(None)  # before importing the Celery app, which reads them too
    from docground.workers.celery_app import QUEUES

    unknown = sorted(set(wanted) - set(QUEUES))
    if not wanted or unknown:
        err.print(f"[red]error:[/red] unknown queue(s) {', '.join(unknown) or '(none given)'}; "
                  f"choose from {', '.join(QUEUES)}")
        raise typer.Exit(2)
    if not settings.broker_url:
        err.print("[red]error:[/red] DOCGROUND_BROKER_URL is not set (e.g. redis://localhost:6379/0); without a "
                  "broker, `docground serve` and `docground ingest` run every step themselves")
        raise typer.Exit(2)
    from docground.workers.celery_app import app as celery_app
    from docground.workers.celery_app import gpu_worker_pool

    if wanted == ["gpu"] and pool is None:
        pool, tasks_at_once = gpu_worker_pool(settings)
        concurrency = concurrency or tasks_at_once
    pool = pool or "prefork"
    argv = ["worker", "-Q", ",".join(wanted), "--pool", pool, "--loglevel", loglevel,
            "--hostname", f"docground-{'-'.join(wanted)}@%h"]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    celery_app.worker_main(argv)


def _print_result(r) -> None:
    if r.status == "failed":
        err.print(f"[red]✗[/red] {r.filename}: {r.error}")
    else:
        out.print(f"[green]✓[/green] {r.filename}: {r.pages} pages, {r.chunks} chunks")


@app.command()
def query(question: Annotated[str, typer.Argument(help="the question")], kb: KbOption,
          top_k: Annotated[int, typer.Option("--top-k", min=1, max=50)] = 5,
          mode: Annotated[str, typer.Option(help="auto (generate when DOCGROUND_LLM_ENDPOINT is set) | extractive | "
                                            "generate")] = "auto",
          as_json: JsonOption = False, home: HomeOption = None) -> None:
    """Ask a knowledge base; the answer cites the exact lines it comes from."""
    if mode not in ("auto", "extractive", "generate"):
        err.print(f"[red]error:[/red] --mode must be auto, extractive or generate, not {mode!r}")
        raise typer.Exit(2)
    settings = _settings(home)
    if server := _server(settings):
        with _through(server):
            response = server.query(kb, question, top_k, mode)
    else:
        service = _service(settings)
        try:
            response = service.query(kb, question, top_k, mode)
        except DocgroundError as exc:
            err.print(f"[red]error:[/red] {exc.message}")
            raise typer.Exit(2) from exc
        finally:
            service.close()
    if as_json:
        print(response.model_dump_json(indent=2))
        return
    out.print(f"[bold]Answer:[/bold] {response.answer or 'nothing relevant found'}")
    for c in response.citations:
        out.print(f"  [{c.n}] {c.filename} p.{c.page}: {len(c.boxes)} line box(es)")
    out.print("[bold]Top chunks:[/bold]")
    for ch in response.chunks:
        pages = sorted({s.page for s in ch.spans})
        snippet = " ".join(ch.text.split())[:160]
        out.print(f"  {ch.score:.3f} {ch.filename} p.{','.join(map(str, pages))}: {snippet}")


@app.command()
def export(document: Annotated[str, typer.Argument(help="the document's id")],
           export_format: Annotated[str, typer.Option("--format", help="md | json")] = "md",
           home: HomeOption = None) -> None:
    """Print an ingested document's reading-order markdown or its layout JSON (as GET
    /v1/documents/{id}/content answers); figures link to their crops on disk."""
    from docground.ingest.renderers import document_layout, document_markdown

    if export_format not in ("md", "json"):
        err.print(f"[red]error:[/red] --format must be md or json, not {export_format!r}")
        raise typer.Exit(2)
    settings = _settings(home)
    if server := _server(settings):
        with _through(server):
            print(_server_export(server, settings, document, export_format), end="" if export_format == "md" else "\n")
        return
    service = _service(settings)
    try:
        layouts = service.document_layouts(document)

        def link(block) -> str | None:
            path = service.figure_file(document, block.id)
            return str(path.resolve()) if path else None

        if export_format == "json":
            print(document_layout(document, layouts, link).model_dump_json(indent=1))
        else:
            print(document_markdown(layouts, page_markers=True, figure_link=link), end="")
    except DocgroundError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    finally:
        service.close()


def _server_export(server, settings: Settings, document: str, export_format: str) -> str:
    """The server's content of the document, its figure links (API paths) turned into the crops' files in
    the home, as the embedded path prints them."""
    import re

    from docground.api.models import DocumentLayout
    from docground.ingest.processors.figures import figure_path

    if export_format == "json":
        text = server.document_layout(document).model_dump_json()
    else:
        text = server.document_markdown(document)

    def on_disk(m: re.Match) -> str:
        path = str(figure_path(settings.home / "blobs" / document, m.group(1)).resolve())
        return json.dumps(path)[1:-1] if export_format == "json" else path

    text = re.sub(rf"/v1/documents/{re.escape(document)}/figures/([\w.-]+)", on_disk, text)
    if export_format == "json":
        return DocumentLayout.model_validate_json(text).model_dump_json(indent=1)
    return text


@app.command()
def delete(document: Annotated[str, typer.Argument(help="the document's id")], home: HomeOption = None) -> None:
    """Delete a document: its chunks, pages, jobs and files."""
    settings = _settings(home)
    if server := _server(settings):
        with _through(server):
            server.delete_document(document)
    else:
        service = _service(settings)
        try:
            service.delete_document(document)
        except DocgroundError as exc:
            err.print(f"[red]error:[/red] {exc.message}")
            raise typer.Exit(2) from exc
        finally:
            service.close()
    out.print(f"deleted {document}")


@app.command()
def optimize(kb: KbOption, home: HomeOption = None) -> None:
    """Build the vector index of a knowledge base's embedded store (run it where no queries are served)."""
    settings = _settings(home)
    if server := _server(settings):
        server.close()
        err.print(f"[red]error:[/red] the server at {server.http.base_url} serves this home and holds its stores: "
                  "stop it to build the vector index here")
        raise typer.Exit(2)
    service = _service(settings)
    try:
        changed = service.optimize(kb)
    except DocgroundError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    finally:
        service.close()
    out.print("vector index built" if changed else "vector index already up to date")


snapshot_app = typer.Typer(no_args_is_help=True, help="Back a knowledge base up into one file, or restore it.")
app.add_typer(snapshot_app, name="snapshot")


@contextmanager
def _own_service(settings: Settings):
    """This process's own service on the home; a DocgroundError ends the command with its message."""
    service = _service(settings)
    try:
        yield service
    except DocgroundError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}")
        raise typer.Exit(2) from exc
    finally:
        service.close()


@snapshot_app.command("create")
def snapshot_create(kb: Annotated[str, typer.Argument(help="knowledge base name")],
                    file: Annotated[Path, typer.Argument(help="the snapshot to write (a .tar.gz)")],
                    home: HomeOption = None) -> None:
    """Write a knowledge base's ready documents (registry rows, originals, parsed pages) and its vectors into
    one file."""
    from docground.snapshots import create_snapshot

    with _own_service(_settings(home)) as service:
        manifest = create_snapshot(service, kb, file)
    out.print(f"{escape(manifest.kb)}: {manifest.documents} document(s) → {escape(str(file))}")


@snapshot_app.command("restore")
def snapshot_restore(file: Annotated[Path, typer.Argument(help="a file `docground snapshot create` wrote")],
                     home: HomeOption = None) -> None:
    """Restore a snapshot's knowledge base into a home that lacks it: the same documents and ids, the same
    answers. Refused when the home's embedding model or pipeline differs from the snapshot's."""
    from docground.snapshots import restore_snapshot

    with _own_service(_settings(home)) as service:
        manifest = restore_snapshot(service, file)
        service.optimize(manifest.kb)  # this process answers no queries, so it can take the time
    out.print(f"{escape(manifest.kb)}: {manifest.documents} document(s) restored")


@app.command()
def migrate(kb: Annotated[str, typer.Argument(help="knowledge base name")],
            to_qdrant: Annotated[str, typer.Option("--to-qdrant", help="the Qdrant server's URL")],
            home: HomeOption = None) -> None:
    """Copy an embedded knowledge base's vectors into a Qdrant server as they are (nothing is parsed or
    embedded again); then set DOCGROUND_QDRANT_URL to serve it from there."""
    from docground.snapshots import migrate_to_server, on_server

    with _own_service(_settings(home)) as service:
        target = on_server(service, to_qdrant)
        try:
            moved = migrate_to_server(service, target, kb)
        finally:
            target.close()
    out.print(f"{escape(kb)}: {moved.points} chunk(s) → {escape(to_qdrant)}, collection {moved.collection}; "
              f"set DOCGROUND_QDRANT_URL={escape(to_qdrant)} to serve it from there")


@app.command()
def serve(host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="port")] = 8000, home: HomeOption = None,
          no_auth: Annotated[bool, typer.Option("--no-auth", help="serve a non-loopback interface without "
                                                "DOCGROUND_ADMIN_KEY: whoever reaches it reads and writes everything")
                             ] = False) -> None:
    """Serve the HTTP API (GET /healthz, POST /v1/knowledge-bases/{kb}/query, ...)."""
    settings = _settings(home)  # before importing the app, whose modules read them too
    import uvicorn

    from docground.api.app import create_app
    from docground.api.auth import is_loopback
    from docground.api.home import client_url, running_server

    if not settings.admin_key and not is_loopback(host) and not no_auth:
        err.print(f"[red]error:[/red] refusing to serve {host} without an admin key: set DOCGROUND_ADMIN_KEY "
                  "(knowledge bases then need API keys), bind 127.0.0.1, or pass --no-auth")
        raise typer.Exit(2)
    if other := running_server(settings.home, wait_s=0):
        err.print(f"[red]error:[/red] {escape(str(settings.home))} is already served at {other.url} (pid "
                  f"{other.pid}): one server per home")
        raise typer.Exit(2)
    # The home's lock file names this server while it runs: the CLI on this home then goes through it.
    uvicorn.run(create_app(settings, lock_url=client_url(host, port)), host=host, port=port, log_level="info")


@app.command()
def status(as_json: JsonOption = False, home: HomeOption = None) -> None:
    """What runs on a home: its server (address, pid), the workers, the knowledge bases and the documents
    in flight (pages done of total)."""
    settings = _settings(home)
    server = _server(settings)
    with _through(server) if server else nullcontext():
        kbs = _server_contents(server) if server else _home_contents(settings)
    from docground.api.home import read_lock

    lock = read_lock(settings.home) if server else None
    report = {"home": str(settings.home),
              "server": {"url": lock.url, "pid": lock.pid} if lock else None,
              "workers": _workers(settings),
              "knowledge_bases": kbs}
    if as_json:
        print(json.dumps(report, indent=2))
        return
    out.print(f"home: {escape(report['home'])}")
    out.print(f"server: {lock.url} (pid {lock.pid})" if lock else
              "server: none (each command opens the home itself)")
    workers = report["workers"]
    if workers["broker"]:
        note = f"; {workers['note']}" if workers["note"] else ""
        out.print(f"workers: {', '.join(workers['names']) or 'none answered'} (broker "
                  f"{escape(workers['broker'])}{escape(note)})")
    else:
        out.print(f"workers: none ({workers['note']})")
    out.print(f"knowledge bases: {len(kbs)}" + ("" if kbs else " (none yet)"))
    for kb in kbs:
        out.print(f"  {escape(kb['name'])}: {kb['documents']} document(s)")
    flying = [(kb["name"], d) for kb in kbs for d in kb["in_flight"]]
    out.print(f"documents in flight: {len(flying)}")
    for name, d in flying:
        pages = f"{d['pages_done']}/{d['pages_total']} pages" if d["pages_total"] else "pages not counted yet"
        out.print(f"  {escape(name)}/{escape(d['filename'])} ({d['document_id']}): {d['status']}, {pages}")


IN_FLIGHT = ("queued", "processing")


def _server_contents(server) -> list[dict]:
    """Knowledge bases the server's admin key sees, with their documents in flight."""
    kbs = []
    for info in server.knowledge_bases():
        docs = [d.model_dump(include={"document_id", "filename", "status", "pages_done", "pages_total"})
                for d in server.documents(info.name) if d.status in IN_FLIGHT]
        kbs.append({"name": info.name, "documents": info.documents, "in_flight": docs})
    return kbs


def _home_contents(settings: Settings) -> list[dict]:
    """The same read from the home's registry (no store is opened: a worker may hold one)."""
    from sqlalchemy import select

    from docground.registry import KnowledgeBase, Registry

    if settings.database_url is None and not (settings.home / "registry.sqlite3").is_file():
        return []  # nothing ingested here yet; don't make a registry just to look
    registry = Registry(settings.sqlalchemy_url)
    try:
        with registry.session() as s:
            names = list(s.scalars(select(KnowledgeBase.name).order_by(KnowledgeBase.name)))
        kbs = []
        for name in names:
            docs = registry.documents(name)
            kbs.append({"name": name, "documents": len(docs), "in_flight": [
                {"document_id": d.id, "filename": d.filename, "status": d.status, "pages_done": d.pages_done,
                 "pages_total": d.pages_total} for d in docs if d.status in IN_FLIGHT]})
        return kbs
    finally:
        registry.engine.dispose()


def _workers(settings: Settings) -> dict:
    """Celery workers answering a ping on the broker; without a broker there are none to know of."""
    if not settings.broker_url:
        return {"broker": None, "names": [], "note": "no DOCGROUND_BROKER_URL: jobs run in the threads of "
                                                     "the process that holds the home"}
    from docground.workers.celery_app import app as celery_app

    try:
        replies = celery_app.control.ping(timeout=1.0) or []
    except Exception as exc:  # an unreachable broker: say so rather than fail the whole report
        return {"broker": _redacted(settings.broker_url), "names": [], "note": f"broker unreachable: {exc}"}
    return {"broker": _redacted(settings.broker_url), "names": sorted(n for reply in replies for n in reply),
            "note": None}


def _redacted(url: str) -> str:
    """The broker URL without its password."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return parts.geturl()


@app.command()
def mcp(home: HomeOption = None,
        kb: Annotated[str | None, typer.Option("--kb", help="reach only this knowledge base")] = None) -> None:
    """Serve the MCP tools over stdio, for MCP clients that start the server (docground serve has them at /mcp)."""
    settings = _settings(home)
    from docground.api.mcp_server import run_stdio

    run_stdio(settings, kb)


@app.command()
def openapi() -> None:
    """Print the HTTP API's OpenAPI schema (for client generators), without starting a server."""
    settings = _settings(None)  # before importing the app, whose modules read them too
    from docground.api.app import create_app

    print(json.dumps(create_app(settings).openapi(), indent=2))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
