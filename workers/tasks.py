"""Celery tasks: a document task fans a job out into page batches on the `gpu` or `cpu` queue; the
batch that completes the last page sends the finalize task (chunk, embed, index) to the `cpu` queue.

Each task calls one stage of docground/service.py and is safe to run twice: pages parsed earlier are
skipped, page results are first-writer-wins, chunk ids derive from content. A task carries only a job
id (and page numbers): the registry says what is left, so a redelivered or duplicated message repeats
at most some work. While a task runs it holds a lease in the registry, renewed by a thread of its
process: a task whose worker died is sent again once its lease expires (workers/leases.py), well before
Redis's visibility timeout would redeliver it; so is a task the prefork pool killed at its hard time
limit. Retries back off exponentially; a task that keeps failing fails its job (and its document) with
the error; bad input (a DocgroundError) is not retried.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from celery import Task
from celery.exceptions import TimeLimitExceeded
from celery.signals import task_postrun, task_prerun, task_received, worker_ready

from docground.errors import DocgroundError, NotFound
from docground.registry import Registry
from docground.service import Docground
from docground.settings import Settings, get_settings

from .celery_app import CPU_QUEUE, GPU_QUEUE, app
from .leases import LeaseKeeper, LeaseSweeper, SweeperThread, reserve

log = logging.getLogger("docground.workers")

DOCUMENT_TASK = "docground.document"
PAGES_TASK = "docground.pages"
FINALIZE_TASK = "docground.finalize"

# How a worker process builds its service is the Celery app's to say (`app.conf.docground_service`, a
# callable Settings -> Docground): an app built around these tasks with other engines sets it there.
SERVICE_SETTING = "docground_service"
_service: Docground | None = None
_service_lock = threading.Lock()


def worker_service() -> Docground:
    """This worker process's service, built on first use (after the pool forked; once for all its threads)."""
    global _service
    with _service_lock:
        if _service is None:
            factory: Callable[[Settings], Docground] = app.conf.get(SERVICE_SETTING) or Docground
            _service = factory(get_settings())
        return _service


_keeper: LeaseKeeper | None = None
_keeper_pid = 0


def lease_keeper() -> LeaseKeeper:
    """This process's lease keeper (a prefork child makes its own after the fork)."""
    global _keeper, _keeper_pid
    with _service_lock:
        if _keeper is None or _keeper_pid != os.getpid():
            _keeper, _keeper_pid = None, os.getpid()
    service = worker_service()
    with _service_lock:
        if _keeper is None:
            _keeper = LeaseKeeper(service.registry, service.settings.lease_s)
        return _keeper


def page_queue(router, engine) -> str:
    """The queue for pages an engine reads: an engine that needs a GPU says so (`queue = "gpu"`);
    everything else (text layer, Tesseract) runs on the `cpu` queue."""
    if engine is None:
        return CPU_QUEUE
    return GPU_QUEUE if engine.queue == GPU_QUEUE else CPU_QUEUE


def page_batches(service: Docground, job_id: str) -> list[tuple[str, list[int]]]:
    """The job's pages not parsed yet, grouped by queue, in batches of DOCGROUND_PAGE_BATCH_SIZE."""
    job = service.registry.job(job_id)
    doc = service.registry.document(job.document_id) if job else None
    if job is None or doc is None:
        raise NotFound(f"job {job_id!r} no longer exists")
    pending = service.registry.pending_pages(doc.id, job.fingerprint, doc.pages_total)
    if not pending:
        return []
    by_queue: dict[str, list[int]] = {}
    source = service.pipeline.open(service.original(doc))
    try:
        for n in pending:
            by_queue.setdefault(page_queue(service.router, service.router.route(source.page(n)).engine), []).append(n)
    finally:
        source.close()
    size = service.pipeline.batch_size
    return [(queue, pages[i:i + size]) for queue, pages in by_queue.items() for i in range(0, len(pages), size)]


class JobTask(Task):
    """A task of one job: when it fails for good, so does the job (and its document, with the error)."""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        if isinstance(exc, TimeLimitExceeded):
            # Not a failure for good: the prefork pool killed the task's process at the hard limit (this runs
            # in the worker's parent, the message already acknowledged). The task's lease, no longer renewed,
            # expires and a sweeper sends the task again, as for a worker that died.
            log.warning("%s%s killed at its hard time limit: sent again once its lease expires", self.name, args)
            return
        job_id = args[0] if args else kwargs.get("job_id")
        if job_id:
            worker_service().fail_job(job_id, exc)


_settings = get_settings()
TASK_OPTIONS = {
    "bind": True, "base": JobTask, "autoretry_for": (Exception,), "dont_autoretry_for": (DocgroundError,),
    "retry_backoff": 2, "retry_backoff_max": _settings.retry_backoff_max_s, "retry_jitter": True,
    "max_retries": _settings.task_max_retries,
}


@app.task(name=DOCUMENT_TASK, **TASK_OPTIONS)
def document_task(self, job_id: str) -> int:
    """Fan out: one task per batch of pending pages; with none pending, straight to finalize."""
    service = worker_service()
    try:
        batches = page_batches(service, job_id)
    except NotFound:
        return 0  # deleted meanwhile
    if not batches:
        self.app.send_task(FINALIZE_TASK, args=[job_id], queue=CPU_QUEUE)
    for queue, pages in batches:
        self.app.send_task(PAGES_TASK, args=[job_id, pages], queue=queue)
    service.registry.heartbeat(job_id, dispatched=True)
    return len(batches)


@app.task(name=PAGES_TASK, **TASK_OPTIONS)
def pages_task(self, job_id: str, pages: list[int]) -> int:
    """Parse a batch; the batch that completes the document's last page sends finalize (a second one
    racing it sends it too: finalize is idempotent)."""
    service = worker_service()
    try:
        done = service.parse_pages(job_id, pages)
        job = service.registry.job(job_id)
        doc = service.registry.document(job.document_id) if job else None
    except NotFound:
        return 0
    if job is not None and doc is not None and job.stage == "parsing" and done >= doc.pages_total:
        self.app.send_task(FINALIZE_TASK, args=[job_id], queue=CPU_QUEUE)
    return done


@app.task(name=FINALIZE_TASK, **TASK_OPTIONS)
def finalize_task(self, job_id: str) -> str:
    """Chunk, embed and index. Workers write a Qdrant server themselves; an embedded store admits only
    its owner process, so there the embedded chunks wait for it (stage `indexable`)."""
    service = worker_service()
    try:
        doc = service.finalize(job_id, write_store=bool(service.settings.qdrant_url))
    except NotFound:
        return "gone"
    return doc.status


LEASED_TASKS = (DOCUMENT_TASK, PAGES_TASK, FINALIZE_TASK)


def _queue_of(delivery_info: dict | None) -> str:
    """The queue a message came from, where a task sent again goes."""
    return (delivery_info or {}).get("routing_key") or CPU_QUEUE


_receiver: tuple[int, Registry] | None = None


def receiver_registry(settings: Settings) -> Registry:
    """The registry of the process that receives messages (a prefork parent builds no service)."""
    global _receiver
    with _service_lock:
        if _receiver is None or _receiver[0] != os.getpid():
            _receiver = (os.getpid(), Registry(settings.sqlalchemy_url))
        return _receiver[1]


@task_received.connect
def _reserve_lease(sender=None, request=None, **_) -> None:
    """A message is leased the moment this worker receives it, not only when a thread or child starts
    it: a worker killed between the two would otherwise leave the message, unleased, in Redis's unacked
    set until the visibility timeout (an hour). Not renewed: the task's own lease (task_prerun) takes over."""
    if request is None or request.name not in LEASED_TASKS or not request.args:
        return
    try:
        settings = get_settings()
        reserve(receiver_registry(settings), request.name, list(request.args), _queue_of(request.delivery_info),
                settings.lease_s)
    except Exception:  # the task's own lease still covers it once it starts
        log.exception("reserving the lease of %s", request.name)


@task_prerun.connect
def _take_lease(sender=None, task=None, args=None, **_) -> None:
    if task is not None and task.name in LEASED_TASKS and args:
        lease_keeper().take(task.name, list(args), _queue_of(task.request.delivery_info))


@task_postrun.connect
def _release_lease(sender=None, task=None, args=None, state=None, **_) -> None:
    """After the task returned, failed for good or asked for a retry (a new message, leased when it runs).
    Without a state the task did not end: its process is being terminated (the pool's SIGTERM at a hard time
    limit raises SystemExit, which only runs the finally blocks). Its lease stays, expires, and is swept."""
    if state is None:
        return
    if task is not None and task.name in LEASED_TASKS and args:
        try:
            lease_keeper().release(task.name, list(args))
        except Exception:  # the lease then expires and the task, idempotent, runs once more
            log.exception("releasing the lease of %s", task.name)


_sweeper: SweeperThread | None = None


@worker_ready.connect
def _start_sweeper(sender=None, **_) -> None:
    """Every worker sweeps for tasks whose lease expired, with the receiving process's registry."""
    global _sweeper
    settings = get_settings()
    celery = getattr(sender, "app", None) or app
    _sweeper = SweeperThread(LeaseSweeper(receiver_registry(settings), celery, settings)).start()


@worker_ready.connect
def _warm_up(sender=None, **_) -> None:
    """A solo or threads worker (a GPU worker: one process, one engine) loads its models before the
    first task rather than inside it, and its engines run a real batch's shapes once (DeepSeek-OCR-2 on
    in-process vLLM), so the first batch is as fast as the later ones; prefork children build theirs
    lazily after the fork. Only the engines of the queues this worker consumes: a `cpu` worker never
    loads the vision model onto a GPU."""
    pool = type(getattr(sender, "pool", None)).__module__
    if pool.endswith((".solo", ".thread")):
        service = worker_service()
        _ = service.pipeline  # the embedder, the router and the pipeline fingerprint
        consumed = consumed_queues(sender)
        for engine in service.router.engines:
            if consumed is None or page_queue(service.router, engine) in consumed:
                engine.warm_up()


def consumed_queues(consumer) -> set[str] | None:
    """The queues a worker consumes (None where its consumer does not say)."""
    try:
        return set(consumer.app.amqp.queues.consume_from)
    except AttributeError:
        return None
