"""The crash matrix with real processes and the DEFAULT timeouts (visibility 3600 s, stall 7200 s, lease 30 s)
except where a case is about a timeout: a private redis-server, Celery worker processes killed with SIGKILL, a
private PostgreSQL restarted or down while a worker indexes or the store's owner marks a document ready, a page
batch that always hangs past its hard time limit, this process as the API (it owns the embedded store and sweeps
leases, as `docground serve` does). A document's chunks must equal a clean in-process run's (or, given up, be
none), and no other document may change. The API process killed: tests/test_api_crashes.py."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import event

from docground.ingest.pipeline import document_id, file_sha256
from docground.service import Docground
from docground.settings import Settings
from docground.workers.runner import CeleryRunner
from docground.workers.tasks import PAGES_TASK, page_batches
from docground_testing.cluster import PostgresServer, long_pdf, stored_chunks, wait_until
from docground_testing.local_cluster import LocalCluster, assert_same_chunks, cluster_fixtures

PAGES = 32
PAGE_DELAY_S = 0.15
# Only what is not a timeout differs from the defaults: small batches (so a document is several tasks),
# the CPU engines, one embedding thread on the 2-core machine.
FIELDS = {"page_batch_size": 4, "ocr_backend": "cpu", "embedding_threads": 1}
# Eventually ready: the lease (30 s), a sweep (every 15 s) and the work, with room for a loaded machine.
READY_WITHIN_S = 300


@pytest.fixture(scope="module")
def document() -> bytes:
    return long_pdf(PAGES, seed=11)


@pytest.fixture(scope="module")
def other_document() -> bytes:
    return long_pdf(5, seed=12)


clean_run, cluster_factory = cluster_fixtures(FIELDS, PAGES, page_delay_s=PAGE_DELAY_S, durable_redis=True,
                                             ready_within_s=READY_WITHIN_S)


def snapshot(cluster: LocalCluster, doc_id: str) -> tuple:
    doc = cluster.service.registry.document(doc_id)
    return doc.status, doc.chunks, doc.pages_done, doc.fingerprint, doc.updated_at, cluster.chunks(doc_id)


def beside_a_settled_other(cluster: LocalCluster, document: bytes, other_document: bytes) -> tuple[str, tuple, str]:
    """The other document ingested to the end and its state taken (it must not change), then the document
    submitted: (other's id, other's state, the document's id)."""
    other = cluster.submit(other_document, "other.pdf")
    cluster.finish(other)
    before = snapshot(cluster, other)
    return other, before, cluster.submit(document)


def test_a_cpu_worker_killed_mid_parse_costs_a_lease_not_the_visibility_timeout(
        cluster_factory, document, other_document, clean_run):
    cluster = cluster_factory()
    first = cluster.worker(pool="prefork")  # the parent acknowledges; the child parses
    other, before, doc_id = beside_a_settled_other(cluster, document, other_document)
    wait_until(lambda: cluster.batch_in_hand(doc_id, PAGES, after=8), 120, "a batch in hand after the first pages")
    first.kill()
    killed_at = time.monotonic()
    assert cluster.pages_done(doc_id) < PAGES  # an unacknowledged batch died with it
    cluster.worker(pool="prefork")
    cluster.finish(doc_id)
    print(f"\nSIGKILL to ready with the default timeouts: {time.monotonic() - killed_at:.1f} s")
    assert_same_chunks(cluster, doc_id, clean_run, PAGES)
    assert snapshot(cluster, other) == before
    wait_until(lambda: cluster.service.registry.leases() == [], 30, "the leases to be released")


def test_a_cpu_worker_killed_mid_embedding_costs_a_lease(cluster_factory, document, other_document, clean_run):
    """The indexing step (chunk, embed) is leased too: a worker killed in it hands it on."""
    cluster = cluster_factory(env={"DOCGROUND_TEST_EMBED_DELAY_S": "6"})
    first = cluster.worker(pool="prefork")
    other, before, doc_id = beside_a_settled_other(cluster, document, other_document)
    wait_until(lambda: (cluster.settings.home / "embedding" / doc_id).exists(), 180, "the document's embedding")
    first.kill()
    killed_at = time.monotonic()
    assert cluster.service.registry.document(doc_id).status == "processing"
    cluster.worker(pool="prefork")
    cluster.finish(doc_id)
    print(f"\nSIGKILL mid-embedding to ready with the default timeouts: {time.monotonic() - killed_at:.1f} s")
    assert_same_chunks(cluster, doc_id, clean_run, PAGES)
    assert snapshot(cluster, other) == before


def test_two_workers_racing_on_the_same_batches_after_a_redelivery(cluster_factory, document, clean_run):
    """Every batch is delivered twice, back to back (as a redelivery or a lease swept while its worker
    still ran would): two workers parse the same pages at once; first writer wins, nothing duplicates."""
    cluster = cluster_factory()
    for _ in range(2):
        cluster.worker()
    doc_id, job_id = cluster.register(document, "long.pdf")
    for queue, pages in page_batches(cluster.service, job_id):
        for _ in range(2):
            cluster.runner.celery.send_task(PAGES_TASK, args=[job_id, pages], queue=queue)
    cluster.finish(doc_id)
    assert_same_chunks(cluster, doc_id, clean_run, PAGES)
    assert all(w.proc.poll() is None for w in cluster.workers)


def test_a_failing_task_is_retried_then_fails_its_document_and_bad_input_is_not_retried(tmp_path, cluster_factory):
    failing, bad = long_pdf(2, seed=21), long_pdf(2, seed=22)
    failing_id, bad_id = (document_id("kb", file_sha256(d)) for d in (failing, bad))
    cluster = cluster_factory(env={"DOCGROUND_TEST_FAIL_DOCUMENT": failing_id, "DOCGROUND_TEST_BAD_DOCUMENT": bad_id})
    cluster.worker()
    assert cluster.submit(failing, "failing.pdf") == failing_id
    assert cluster.submit(bad, "bad.pdf") == bad_id
    attempts = cluster.settings.home / "attempts"
    doc = cluster.finish(failing_id)
    assert doc.status == "failed" and doc.error == "RuntimeError: the test harness's engine broke"
    assert doc.error_code == "internal_error"
    tries = [float(t) for t in (attempts / failing_id).read_text().split()]
    assert len(tries) == 1 + cluster.settings.task_max_retries  # retried, with backoff, then given up
    doc = cluster.finish(bad_id)
    assert doc.status == "failed" and doc.error_code == "invalid_request", doc.error
    assert len((attempts / bad_id).read_text().split()) == 1  # bad input: not retried
    wait_until(lambda: cluster.service.registry.leases() == [], 30, "the leases to be released")


@pytest.fixture
def postgres():
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()


def test_postgresql_restarted_mid_document_loses_and_duplicates_nothing(
        postgres, cluster_factory, document, other_document, clean_run):
    """Every process's connections are cut at once: a query in flight fails (its task is retried), and pooled
    connections, tested before use (pool_pre_ping), are replaced, in the workers and in this process (the API)."""
    cluster = cluster_factory(database_url=postgres.url)
    cluster.worker(pool="prefork")
    other, before, doc_id = beside_a_settled_other(cluster, document, other_document)
    wait_until(lambda: cluster.pages_done(doc_id) >= 8, 120, "the first pages")
    postgres.restart()
    restarted_at = time.monotonic()
    assert cluster.pages_done(doc_id) < PAGES
    cluster.finish(doc_id)
    print(f"\nPostgreSQL restart to ready: {time.monotonic() - restarted_at:.1f} s")
    assert_same_chunks(cluster, doc_id, clean_run, PAGES)
    assert snapshot(cluster, other) == before


# A short hard limit (the case is about it), yet above a fresh pool process's first task, which loads the models
# (a soft limit raised mid-import would break that process for good); the visibility timeout keeps its default,
# above it as check_timeouts requires. The hang outlasts the limit: only Celery's kill ends it.
TASK_TIME_LIMIT_S = 20
HANG_PAGE = 9


def test_a_batch_past_its_hard_time_limit_is_killed_and_sent_again(cluster_factory, document, clean_run):
    cluster = cluster_factory(task_time_limit_s=TASK_TIME_LIMIT_S, env={
        "DOCGROUND_TEST_HANG_PAGE": str(HANG_PAGE), "DOCGROUND_TEST_HANG_S": str(3 * TASK_TIME_LIMIT_S)})
    worker = cluster.worker(pool="prefork")  # time limits are enforced by the prefork pool alone
    doc_id = cluster.submit(document)
    wait_until(lambda: (cluster.settings.home / "hung" / str(HANG_PAGE)).exists(), 120, "the batch to hang")
    hung_at = time.monotonic()
    cluster.finish(doc_id)
    print(f"\nhang to ready (hard limit {TASK_TIME_LIMIT_S} s, lease 30 s): {time.monotonic() - hung_at:.1f} s")
    assert f"Hard time limit ({TASK_TIME_LIMIT_S}s) exceeded for {PAGES_TASK}" in worker.log()
    assert_same_chunks(cluster, doc_id, clean_run, PAGES)
    assert worker.proc.poll() is None  # the pool replaced its killed process; the worker lives on


def test_postgresql_down_during_the_indexing_step_is_retried_not_failed(
        postgres, cluster_factory, document, other_document, clean_run):
    """PostgreSQL stops while a worker chunks and embeds a document and stays down until the indexing task has
    met the dropped connection: the task is retried (not the document failed), and once PostgreSQL is back the
    document is ready with a clean run's chunks."""
    cluster = cluster_factory(database_url=postgres.url, env={"DOCGROUND_TEST_EMBED_DELAY_S": "4"})
    worker = cluster.worker(pool="prefork")
    other, before, doc_id = beside_a_settled_other(cluster, document, other_document)
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


# The same short hard limit as above; one resend allowed (the default is 3): the batch hangs twice, then is given up.
MAX_RESENDS = 1


def test_a_batch_that_always_hangs_past_its_hard_time_limit_is_given_up_not_resent_forever(
        cluster_factory, document, other_document):
    cluster = cluster_factory(task_time_limit_s=TASK_TIME_LIMIT_S, lease_max_resends=MAX_RESENDS, env={
        "DOCGROUND_TEST_HANG_PAGE": str(HANG_PAGE), "DOCGROUND_TEST_HANG_S": str(3 * TASK_TIME_LIMIT_S),
        "DOCGROUND_TEST_HANG_TIMES": "100"})
    worker = cluster.worker(pool="prefork")  # time limits are enforced by the prefork pool alone
    other, before, doc_id = beside_a_settled_other(cluster, document, other_document)
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
