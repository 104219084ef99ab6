"""Leases, not timeouts: a worker that dies costs a lease (DOCGROUND_LEASE_S, 30 s), not Redis's visibility timeout.

Every task a worker runs (a document's fan-out, a page batch, a document's indexing) holds a lease in the
registry from the moment it starts until it returns, fails for good or is retried; a thread of the worker
process renews the leases it holds every third of a lease, whatever its engine is doing (a GPU worker's
threads each hold one batch's lease; one renewal covers them all). A worker that dies stops renewing.

Sweepers (a thread in every worker, and the API's runner) look every half lease for expired leases, claim
each with one conditional UPDATE (so of two sweepers only one sends it) and send the same task again.
Tasks are idempotent (first writer wins), so a worker that was only slow and finishes late changes
nothing. A message a worker died holding before it could lease it goes back to its queue after two
sweeps (StrandedMessages). Redis's visibility timeout stays as the last resort (a registry that was unreachable). A task
whose worker went silent more than DOCGROUND_LEASE_MAX_RESENDS times (it always hangs past the hard
time limit, or kills its worker) is not sent again: its document fails with `task_given_up`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import socket
import threading
import time

from docground.errors import TaskGivenUp
from docground.registry import Registry, TaskLease
from docground.settings import Settings

log = logging.getLogger("docground.workers")

# A task sent again may wait behind others in its queue: it is sent once more only after this many leases.
REDISPATCH_HOLD_LEASES = 4


def lease_key(task: str, args: list) -> str:
    return hashlib.sha256(json.dumps([task, args], separators=(",", ":")).encode()).hexdigest()


def sweep_interval_s(settings: Settings) -> float:
    return settings.lease_sweep_s or settings.lease_s / 2


def process_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def reserve(registry: Registry, task: str, args: list, queue: str, lease_s: float) -> None:
    """Lease a task to this process for one lease, not renewed (a message received, not yet started)."""
    registry.take_lease(TaskLease(key=lease_key(task, args), job_id=str(args[0]), task=task, args=json.dumps(args),
                                  queue=queue, owner=process_owner()), lease_s)


class LeaseKeeper:
    """The leases of the tasks this process runs, and the thread that renews them."""

    def __init__(self, registry: Registry, lease_s: float):
        self.registry, self.lease_s = registry, lease_s
        self.owner = process_owner()
        self._held: dict[str, int] = {}  # key -> tasks of this process holding it (a duplicate message may run)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name="docground-leases", daemon=True)
        self._thread.start()

    def take(self, task: str, args: list, queue: str) -> None:
        key = lease_key(task, args)
        with self._lock:
            self._held[key] = self._held.get(key, 0) + 1
        reserve(self.registry, task, args, queue, self.lease_s)

    def release(self, task: str, args: list) -> None:
        key = lease_key(task, args)
        with self._lock:
            left = self._held.get(key, 0) - 1
            if left > 0:
                self._held[key] = left
                return
            self._held.pop(key, None)
        self.registry.release_lease(key, self.owner)

    def renew(self) -> int:
        with self._lock:
            keys = list(self._held)
        return self.registry.renew_leases(self.owner, keys, self.lease_s)

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                self.renew()
            except Exception:  # a registry briefly unreachable: the next round tries again
                log.exception("renewing leases")

    def close(self) -> None:
        self._stop.set()


class LeaseSweeper:
    """Sends again the tasks whose lease expired (their worker died), and puts back in their queue the
    messages a worker received and died before leasing."""

    def __init__(self, registry: Registry, celery, settings: Settings):
        self.registry, self.celery, self.settings = registry, celery, settings
        redis_broker = (settings.broker_url or "").startswith(("redis://", "rediss://", "unix://"))
        self.stranded = StrandedMessages(registry, celery, settings.lease_s) if redis_broker else None

    def sweep(self) -> int:
        if self.stranded is not None:
            self.stranded.sweep()
        claimed = self.registry.claim_expired_leases(self.settings.lease_s * REDISPATCH_HOLD_LEASES)
        for lease in claimed:
            if (lease.lost or 0) > self.settings.lease_max_resends:
                self.give_up(lease)
                continue
            log.warning("task %s of job %s: lease expired (its worker is gone), sending it again", lease.task,
                        lease.job_id)
            self.celery.send_task(lease.task, args=json.loads(lease.args), queue=lease.queue)
        return len(claimed)

    def give_up(self, lease: TaskLease) -> None:
        """A task whose worker went silent once more than it may be resent (one that always hangs past the hard
        time limit, or kills its worker): its document fails with the reason, instead of the task going round."""
        error = TaskGivenUp(
            f"{task_description(lease)} was given up: the worker running it died or passed the hard time limit "
            f"(DOCGROUND_TASK_TIME_LIMIT_S={self.settings.task_time_limit_s}) {lease.lost} times "
            f"(DOCGROUND_LEASE_MAX_RESENDS={self.settings.lease_max_resends})")
        log.error("job %s: %s", lease.job_id, error.message)
        self.registry.advance(lease.job_id, "failed", error=error.message, error_code=error.code)
        self.registry.release_lease(lease.key, None)


class StrandedMessages:
    """Messages Redis handed to a worker that died before it leased them.

    Redis moves a message into kombu's unacked set as it hands it over; the worker leases it a few
    milliseconds later (task_received). A worker killed in between leaves a message that no lease covers,
    which Redis alone would hand out again only after the visibility timeout (an hour). A message in the
    unacked set for more than a lease whose task holds no lease, seen so on two sweeps in a row (one alone
    may fall between a task's release and its acknowledgement), is put back at the head of its queue in
    one transaction (of two sweepers, one moves it). A live worker that still holds it only repeats work
    that is idempotent."""

    def __init__(self, registry: Registry, celery, lease_s: float):
        self.registry, self.celery, self.lease_s = registry, celery, lease_s
        self._unleased: set[bytes] = set()

    def sweep(self) -> int:
        with self.celery.connection_for_write() as connection:
            channel = connection.default_channel
            unleased = self._find_unleased(channel)
            stranded = unleased & self._unleased
            self._unleased = unleased
            for tag in stranded:
                log.warning("message %s: received by a worker that died before leasing it; back in its queue",
                            tag.decode(errors="replace"))
                channel.qos.restore_by_tag(tag)
        return len(stranded)

    def _find_unleased(self, channel) -> set[bytes]:
        client = channel.client
        tags = client.zrangebyscore(channel.unacked_index_key, 0, time.time() - self.lease_s)
        keys: dict[bytes, str] = {}
        for tag in tags:
            raw = client.hget(channel.unacked_key, tag)
            task = delivered_task(raw) if raw else None
            if task is not None:
                keys[tag] = lease_key(*task)
        leased = self.registry.leased_keys(list(keys.values()))
        return {tag for tag, key in keys.items() if key not in leased}


def delivered_task(raw: bytes) -> tuple[str, list] | None:
    """The docground task name and arguments of an entry of kombu's unacked hash (Celery's message
    protocol 2: the body is [args, kwargs, embed], base64 encoded); None for anything else."""
    try:
        payload = json.loads(raw)[0]
        name = payload["headers"]["task"]
        body = payload["body"]
        if payload.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return (name, list(args)) if str(name).startswith("docground.") else None


def task_description(lease: TaskLease) -> str:
    """What a leased task does, as a person reads it (the names are workers/tasks.py's, which imports this)."""
    args = json.loads(lease.args)
    if lease.task == "docground.pages" and len(args) > 1 and args[1]:
        return "the batch of page(s) " + ", ".join(str(n) for n in args[1])
    if lease.task == "docground.finalize":
        return "the document's indexing (chunking, embedding)"
    return "the document's dispatch"


class SweeperThread:
    """A sweeper on a thread of a worker process."""

    def __init__(self, sweeper: LeaseSweeper):
        self.sweeper = sweeper
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="docground-lease-sweeper", daemon=True)

    def start(self) -> SweeperThread:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(sweep_interval_s(self.sweeper.settings)):
            try:
                self.sweeper.sweep()
            except Exception:
                log.exception("sweeping leases")

    def close(self) -> None:
        self._stop.set()
