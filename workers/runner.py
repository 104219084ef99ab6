"""Who runs a registered job: threads of this process (no broker) or the Celery workers (a broker).

Store ownership. An embedded store (qdrant-edge, the default) admits one process. The process that
serves queries (`docground serve`, or a `docground ingest` run) owns it, so with a broker the workers
parse, chunk and embed, and leave the embedded chunks for the owner (job stage `indexable`); the
owner's runner writes them into its store. With a Qdrant server (DOCGROUND_QDRANT_URL) any worker
writes, and the runner only dispatches. Without a broker everything runs on this process's threads.

Recovery. The registry is the source of truth: a task whose lease expired (its worker died) is sent
again within a lease and a half (workers/leases.py; every worker sweeps too), a job that no task has touched for
DOCGROUND_STALL_TIMEOUT_S (a broker that lost its queue, a dispatch lost in a crash) is dispatched
again, and the in-process runner resumes every unfinished job when it starts. Every stage is
idempotent, so a duplicate dispatch only repeats work. The owner of an embedded store, as it starts and
before any query, takes out the chunks that a write cut short (its process killed mid-upsert) left of
a job still indexing: the half of a document a dead process wrote does not answer questions.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Protocol

from docground.errors import StoreBusy
from docground.registry import ACTIVE_STAGES, Document, is_unreachable, stale_before
from docground.service import Docground

from .celery_app import CPU_QUEUE, make_celery
from .leases import LeaseSweeper, sweep_interval_s
from .tasks import DOCUMENT_TASK

log = logging.getLogger("docground.workers")

POLL_S = 0.5
TERMINAL = ("ready", "failed")


class Runner(Protocol):
    def start(self) -> None: ...

    def submit(self, job_id: str) -> None: ...

    def close(self) -> None: ...


def make_runner(service: Docground) -> Runner:
    return CeleryRunner(service) if service.settings.broker_url else InProcessRunner(service)


class InProcessRunner:
    """No broker: jobs run on threads of this process, which owns the stores (the one-command default)."""

    def __init__(self, service: Docground, threads: int | None = None):
        self.service = service
        self.jobs: queue.Queue[str | None] = queue.Queue()
        self.stop = threading.Event()
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"docground-ingest-{i}", daemon=True)
                         for i in range(threads or service.settings.ingest_threads)]

    def start(self) -> None:
        self.service.discard_cut_writes()
        for t in self._threads:
            t.start()
        for job in self.service.registry.jobs(ACTIVE_STAGES):  # resume what a stopped process left
            self.submit(job.id)

    def submit(self, job_id: str) -> None:
        with self._lock:
            if job_id in self._queued:
                return
            self._queued.add(job_id)
        self.jobs.put(job_id)

    def _work(self) -> None:
        while not self.stop.is_set():
            job_id = self.jobs.get()
            if job_id is None:
                return
            try:
                job = self.service.registry.job(job_id)
                if job is not None and job.stage == "indexable":
                    self.service.index_job(job_id)
                elif job is not None and job.stage in ACTIVE_STAGES:
                    self.service.run_job(job_id, stop=self.stop)
            except Exception:
                log.exception("job %s", job_id)
            finally:
                with self._lock:
                    self._queued.discard(job_id)

    def close(self, timeout_s: float = 120.0) -> None:
        """Stop after the page batch in hand; an unfinished job resumes at the next start."""
        self.stop.set()
        for _ in self._threads:
            self.jobs.put(None)
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            if t.is_alive():
                t.join(max(0.0, deadline - time.monotonic()))


class CeleryRunner:
    """A broker: jobs go to the workers. This process writes the chunks workers embedded when it owns
    an embedded store, and dispatches again the jobs the registry shows stalled."""

    def __init__(self, service: Docground, celery=None):
        self.service = service
        self.celery = celery or make_celery(service.settings)
        self.owns_store = not service.settings.qdrant_url
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="docground-owner", daemon=True)
        self._next_sweep = 0.0
        self._next_lease_sweep = 0.0
        self.leases = LeaseSweeper(service.registry, self.celery, service.settings)

    def start(self) -> None:
        if self.owns_store:
            self.service.discard_cut_writes()
        self._thread.start()

    def submit(self, job_id: str) -> None:
        self.celery.send_task(DOCUMENT_TASK, args=[job_id], queue=CPU_QUEUE)
        self.service.registry.heartbeat(job_id, dispatched=True)

    def _loop(self) -> None:
        while not self.stop.wait(POLL_S):
            try:
                self.step()
            except Exception:
                log.exception("owner loop")

    def step(self) -> None:
        """One round: index what workers embedded (when this process owns the store), then, now and
        then, dispatch stalled jobs again."""
        registry = self.service.registry
        if self.owns_store:
            for job in registry.jobs(("indexable",)):
                try:
                    self.service.index_job(job.id)
                except StoreBusy:  # another process (`docground serve`) owns this store and will index it
                    continue
                except Exception as exc:
                    if is_unreachable(exc):  # the job stays indexable: the next round writes it again
                        log.warning("indexing job %s: the registry is unreachable (%s); trying again", job.id, exc)
                        continue
                    log.exception("indexing job %s", job.id)
                    self.service.fail_job(job.id, exc)
        now = time.monotonic()
        if now >= self._next_lease_sweep:
            self._next_lease_sweep = now + sweep_interval_s(self.service.settings)
            self.leases.sweep()
        if now >= self._next_sweep:
            timeout = self.service.settings.stall_timeout_s
            self._next_sweep = now + max(1.0, min(60.0, timeout / 4))
            for job in registry.jobs(ACTIVE_STAGES, heartbeat_before=stale_before(timeout)):
                log.warning("job %s (document %s) silent for %d s: dispatching it again", job.id,
                            job.document_id, timeout)
                self.submit(job.id)

    def close(self) -> None:
        self.stop.set()
        if self._thread.is_alive():
            self._thread.join(30)


def wait_for(service: Docground, document_id: str, progress: Callable[[int, int], None] | None = None,
             timeout_s: float | None = None) -> Document:
    """Poll the registry until the document is ready or failed (any process may be doing the work)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        doc = service.registry.document(document_id)
        if doc is None:
            raise LookupError(f"document {document_id} was deleted")
        if progress:
            progress(doc.pages_done, doc.pages_total)
        if doc.status in TERMINAL:
            return doc
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"document {document_id} is still {doc.status} ({doc.pages_done}/{doc.pages_total})")
        time.sleep(POLL_S / 2)
