"""Task leases in the registry (workers/leases.py), on SQLite and PostgreSQL: held while renewed, claimed
by exactly one sweeper once expired, dropped with a finished job, and sent again as the same task."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
import redis as redis_client
from sqlalchemy import inspect, text, update

from docground.registry import Document, Registry, TaskLease
from docground.settings import Settings
from docground.workers.celery_app import make_celery
from docground.workers.leases import LeaseKeeper, LeaseSweeper, lease_key
from docground_testing.cluster import RedisServer
from docground_testing.registries import registry_on

POSTGRES_URL = os.environ.get("DOCGROUND_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request, tmp_path):
    with registry_on(request.param, tmp_path) as registry:
        yield registry


def a_job(registry: Registry, doc_id: str = "d1") -> str:
    registry.ensure_kb("kb")
    doc = Document(id=doc_id, kb="kb", filename="a.pdf", sha256="0" * 64, kind="pdf", size_bytes=1, pages_total=8)
    return registry.register(doc, "fp").job.id


def a_lease(job_id: str, pages: list[int], owner: str = "host:1") -> TaskLease:
    args = [job_id, pages]
    return TaskLease(key=lease_key("docground.pages", args), job_id=job_id, task="docground.pages",
                     args=json.dumps(args), queue="cpu", owner=owner)


def same_database(registry: Registry) -> Registry:
    return Registry(registry.engine.url.render_as_string(hide_password=False))


class SentTasks:
    """Stands in for the Celery app's send_task (the broker is not what these tests are about)."""

    def __init__(self):
        self.sent: list[tuple[str, list, str]] = []
        self.lock = threading.Lock()

    def send_task(self, name, args, queue):
        with self.lock:
            self.sent.append((name, args, queue))


def test_a_held_lease_is_not_swept_and_an_expired_one_is_sent_again_once(registry):
    job_id = a_job(registry)
    registry.take_lease(a_lease(job_id, [1, 2, 3, 4]), lease_s=60)
    registry.take_lease(a_lease(job_id, [5, 6, 7, 8]), lease_s=0.2)
    celery = SentTasks()
    sweeper = LeaseSweeper(registry, celery, Settings(lease_s=60))
    time.sleep(0.5)
    assert sweeper.sweep() == 1
    assert celery.sent == [("docground.pages", [job_id, [5, 6, 7, 8]], "cpu")]
    assert sweeper.sweep() == 0  # claimed: held for the task sent again
    [redispatched] = [le for le in registry.leases(job_id) if le.args == json.dumps([job_id, [5, 6, 7, 8]])]
    assert redispatched.owner is None and redispatched.redispatches == 1


def test_two_sweepers_racing_on_expired_leases_send_each_task_once(registry):
    job_id = a_job(registry)
    for first in range(1, 200, 4):
        registry.take_lease(a_lease(job_id, list(range(first, first + 4))), lease_s=0.01)
    time.sleep(0.1)
    celery = SentTasks()
    sweepers = [LeaseSweeper(same_database(registry), celery, Settings(lease_s=60)) for _ in range(3)]
    threads = [threading.Thread(target=s.sweep) for s in sweepers for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    sent = [json.dumps(args) for _, args, _ in celery.sent]
    assert len(sent) == len(set(sent)) == 50


def test_a_lease_is_renewed_while_held_and_a_dead_owner_loses_it(registry):
    job_id = a_job(registry)
    keeper = LeaseKeeper(registry, lease_s=0.6)  # renews every 0.2 s
    celery = SentTasks()
    sweeper = LeaseSweeper(registry, celery, Settings(lease_s=60))
    try:
        keeper.take("docground.pages", [job_id, [1, 2]], "gpu")
        keeper.take("docground.pages", [job_id, [3, 4]], "gpu")  # a GPU worker's threads: several at once
        for _ in range(6):
            time.sleep(0.3)
            assert sweeper.sweep() == 0
        keeper.release("docground.pages", [job_id, [1, 2]])
        assert [json.loads(le.args)[1] for le in registry.leases(job_id)] == [[3, 4]]
    finally:
        keeper.close()  # the worker dies: nothing renews its lease any more
    time.sleep(1.0)
    assert sweeper.sweep() == 1 and celery.sent == [("docground.pages", [job_id, [3, 4]], "gpu")]


def test_a_late_owner_neither_renews_nor_releases_a_lease_taken_over(registry):
    job_id = a_job(registry)
    registry.take_lease(a_lease(job_id, [1], owner="slow:1"), lease_s=0.05)
    time.sleep(0.2)
    LeaseSweeper(registry, SentTasks(), Settings(lease_s=60)).sweep()
    registry.take_lease(a_lease(job_id, [1], owner="fresh:2"), lease_s=60)
    assert registry.renew_leases("slow:1", [lease_key("docground.pages", [job_id, [1]])], 60) == 0
    registry.release_lease(lease_key("docground.pages", [job_id, [1]]), "slow:1")
    [lease] = registry.leases(job_id)
    assert lease.owner == "fresh:2"


def test_leases_of_finished_or_deleted_jobs_are_dropped_not_sent(registry):
    done_job, deleted_job = a_job(registry, "d1"), a_job(registry, "d2")
    registry.take_lease(a_lease(done_job, [1]), lease_s=0.01)
    registry.take_lease(a_lease(deleted_job, [1]), lease_s=60)
    registry.advance(done_job, "done")
    registry.delete_document("d2")
    time.sleep(0.1)
    celery = SentTasks()
    assert LeaseSweeper(registry, celery, Settings(lease_s=60)).sweep() == 0 and celery.sent == []
    assert registry.leases() == []


def test_an_older_registry_gains_the_leases_table(tmp_path):
    path = tmp_path / "registry.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE knowledge_bases (name VARCHAR(64) NOT NULL PRIMARY KEY, api_key_hash VARCHAR(128), "
                   "created_at DATETIME)")
    registry = Registry(f"sqlite:///{path}")
    assert "task_leases" in inspect(registry.engine).get_table_names()
    job_id = a_job(registry)
    registry.take_lease(a_lease(job_id, [1]), lease_s=60)
    assert len(registry.leases(job_id)) == 1


def test_a_task_lost_in_a_workers_hands_more_than_the_resends_allowed_fails_its_document(registry):
    """Only expiries in a worker's hands count (not a message sent again that waits in its queue): one resend
    allowed, the second loss gives the task up with the reason, and nothing is sent for it."""
    job_id = a_job(registry)
    celery = SentTasks()
    sweeper = LeaseSweeper(registry, celery, Settings(lease_s=60, lease_max_resends=1))
    registry.take_lease(a_lease(job_id, [5, 6], owner="dies:1"), lease_s=0.05)
    time.sleep(0.2)
    assert sweeper.sweep() == 1 and len(celery.sent) == 1  # lost once: sent again
    with registry.session() as s, s.begin():  # the message sent again waits in its queue past the hold
        s.execute(update(TaskLease).values(expires_at=datetime(2000, 1, 1, tzinfo=UTC)))
    assert sweeper.sweep() == 1 and len(celery.sent) == 2  # not held by a worker: not counted, sent again
    [lease] = registry.leases(job_id)
    assert (lease.lost, lease.redispatches) == (1, 2)
    registry.take_lease(a_lease(job_id, [5, 6], owner="dies:2"), lease_s=0.05)  # a worker takes it, and dies too
    time.sleep(0.2)
    assert sweeper.sweep() == 1 and len(celery.sent) == 2  # lost twice: given up, not sent
    doc = registry.document("d1")
    assert doc.status == "failed" and doc.error_code == "task_given_up"
    assert "page(s) 5, 6" in doc.error and "DOCGROUND_LEASE_MAX_RESENDS=1" in doc.error
    assert registry.leases(job_id) == []


def test_an_older_registry_gains_the_lost_count_of_its_leases(registry):
    """A registry made before DOCGROUND_LEASE_MAX_RESENDS holds leases without `lost`: it opens, gains the column
    (empty for the leases it held), and such a lease, expired in a worker's hands, counts from zero."""
    job_id = a_job(registry)
    registry.take_lease(a_lease(job_id, [1, 2]), lease_s=0.05)
    with registry.engine.begin() as conn:
        conn.execute(text("ALTER TABLE task_leases DROP COLUMN lost"))
    registry.engine.dispose()
    older = same_database(registry)
    assert "lost" in {c["name"] for c in inspect(older.engine).get_columns("task_leases")}
    [lease] = older.leases(job_id)
    assert lease.lost is None
    time.sleep(0.2)
    celery = SentTasks()
    assert LeaseSweeper(older, celery, Settings(lease_s=60, lease_max_resends=1)).sweep() == 1
    assert len(celery.sent) == 1 and older.leases(job_id)[0].lost == 1
    older.engine.dispose()


STRAND = """
import os, sys
from docground.settings import Settings
from docground.workers.celery_app import make_celery
with make_celery(Settings(broker_url=sys.argv[1])).connection_for_read() as connection:
    for _ in range(2):  # Redis hands both over; the worker dies before leasing them
        assert connection.default_channel.basic_get("gpu", no_ack=False) is not None
    os._exit(0)
"""


def queued_tasks(broker, queue: str) -> list[list]:
    payloads = [json.loads(raw) for raw in broker.lrange(queue, 0, -1)]
    return [json.loads(base64.b64decode(p["body"]))[0] for p in payloads]


def test_a_message_its_worker_died_holding_unleased_goes_back_to_its_queue(registry, tmp_path):
    """Killed between Redis handing a message over and leasing it (task_received), a worker leaves it in
    kombu's unacked set, covered by no lease: it goes back to its queue within about two leases, not after
    Redis's visibility timeout; a message whose task holds a lease stays with its holder."""
    redis = RedisServer(tmp_path / "redis").start()
    try:
        settings = Settings(broker_url=redis.url, lease_s=1.0)
        celery, broker = make_celery(settings), redis_client.Redis.from_url(redis.url)
        job_id = a_job(registry)
        for pages in ([1, 2], [3, 4]):
            celery.send_task("docground.pages", args=[job_id, pages], queue="gpu")
        registry.take_lease(a_lease(job_id, [3, 4]), lease_s=60)  # [3, 4]'s task is held elsewhere
        subprocess.run([sys.executable, "-c", STRAND, redis.url], check=True, timeout=60)
        assert broker.llen("gpu") == 0 and broker.hlen("unacked") == 2
        sweeper = LeaseSweeper(registry, celery, settings)
        assert sweeper.stranded.sweep() == 0  # delivered less than a lease ago
        time.sleep(1.2)
        assert sweeper.stranded.sweep() == 0  # unleased on one sweep: maybe between a release and its ack
        assert sweeper.sweep() == 0 and sweeper.stranded._unleased  # the lease sweep runs it too
        assert queued_tasks(broker, "gpu") == [[job_id, [1, 2]]]
        assert broker.hlen("unacked") == 1  # [3, 4]: its lease holder's
    finally:
        redis.stop()
