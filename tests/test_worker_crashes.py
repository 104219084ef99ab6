"""The crash matrix with real processes and the DEFAULT timeouts (visibility 3600 s, stall 7200 s, lease 30 s):
a private redis-server, Celery worker processes killed with SIGKILL, this process as the API (it owns the
embedded store and sweeps leases, as `docground serve` does). A document's chunks must equal a clean
in-process run's, and no other document may change."""

from __future__ import annotations

import time

import pytest

from docground.ingest.pipeline import document_id, file_sha256
from docground.service import Docground
from docground.settings import Settings
from docground.workers.runner import CeleryRunner, wait_for
from docground.workers.tasks import PAGES_TASK, page_batches
from docground_testing.cluster import RedisServer, WorkerProcess, cluster_env, long_pdf, stored_chunks, wait_until

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


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, document, embedder) -> list[tuple[str, int, str]]:
    service = Docground(Settings(home=tmp_path_factory.mktemp("clean") / "home", **FIELDS))
    service._embedder = embedder
    try:
        result = service.ingest("kb", "long.pdf", document)
        assert result.status == "ready" and result.pages == PAGES
        chunks = stored_chunks(service.store("kb"), result.document_id)
        assert len(chunks) == result.chunks > 1
        return chunks
    finally:
        service.close()


class Cluster:
    def __init__(self, tmp_path, embedder, **env):
        self.tmp_path = tmp_path
        self.redis = RedisServer(tmp_path / "redis", durable=True).start()
        fields = {"home": tmp_path / "home", "broker_url": self.redis.url, **FIELDS}
        self.settings = Settings(**fields)
        self.env = cluster_env(fields, DOCGROUND_TEST_PAGE_DELAY_S=str(PAGE_DELAY_S), **env)
        self.service = Docground(self.settings)
        self.service._embedder = embedder
        self.runner = CeleryRunner(self.service)
        self.runner.start()
        self.workers: list[WorkerProcess] = []

    def worker(self, **kwargs) -> WorkerProcess:
        w = WorkerProcess(self.env, self.tmp_path, **kwargs).start()
        self.workers.append(w)
        return w

    def register(self, data: bytes, name: str) -> tuple[str, str]:
        registration = self.service.register("kb", name, data)
        assert registration.created
        return registration.document.id, registration.job.id

    def submit(self, data: bytes, name: str = "long.pdf") -> str:
        doc_id, job_id = self.register(data, name)
        self.runner.submit(job_id)
        return doc_id

    def finish(self, doc_id: str, timeout_s: float = READY_WITHIN_S):
        try:
            return wait_for(self.service, doc_id, timeout_s=timeout_s)
        except TimeoutError as exc:
            logs = "\n".join(f"--- {w.name}\n{w.log()[-4000:]}" for w in self.workers)
            raise AssertionError(f"{exc}\n{logs}") from exc

    def chunks(self, doc_id: str) -> list[tuple[str, int, str]]:
        return stored_chunks(self.service.store("kb"), doc_id)

    def snapshot(self, doc_id: str) -> tuple:
        doc = self.service.registry.document(doc_id)
        return doc.status, doc.chunks, doc.pages_done, doc.fingerprint, doc.updated_at, self.chunks(doc_id)

    def close(self) -> None:
        for w in self.workers:
            w.kill()
        self.runner.close()
        self.service.close()
        self.redis.stop()


@pytest.fixture
def cluster_factory(tmp_path, embedder):
    made: list[Cluster] = []

    def make(**env) -> Cluster:
        made.append(Cluster(tmp_path, embedder, **env))
        return made[-1]

    yield make
    for c in made:
        c.close()


def assert_same_chunks(cluster: Cluster, doc_id: str, clean) -> None:
    doc = cluster.service.registry.document(doc_id)
    assert doc.status == "ready", (doc.status, doc.error)
    assert doc.pages_done == doc.pages_total == PAGES
    assert cluster.chunks(doc_id) == clean  # ids, order and texts: none lost, none duplicated
    assert doc.chunks == len(clean) == cluster.service.store("kb").count(doc_id)


def test_a_cpu_worker_killed_mid_parse_costs_a_lease_not_the_visibility_timeout(
        cluster_factory, document, other_document, clean_run):
    cluster = cluster_factory()
    first = cluster.worker(pool="prefork")  # the parent acknowledges; the child parses
    other = cluster.submit(other_document, "other.pdf")
    cluster.finish(other)
    before = cluster.snapshot(other)
    doc_id = cluster.submit(document)
    started = cluster.settings.home / "started"

    def batch_in_hand() -> bool:
        job = cluster.service.registry.latest_job(doc_id)
        pending = set(cluster.service.registry.pending_pages(doc_id, job.fingerprint, PAGES))
        in_hand = {int(p.name) for p in started.glob("*")} & pending
        return cluster.service.registry.document(doc_id).pages_done >= 8 and bool(in_hand)

    wait_until(batch_in_hand, 120, "a batch in hand after the first pages")
    first.kill()
    killed_at = time.monotonic()
    assert cluster.service.registry.document(doc_id).pages_done < PAGES  # an unacknowledged batch died with it
    cluster.worker(pool="prefork")
    cluster.finish(doc_id)
    print(f"\nSIGKILL to ready with the default timeouts: {time.monotonic() - killed_at:.1f} s")
    assert_same_chunks(cluster, doc_id, clean_run)
    assert cluster.snapshot(other) == before
    wait_until(lambda: cluster.service.registry.leases() == [], 30, "the leases to be released")


def test_a_cpu_worker_killed_mid_embedding_costs_a_lease(cluster_factory, document, other_document, clean_run):
    """The indexing step (chunk, embed) is leased too: a worker killed in it hands it on."""
    cluster = cluster_factory(DOCGROUND_TEST_EMBED_DELAY_S="6")
    first = cluster.worker(pool="prefork")
    other = cluster.submit(other_document, "other.pdf")
    cluster.finish(other)
    before = cluster.snapshot(other)
    doc_id = cluster.submit(document)
    wait_until(lambda: (cluster.settings.home / "embedding" / doc_id).exists(), 180, "the document's embedding")
    first.kill()
    killed_at = time.monotonic()
    assert cluster.service.registry.document(doc_id).status == "processing"
    cluster.worker(pool="prefork")
    cluster.finish(doc_id)
    print(f"\nSIGKILL mid-embedding to ready with the default timeouts: {time.monotonic() - killed_at:.1f} s")
    assert_same_chunks(cluster, doc_id, clean_run)
    assert cluster.snapshot(other) == before


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
    assert_same_chunks(cluster, doc_id, clean_run)
    assert all(w.proc.poll() is None for w in cluster.workers)


def test_a_failing_task_is_retried_then_fails_its_document_and_bad_input_is_not_retried(tmp_path, cluster_factory):
    failing, bad = long_pdf(2, seed=21), long_pdf(2, seed=22)
    failing_id, bad_id = (document_id("kb", file_sha256(d)) for d in (failing, bad))
    cluster = cluster_factory(DOCGROUND_TEST_FAIL_DOCUMENT=failing_id, DOCGROUND_TEST_BAD_DOCUMENT=bad_id)
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
