"""The Celery application, configured from settings: Redis broker, `gpu` and `cpu` queues, at-least-once delivery.

Delivery: a task message is acknowledged only after the task returns (late ack), a worker reserves one
message per task it can run at once (prefetch 1), a task whose worker process dies is requeued (reject on
worker lost), and a message a dead worker held comes back once the visibility timeout passes.

A GPU worker is one process with one engine that runs DOCGROUND_GPU_WORKER_TASKS page batches at once, on
threads (gpu_worker_pool): their pages share the engine's continuous batching, so while one batch's last
pages finish and it is stored and acknowledged, the others keep the engine full. Each batch is still its
own late-acknowledged message: a worker that dies leaves every batch it held for another. The hard time limit is
checked against the visibility timeout so that no running task is redelivered while it still runs. Every
task is idempotent (docground/service.py), so at-least-once delivery gives an exactly-once outcome.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from docground.settings import Settings, get_settings

CPU_QUEUE = "cpu"  # the text layer, CPU OCR, fan-out, chunking, embedding, indexing
GPU_QUEUE = "gpu"  # pages for the vision model (DeepSeek-OCR-2): one worker process per GPU
QUEUES = (CPU_QUEUE, GPU_QUEUE)


class UnsafeTimeouts(ValueError):
    pass


def check_timeouts(settings: Settings) -> None:
    """Redis redelivers a message unacknowledged for the visibility timeout: a task that may still be
    running then (its hard limit, or a retry's countdown) would run twice at once."""
    longest = max(settings.task_time_limit_s, settings.retry_backoff_max_s)
    if settings.visibility_timeout_s <= longest:
        raise UnsafeTimeouts(
            f"DOCGROUND_VISIBILITY_TIMEOUT_S ({settings.visibility_timeout_s}) must exceed the longest task "
            f"(DOCGROUND_TASK_TIME_LIMIT_S {settings.task_time_limit_s}) and the longest retry backoff "
            f"(DOCGROUND_RETRY_BACKOFF_MAX_S {settings.retry_backoff_max_s})")


def gpu_worker_pool(settings: Settings) -> tuple[str, int]:
    """The pool and concurrency of a worker of the `gpu` queue alone: threads of one process around one
    engine, as many as page batches it runs at once."""
    return "threads", settings.gpu_worker_tasks


def make_celery(settings: Settings) -> Celery:
    return configure(Celery("docground", include=["docground.workers.tasks"]), settings)


def configure(app: Celery, settings: Settings) -> Celery:
    if not settings.broker_url:
        raise ValueError("DOCGROUND_BROKER_URL is not set: without a broker, jobs run in-process")
    check_timeouts(settings)
    vt = settings.visibility_timeout_s
    app.conf.update(
        broker_url=settings.broker_url,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit_s,
        task_soft_time_limit=max(1, int(settings.task_time_limit_s * 0.9)),
        task_ignore_result=True,  # job state lives in the registry, not in a result backend
        task_default_queue=CPU_QUEUE,
        task_queues=[Queue(q, routing_key=q) for q in QUEUES],
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a restarting Redis is waited for, not given up on
        broker_transport_options={
            "visibility_timeout": vt,
            # sweep for a dead worker's messages about ten times per visibility timeout (at most every 10 s)
            "unacked_restore_interval": max(1, min(10, vt // 10)),
            "unacked_restore_throttle": 1,
            "socket_timeout": 30,
            "socket_connect_timeout": 10,
        },
        broker_heartbeat=0,
        worker_cancel_long_running_tasks_on_connection_loss=False,  # they finish; their results are durable
        worker_hijack_root_logger=False,
        # In-process vLLM needs the real stdout (its engine core calls sys.stdout.fileno()); Celery's
        # default swaps it for a logging proxy, and the GPU worker's engine then fails to start.
        worker_redirect_stdouts=False,
    )
    return app


# The workers' app (`celery -A docground.workers.celery_app worker`, or `docground worker`), configured
# from the environment; processes that only send tasks use make_celery(their settings).
app = Celery("docground", include=["docground.workers.tasks"])
if get_settings().broker_url:
    configure(app, get_settings())
