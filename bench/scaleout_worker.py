"""The Celery app of bench/gpu_scaleout.py's workers (`celery -A bench.scaleout_worker worker`): docground's
app and tasks, with the page engine the benchmark asks for (DOCGROUND_SCALEOUT_ENGINE):

  vllm     docground's DeepSeek-OCR-2 engine on its in-process vLLM backend, with the benchmark's two
           departures (the one place they are made): dummy weights (`load_format="dummy"`: no hub here) and
           one rung of fixed-length output per page (`ignore_eos`, DOCGROUND_SCALEOUT_TOKENS tokens: random
           weights never end a page, and every retry rung would only multiply the same work)
  standin  a stand-in GPU engine for a dry run without a GPU: each batch sleeps as a GPU batch would take

Every process (driver, CPU worker, GPU workers) builds the same router, so the pipeline fingerprint
agrees; only a GPU worker ever runs the engine (it loads on first use). A GPU worker (solo pool) loads its
engine and parses two warm-up pages before it takes a task, then touches home/warm/<hostname>.
"""

from __future__ import annotations

import io
import os
import time
import traceback

from celery.signals import worker_ready

from bench.gpu_ocr import use_stand_ins_from_env

# A Celery worker is a new interpreter: the stand-in modules bench/gpu_scaleout.py wrote for packages this
# machine lacks (DGBENCH_STUBS) go last on sys.path, before docground imports them.
use_stand_ins_from_env()

from docground.ingest.engines.base import PageEngine
from docground.ingest.providers import open_source
from docground.ingest.routing import Router
from docground.ingest.schema import PageLayout
from docground.service import Docground
from docground.settings import Settings, get_settings
from docground.workers import tasks
from docground.workers.celery_app import GPU_QUEUE, app

ENGINE = os.environ.get("DOCGROUND_SCALEOUT_ENGINE", "standin")
TOKENS = int(os.environ.get("DOCGROUND_SCALEOUT_TOKENS", "1000"))
STANDIN_BATCH_S = float(os.environ.get("DOCGROUND_SCALEOUT_STANDIN_BATCH_S", "0.5"))
STANDIN_PAGE_S = float(os.environ.get("DOCGROUND_SCALEOUT_STANDIN_PAGE_S", "0.05"))


class StandInGpuEngine(PageEngine):
    """Takes a fixed time per batch plus a time per page, on the gpu queue; reads nothing."""

    name, version, queue = "standin-gpu", "1", GPU_QUEUE

    def parse_many(self, pages, document_id: str) -> list[PageLayout]:
        time.sleep(STANDIN_BATCH_S + STANDIN_PAGE_S * len(pages))
        return [PageLayout(page=p.number, width_pt=p.width_pt, height_pt=p.height_pt, engine=self.name,
                           engine_version=self.version) for p in pages]


def vllm_engine(settings: Settings):
    from docground.ingest.engines.deepseek_ocr2 import DeepseekOcr2Engine
    from docground.ingest.engines.deepseek_ocr2.prompt import fixed_length, ladder

    def backend():
        from docground.ingest.engines.deepseek_ocr2.backend_vllm import VllmBackend

        workers = None if settings.ocr_preprocess_workers < 0 else settings.ocr_preprocess_workers
        return VllmBackend(settings.ocr_model, preprocess_workers=workers, max_num_seqs=settings.ocr_max_num_seqs,
                           gpu_memory_utilization=settings.ocr_gpu_memory_utilization, load_format="dummy",
                           dtype="bfloat16", tokenizer=settings.ocr_model, seed=0)

    return DeepseekOcr2Engine(load_backend=backend, attempts=fixed_length(ladder()[:1], TOKENS))


def scaleout_service(settings: Settings) -> Docground:
    engine = vllm_engine(settings) if ENGINE == "vllm" else StandInGpuEngine()
    return Docground(settings, router=Router(ocr=engine))


app.conf[tasks.SERVICE_SETTING] = scaleout_service


@worker_ready.connect
def _warm(sender=None, **_) -> None:
    if not str(getattr(sender, "hostname", "")).startswith("gpu"):
        return  # the CPU worker must not load the vision model (it would take a GPU's memory)
    if not type(getattr(sender, "pool", None)).__module__.endswith(".solo"):
        return  # the CPU worker (prefork) runs no engine
    from PIL import Image

    marker = get_settings().home / "warm" / sender.hostname
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        service = tasks.worker_service()
        buf = io.BytesIO()
        Image.new("RGB", (1191, 1684), "white").save(buf, format="TIFF", dpi=(144, 144), save_all=True,
                                                      append_images=[Image.new("RGB", (1191, 1684), "white")])
        source = open_source(buf.getvalue())
        pages = [source.page(n) for n in (1, 2)]
        service.router.ocr.parse_many(pages, "warm-up")
        getattr(service.router.ocr, "backend", None)  # raises if the engine could not load
    except Exception:
        marker.with_name(marker.name + ".error").write_text(traceback.format_exc())
        raise
    marker.touch()


__all__ = ["app"]
