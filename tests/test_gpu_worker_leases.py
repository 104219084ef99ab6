"""A GPU worker (one process, several page batches at once on threads into one engine) killed with SIGKILL,
with the DEFAULT timeouts: its batches come back through their leases (30 s), not Redis's visibility
timeout (an hour), and the document equals a clean run chunk for chunk. The engine is DeepSeek-OCR-2's
page engine around the tests' small continuous-batching engine (docground_testing/stepping_engine.py)."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from docground.ingest.engines.deepseek_ocr2 import DeepseekOcr2Engine
from docground.ingest.routing import Router
from docground.service import Docground
from docground.settings import Settings
from docground.workers import tasks
from docground.workers.celery_app import app, gpu_worker_pool
from docground.workers.runner import CeleryRunner, wait_for
from docground_testing.cluster import RedisServer, WorkerProcess, cluster_env, stored_chunks, wait_until
from docground_testing.stepping_engine import SteppingBackend, SteppingEngine

PAGES = 24
BATCH = 4
STEPS_PER_PAGE = 20
STEP_S = 0.05  # a page takes a second
WORKER_ENV = "DGTEST_GPU_LEASE_WORKER"  # set only in the worker processes this test starts


def stepping_service(settings: Settings) -> Docground:
    def backend() -> SteppingBackend:
        return SteppingBackend(SteppingEngine(steps=STEPS_PER_PAGE, step_s=STEP_S), capacity=3 * BATCH)

    return Docground(settings, router=Router(ocr=DeepseekOcr2Engine(load_backend=backend, pages_at_once=BATCH)))


if os.environ.get(WORKER_ENV):  # `celery -A tests.test_gpu_worker_leases worker`: these workers' service
    app.conf[tasks.SERVICE_SETTING] = stepping_service


def scanned_tiff(pages: int) -> bytes:
    frames = []
    for n in range(pages):
        im = Image.new("RGB", (300, 420), "white")
        ImageDraw.Draw(im).text((20, 20 + 7 * n), f"scanned page {n}", fill="black")
        frames.append(im)
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:], dpi=(72, 72))
    return buf.getvalue()


def fields(home: Path, broker_url: str | None = None) -> dict:
    """The defaults, timeouts included; only the batch size, the engines and the threads are the test's."""
    return {"home": home, "broker_url": broker_url, "page_batch_size": BATCH, "ocr_backend": "none",
            "embedding_threads": 1, "gpu_worker_tasks": 3}


@pytest.fixture(scope="module")
def document() -> bytes:
    return scanned_tiff(PAGES)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, document, embedder):
    service = stepping_service(Settings(**fields(tmp_path_factory.mktemp("clean") / "home")))
    service._embedder = embedder
    try:
        result = service.ingest("kb", "scan.tiff", document)
        assert result.status == "ready" and result.pages == PAGES, result
        return stored_chunks(service.store("kb"), result.document_id)
    finally:
        service.close()


def test_a_killed_gpu_worker_costs_a_lease_with_the_default_timeouts(tmp_path, embedder, document, clean_run):
    redis = RedisServer(tmp_path / "redis", durable=True).start()
    settings = Settings(**fields(tmp_path / "home", redis.url))
    assert settings.visibility_timeout_s == 3600 and settings.lease_s == 30  # the defaults
    env = cluster_env(fields(tmp_path / "home", redis.url), **{WORKER_ENV: "1"})
    service = stepping_service(settings)
    service._embedder = embedder
    runner = CeleryRunner(service)
    workers: list[WorkerProcess] = []
    pool, threads = gpu_worker_pool(settings)

    def gpu_worker() -> WorkerProcess:
        w = WorkerProcess(env, tmp_path, queues="gpu", pool=pool, concurrency=threads,
                          app="tests.test_gpu_worker_leases")
        workers.append(w.start())
        return w

    try:
        runner.start()
        workers.append(WorkerProcess(env, tmp_path, queues="cpu", pool="prefork",
                                     app="tests.test_gpu_worker_leases").start())
        first = gpu_worker()
        registration = service.register("kb", "scan.tiff", document)
        doc_id = registration.document.id
        runner.submit(registration.job.id)
        done = lambda: service.registry.document(doc_id).pages_done  # noqa: E731
        wait_until(lambda: done() >= BATCH and len(service.registry.leases(registration.job.id)) >= 2, 120,
                   "the first batch done and batches in hand")
        first.kill()  # SIGKILL with batches in hand: nothing acknowledged, nothing cleaned up
        killed_at = time.monotonic()
        assert done() < PAGES
        gpu_worker()
        doc = wait_for(service, doc_id, timeout_s=300)
        print(f"\nGPU worker: SIGKILL to ready with the default timeouts: {time.monotonic() - killed_at:.1f} s")
        assert doc.status == "ready" and doc.pages_done == PAGES, (doc.status, doc.error)
        assert stored_chunks(service.store("kb"), doc_id) == clean_run  # none lost, none duplicated
        assert doc.chunks == len(clean_run) == service.store("kb").count(doc_id)
    except BaseException:
        for w in workers:
            print(f"--- {w.name}\n{w.log()[-3000:]}")
        raise
    finally:
        for w in workers:
            w.kill()
        runner.close()
        service.close()
        redis.stop()
