"""A GPU worker as deployed (`docground worker --queues gpu`: one process, one engine, several page batches
at once on threads), with real processes: a private redis-server, a CPU worker, GPU workers killed with
SIGKILL, and the DEFAULT timeouts. The engine is DeepSeek-OCR-2's page engine on the engine loop of
in-process vLLM (engine_loop.py), around a small continuous-batching engine
(docground_testing/stepping_engine.py) that takes a number of steps per page and answers each page with
grounded markdown made from its pixels, so chunks are the same whoever parses them.

What must hold: batches share the engine (pages of several batches in it at once), each batch is
acknowledged only once stored, a worker killed with batches in hand costs their leases (30 s), not
Redis's visibility timeout (an hour), and the outcome equals a clean in-process run chunk for chunk.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest
import redis as redis_client
from PIL import Image, ImageDraw

from docground.ingest.engines.deepseek_ocr2 import DeepseekOcr2Engine
from docground.ingest.routing import Router
from docground.service import Docground
from docground.settings import Settings
from docground.workers import tasks
from docground.workers.celery_app import GPU_QUEUE, app, gpu_worker_pool
from docground.workers.runner import CeleryRunner, wait_for
from docground_testing.cluster import RedisServer, WorkerProcess, cluster_env, stored_chunks, wait_until
from docground_testing.stepping_engine import SteppingBackend, SteppingEngine

PAGES = 40
BATCH = 4
STEPS_PER_PAGE = 20
STEP_S = 0.05  # a page takes a second; 3 batches of 4 at once: ~12 pages/s
WORKER_ENV = "DGTEST_GPU_WORKER"  # set only in the worker processes this test starts


def stepping_backend(settings: Settings) -> SteppingBackend:
    engine = SteppingEngine(steps=STEPS_PER_PAGE, step_s=STEP_S, peak_file=settings.home / "peak")
    return SteppingBackend(engine, capacity=3 * BATCH)


def stepping_service(settings: Settings) -> Docground:
    engine = DeepseekOcr2Engine(load_backend=lambda: stepping_backend(settings), pages_at_once=BATCH)
    return Docground(settings, router=Router(ocr=engine))


if os.environ.get(WORKER_ENV):  # `celery -A tests.test_gpu_worker worker`: these workers' service
    app.conf[tasks.SERVICE_SETTING] = stepping_service


def scanned_tiff(pages: int) -> bytes:
    frames = []
    for n in range(pages):
        im = Image.new("RGB", (300, 420), "white")
        ImageDraw.Draw(im).text((20, 20 + 7 * n), f"scan {n}", fill="black")
        frames.append(im)
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:], dpi=(72, 72))
    return buf.getvalue()


@pytest.fixture(scope="module")
def document() -> bytes:
    return scanned_tiff(PAGES)


def fields(home: Path, broker_url: str | None = None) -> dict:
    """The defaults, timeouts included; only the batch size, the engines and the threads are the test's."""
    return {"home": home, "broker_url": broker_url, "page_batch_size": BATCH, "ocr_backend": "none",
            "embedding_threads": 1, "gpu_worker_tasks": 3}


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


def test_gpu_workers_run_batches_on_threads():
    assert gpu_worker_pool(Settings(gpu_worker_tasks=5)) == ("threads", 5)


def gpu_messages_held(broker: redis_client.Redis) -> int:
    """Messages of the gpu queue that workers have received and not acknowledged (kombu's unacked set)."""
    return sum(1 for raw in broker.hvals("unacked") if json.loads(raw)[2] == GPU_QUEUE)


def test_a_gpu_worker_shares_its_engine_and_a_killed_one_costs_a_lease(tmp_path, embedder, document, clean_run):
    redis = RedisServer(tmp_path / "redis", durable=True).start()
    broker = redis_client.Redis.from_url(redis.url)
    settings = Settings(**fields(tmp_path / "home", redis.url))
    assert settings.visibility_timeout_s == 3600 and settings.lease_s == 30  # the defaults
    env = cluster_env(fields(tmp_path / "home", redis.url), **{WORKER_ENV: "1"})
    service = stepping_service(settings)
    service._embedder = embedder
    runner = CeleryRunner(service)
    workers: list[WorkerProcess] = []
    pool, threads = gpu_worker_pool(settings)

    def gpu_worker() -> WorkerProcess:
        w = WorkerProcess(env, tmp_path, queues="gpu", pool=pool, concurrency=threads, app="tests.test_gpu_worker")
        workers.append(w.start())
        return w

    try:
        runner.start()
        workers.append(WorkerProcess(env, tmp_path, queues="cpu", pool="prefork", app="tests.test_gpu_worker").start())
        first = gpu_worker()
        registration = service.register("kb", "scan.tiff", document)
        doc_id = registration.document.id
        runner.submit(registration.job.id)
        done = lambda: service.registry.document(doc_id).pages_done  # noqa: E731
        leased = lambda: len(service.registry.leases(registration.job.id))  # noqa: E731

        # Killed with batches in hand, leased (a worker leases a message as it receives it). A kill in the
        # milliseconds between Redis handing a message over and that lease, which a kill timed on a finished
        # batch can hit, costs two sweeps of the stranded-message check (workers/leases.py), not an hour.
        wait_until(lambda: done() >= 2 * BATCH and leased() >= 2 and gpu_messages_held(broker) == leased(), 120,
                   "two batches done and batches in hand, leased")
        first.kill()  # SIGKILL: nothing acknowledged, nothing cleaned up
        killed_at = time.monotonic()
        assert done() < PAGES
        peak = int((settings.home / "peak").read_text())
        assert peak > BATCH  # pages of more than one batch were in the one engine at once
        gpu_worker()
        doc = wait_for(service, doc_id, timeout_s=240)
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
        broker.close()
        runner.close()
        service.close()
        redis.stop()


class VisionStandIn(DeepseekOcr2Engine):
    """DeepSeek-OCR-2's engine class (gpu queue), recording warm-ups instead of loading a model."""

    def __init__(self):
        super().__init__(load_backend=lambda: None)
        self.warmed = 0

    def warm_up(self, pages=None):
        self.warmed += 1


@pytest.mark.parametrize(("queues", "warmed"), [(["cpu"], 0), (["gpu"], 1), (["cpu", "gpu"], 1)])
def test_only_a_worker_of_the_gpu_queue_warms_the_vision_model(monkeypatch, tmp_path, embedder, queues, warmed):
    from celery.concurrency.solo import TaskPool

    from docground.workers.celery_app import make_celery

    engine = VisionStandIn()
    service = Docground(Settings(home=tmp_path / "home"), router=Router(ocr=engine))
    service._embedder = embedder
    monkeypatch.setattr(tasks, "_service", service)
    celery = make_celery(Settings(broker_url="redis://127.0.0.1:1/0"))
    celery.amqp.queues.select(queues)  # what `-Q` does

    class Consumer:  # what worker_ready is sent with: the pool and the app
        pool, app = object.__new__(TaskPool), celery

    tasks._warm_up(Consumer())
    assert engine.warmed == warmed
    service.close()
