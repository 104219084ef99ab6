"""The Celery app of bench/gpu_scaleout.py's workers (`celery -A docground_testing.scaleout_worker worker`):
docground's app and tasks, with the page engine the benchmark asks for (DOCGROUND_SCALEOUT_ENGINE):

  vllm     docground's DeepSeek-OCR-2 engine on its in-process vLLM backend, with the benchmark's two
           departures (the one place they are made): dummy weights (`load_format="dummy"`: no hub here) and
           one rung of fixed-length output per page (`ignore_eos`, DOCGROUND_SCALEOUT_TOKENS tokens: random
           weights never end a page, and every retry rung would only multiply the same work)
  standin  the same engine and engine loop around a continuous-batching stand-in on the CPU
           (docground_testing/stepping_engine.py), for a dry run of the plumbing without a GPU

Every process (driver, CPU worker, GPU workers) builds the same router, so the pipeline fingerprint
agrees; only a GPU worker ever runs the engine. A GPU worker (threads pool, as `docground worker --queues gpu`
runs it) loads its engine and warms it up before it takes a task (docground.workers.tasks, the production
warm-up), then touches home/warm/<hostname>. GPU worker 0 then measures the engine alone on the benchmark's
own pages when asked (home/engine-alone/: the same engine, in the same process, with no queue), before it
takes any task.
"""
from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path

from celery.signals import worker_ready

from docground_testing.module_standins import use_stand_ins_from_env

# A Celery worker is a new interpreter: the stand-in modules bench/gpu_scaleout.py wrote for packages this
# machine lacks (DGBENCH_STUBS) go last on sys.path, before docground imports them.
use_stand_ins_from_env()

from docground.ingest.providers import open_source
from docground.ingest.routing import Router
from docground.service import Docground
from docground.settings import Settings, get_settings
from docground.workers import tasks
from docground.workers.celery_app import app

ENGINE = os.environ.get("DOCGROUND_SCALEOUT_ENGINE", "standin")
TOKENS = int(os.environ.get("DOCGROUND_SCALEOUT_TOKENS", "1000"))
ENGINE_JSON = os.environ.get("DOCGROUND_SCALEOUT_ENGINE_JSON", "")  # more vLLM engine arguments
STANDIN_STEP_S = float(os.environ.get("DOCGROUND_SCALEOUT_STANDIN_STEP_S", "0.02"))
STANDIN_PAGE_S = float(os.environ.get("DOCGROUND_SCALEOUT_STANDIN_PAGE_S", "0.0002"))
ENGINE_ALONE = "engine-alone"  # home/engine-alone/: the documents, the go file and the result


def vllm_engine(settings: Settings):
    from docground.ingest.engines.deepseek_ocr2 import DeepseekOcr2Engine
    from docground.ingest.engines.deepseek_ocr2.configure import pages_in_flight
    from docground.ingest.engines.deepseek_ocr2.prompt import fixed_length, ladder

    def backend():
        from docground.ingest.engines.deepseek_ocr2.backend_vllm import VllmBackend

        workers = None if settings.ocr_preprocess_workers < 0 else settings.ocr_preprocess_workers
        ahead = None if settings.ocr_pages_ahead < 0 else settings.ocr_pages_ahead
        extra = json.loads(ENGINE_JSON) if ENGINE_JSON else {}
        return VllmBackend(settings.ocr_model, preprocess_workers=workers, max_num_seqs=settings.ocr_max_num_seqs,
                           gpu_memory_utilization=settings.ocr_gpu_memory_utilization, pages_ahead=ahead,
                           load_format="dummy", dtype="bfloat16", tokenizer=settings.ocr_model, seed=0, **extra)

    return DeepseekOcr2Engine(load_backend=backend, attempts=fixed_length(ladder()[:1], TOKENS),
                              pages_at_once=pages_in_flight(settings))


def standin_engine(settings: Settings):
    """The vllm engine's shape on the CPU: a page is TOKENS/100 steps; max_num_seqs pages run at once."""
    from docground.ingest.engines.deepseek_ocr2 import DeepseekOcr2Engine
    from docground.ingest.engines.deepseek_ocr2.prompt import fixed_length, ladder
    from docground_testing.stepping_engine import SteppingBackend, SteppingEngine

    def backend():
        seqs = settings.ocr_max_num_seqs
        ahead = seqs // 2 if settings.ocr_pages_ahead < 0 else settings.ocr_pages_ahead
        engine = SteppingEngine(steps=max(1, TOKENS // 100), step_s=STANDIN_STEP_S, per_page_s=STANDIN_PAGE_S,
                                max_running=seqs)
        return SteppingBackend(engine, capacity=seqs + ahead)

    return DeepseekOcr2Engine(load_backend=backend, attempts=fixed_length(ladder()[:1], TOKENS),
                              pages_at_once=settings.ocr_max_num_seqs)


def scaleout_service(settings: Settings) -> Docground:
    engine = vllm_engine(settings) if ENGINE == "vllm" else standin_engine(settings)
    return Docground(settings, router=Router(ocr=engine))


app.conf[tasks.SERVICE_SETTING] = scaleout_service


@worker_ready.connect
def _warm(sender=None, **_) -> None:
    hostname = str(getattr(sender, "hostname", ""))
    if not hostname.startswith("gpu"):
        return  # the CPU worker must not load the vision model (it would take a GPU's memory)
    home = get_settings().home
    marker = home / "warm" / hostname
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = tasks.worker_service().router.ocr
        engine.warm_up()  # done already by docground's own worker_ready handler; a no-op then
        _ = engine.backend  # raises if the engine could not load
    except Exception:
        marker.with_name(marker.name + ".error").write_text(traceback.format_exc())
        raise
    marker.touch()
    if hostname.startswith("gpu0@"):
        engine_alone(engine, home / ENGINE_ALONE)


def engine_alone(engine, folder: Path, timeout_s: float = 900) -> None:
    """When the benchmark asks (folder/go), parse its documents' pages (folder/*.tiff) with this worker's
    engine in one call, as bench/gpu_ocr.py runs the engine, and write folder/result.json. The worker takes
    no task meanwhile (this runs in its worker_ready handler)."""
    deadline = time.monotonic() + timeout_s
    while not (folder / "go").exists():
        if time.monotonic() > deadline or (folder / "skip").exists():
            return
        time.sleep(0.2)
    sources = [open_source(p.read_bytes()) for p in sorted(folder.glob("*.tiff"))]
    pages = [source.page(n) for source in sources for n in range(1, source.page_count + 1)]
    loop = getattr(engine.backend, "loop", None)
    if loop is not None:
        loop.peak_in_engine = 0
    t0 = time.perf_counter()
    layouts = engine.parse_many(pages, "engine-alone")
    wall = time.perf_counter() - t0
    result = {"pages": len(layouts), "wall_s": wall, "pages_per_s": len(layouts) / wall,
              "peak_in_engine": getattr(loop, "peak_in_engine", None)}
    (folder / "result.json").write_text(json.dumps(result))


__all__ = ["app"]
