"""More of the crash matrix (#15), with real processes and the default timeouts (visibility 3600 s, stall 7200 s,
lease 30 s) except where a case is about a timeout: PostgreSQL down while a worker indexes a document, or while the
embedded store's owner marks a document it wrote ready, and a page batch that always hangs past its hard time limit.
A document's chunks must equal a clean in-process run's (or, given up, be none), and no other document may change.
The cases of tests/test_worker_crashes.py are not repeated."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import event

from docground.service import Docground
from docground.settings import Settings
from docground.workers.runner import CeleryRunner
from docground_testing.cluster import PostgresServer, long_pdf, stored_chunks, wait_until
from docground_testing.local_cluster import LocalCluster, assert_same_chunks, cluster_fixtures

PAGES = 32
PAGE_DELAY_S = 0.15
# As tests/test_worker_crashes.py: small batches (a document is several tasks), the CPU engines, one embedding
# thread on the 2-core machine.
FIELDS = {"page_batch_size": 4, "ocr_backend": "cpu", "embedding_threads": 1}
READY_WITHIN_S = 300


@pytest.fixture(scope="module")
def document() -> bytes:
    return long_pdf(PAGES, seed=31)


@pytest.fixture(scope="module")
def other_document() -> bytes:
    return long_pdf(5, seed=32)


clean_run, cluster_factory = cluster_fixtures(FIELDS, PAGES, page_delay_s=PAGE_DELAY_S, durable_redis=True,
                                             ready_within_s=READY_WITHIN_S)


def snapshot(cluster: LocalCluster, doc_id: str) -> tuple:
    doc = cluster.service.registry.document(doc_id)
    return doc.status, doc.chunks, doc.pages_done, doc.fingerprint, doc.updated_at, cluster.chunks(doc_id)


@pytest.fixture
def postgres():
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()


def test_postgresql_down_during_the_indexing_step_is_retried_not_failed(
        postgres, cluster_factory, document, other_document, clean_run):
    """PostgreSQL stops while a worker chunks and embeds a document and stays down until the indexing task has
    met the dropped connection: the task is retried (not the document failed), and once PostgreSQL is back the
    document is ready with a clean run's chunks."""
    cluster = cluster_factory(database_url=postgres.url, env={"DOCGROUND_TEST_EMBED_DELAY_S": "4"})
    worker = cluster.worker(pool="prefork")
    other = cluster.submit(other_document, "other.pdf")
    cluster.finish(other)
    before = snapshot(cluster, other)
    doc_id = cluster.submit(document)
    wait_until(lambda: (cluster.settings.home / "embedding" / doc_id).exists(), 180, "the document's indexing step")
    postgres.shut_down()
    down_at = time.monotonic()
    wait_until(lambda: "docground.finalize" in worker.log() and " retry: " in worker.log(), 120,
               "the indexing task to meet the dropped connection and be retried")
    postgres.start()
    print(f"\nPostgreSQL down for {time.monotonic() - down_at:.1f} s during the indexing step")
    cluster.finish(doc_id)
    assert_same_chunks(cluster, doc_id, clean_run, PAGES)  # ready: a job marked failed never becomes ready
    assert cluster.service.registry.document(doc_id).error is None
    assert snapshot(cluster, other) == before


class DownAfterTheWrite(Docground):
    """The store owner's service: PostgreSQL stops right after the first store write, before the registry hears
    that the document is ready, and its engine starts PostgreSQL again at the first error it meets (the database
    is back by the time the owner handles that error, as after a quick restart)."""

    def __init__(self, settings: Settings, postgres: PostgresServer):
        super().__init__(settings)
        self.postgres, self.writes, self.outages = postgres, 0, 0
        event.listen(self.registry.engine, "handle_error", self._back_up)

    def _write(self, kb, doc_id, chunks, fingerprint):
        count = super()._write(kb, doc_id, chunks, fingerprint)
        self.writes += 1
        if self.writes == 1:
            self.postgres.shut_down()
            self.outages += 1
        return count

    def _back_up(self, context) -> None:
        if context.is_pre_ping:  # the pool's check of a pooled connection: it connects anew, and fails then
            return
        if self.outages and not (self.postgres.data / "postmaster.pid").exists():
            self.postgres.start()


def test_the_store_owner_meeting_a_registry_that_is_down_writes_again_not_fails_the_document(
        postgres, tmp_path, embedder, other_document):
    """CeleryRunner (the owner of an embedded store) writes a document the workers embedded; the registry is gone
    when it marks the document ready: the job stays indexable and the next round writes it again, rather than
    the document failing with the dropped connection."""
    settings = Settings(home=tmp_path / "home", database_url=postgres.url, broker_url="redis://127.0.0.1:6379/0",
                        **FIELDS)
    service = DownAfterTheWrite(settings, postgres)
    service._embedder = embedder
    try:
        registration = service.register("kb", "other.pdf", other_document)
        job_id, doc_id = registration.job.id, registration.document.id
        service.parse_pages(job_id, list(range(1, registration.document.pages_total + 1)))  # the workers' part:
        assert service.finalize(job_id, write_store=False).status != "ready"  # parsed, embedded, indexable
        runner = CeleryRunner(service)
        runner.step()  # writes the chunks, meets the registry down
        assert service.outages == 1 and service.registry.job(job_id).stage == "indexable"
        runner.step()
        doc = service.registry.document(doc_id)
        assert doc.status == "ready" and doc.error is None, (doc.status, doc.error)
        assert service.writes == 2 and doc.chunks == len(stored_chunks(service.store("kb"), doc_id)) > 0
    finally:
        service.close()


# As in tests/test_worker_crashes.py: a short hard limit (the case is about it), above a fresh pool process's first
# task, which loads the models. One resend allowed (the default is 3): the batch hangs twice, then is given up.
TASK_TIME_LIMIT_S = 20
HANG_PAGE = 9
MAX_RESENDS = 1


def test_a_batch_that_always_hangs_past_its_hard_time_limit_is_given_up_not_resent_forever(
        cluster_factory, document, other_document):
    cluster = cluster_factory(task_time_limit_s=TASK_TIME_LIMIT_S, lease_max_resends=MAX_RESENDS, env={
        "DOCGROUND_TEST_HANG_PAGE": str(HANG_PAGE), "DOCGROUND_TEST_HANG_S": str(3 * TASK_TIME_LIMIT_S),
        "DOCGROUND_TEST_HANG_TIMES": "100"})
    worker = cluster.worker(pool="prefork")  # time limits are enforced by the prefork pool alone
    other = cluster.submit(other_document, "other.pdf")
    cluster.finish(other)
    before = snapshot(cluster, other)
    doc_id = cluster.submit(document)
    doc = cluster.finish(doc_id)
    assert doc.status == "failed" and doc.error_code == "task_given_up", (doc.status, doc.error)
    assert "the batch of page(s) 9, 10, 11, 12 was given up" in doc.error
    assert "DOCGROUND_LEASE_MAX_RESENDS=1" in doc.error
    hung = sorted(p.name for p in (cluster.settings.home / "hung").iterdir())
    assert hung == [str(HANG_PAGE), f"{HANG_PAGE}.2"]  # sent once, sent again once, then no more
    assert worker.log().count(f"Hard time limit ({TASK_TIME_LIMIT_S}s) exceeded") == 1 + MAX_RESENDS
    assert cluster.chunks(doc_id) == [] and cluster.service.store("kb").count(doc_id) == 0
    assert snapshot(cluster, other) == before
    wait_until(lambda: cluster.service.registry.leases() == [], 60, "the leases to be released")
    assert worker.proc.poll() is None
