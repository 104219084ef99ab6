"""Distributed ingestion with real processes: a private redis-server, Celery worker processes killed with
SIGKILL, Redis restarted mid-run. The outcome must equal a clean in-process run chunk for chunk: none
lost, none duplicated. This test process owns the embedded store (as `docground serve` would) and
writes the chunks the workers embedded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from docground.service import Docground
from docground.settings import Settings
from docground.workers.runner import CeleryRunner, wait_for
from docground_testing.cluster import RedisServer, WorkerProcess, cluster_env, long_pdf, stored_chunks, wait_until

PAGES = 40
PAGE_DELAY_S = 0.15
# Short timeouts keep the tests short; they still hold the production invariant (the visibility
# timeout exceeds the longest task and the longest backoff), which celery_app.check_timeouts enforces.
TIMEOUTS = {"task_time_limit_s": 15, "visibility_timeout_s": 20, "retry_backoff_max_s": 2}


@pytest.fixture(scope="module")
def document() -> bytes:
    return long_pdf(PAGES, seed=5)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, document, embedder) -> list[tuple[str, int, str]]:
    """The reference: the same document ingested in one process, no broker."""
    service = Docground(Settings(**fields(tmp_path_factory.mktemp("clean") / "home")))
    service._embedder = embedder
    try:
        result = service.ingest("kb", "long.pdf", document)
        assert result.status == "ready" and result.pages == PAGES
        chunks = stored_chunks(service.store("kb"), result.document_id)
        assert len(chunks) == result.chunks > 1
        return chunks
    finally:
        service.close()


def fields(home, broker_url: str | None = None, **overrides) -> dict:
    return {"home": home, "broker_url": broker_url, "page_batch_size": 4, "ocr_backend": "cpu",
            "embedding_threads": 1, "stall_timeout_s": 3600, **TIMEOUTS, **overrides}


class Cluster:
    """Redis, workers, and this process as the owner of the embedded store."""

    def __init__(self, tmp_path, embedder, redis: RedisServer, page_delay_s: float, **overrides):
        self.tmp_path, self.redis = tmp_path, redis
        settings_fields = fields(tmp_path / "home", redis.url, **overrides)
        self.env = cluster_env(settings_fields, DOCGROUND_TEST_PAGE_DELAY_S=str(page_delay_s))
        self.service = Docground(Settings(**settings_fields))
        self.service._embedder = embedder
        self.runner = CeleryRunner(self.service)
        self.workers: list[WorkerProcess] = []

    def worker(self, **kwargs) -> WorkerProcess:
        w = WorkerProcess(self.env, self.tmp_path, **kwargs).start()
        self.workers.append(w)
        return w

    def submit(self, data: bytes, name: str = "long.pdf", kb: str = "kb") -> str:
        registration = self.service.register(kb, name, data)
        assert registration.created
        self.runner.submit(registration.job.id)
        return registration.document.id

    def pages_done(self, doc_id: str) -> int:
        return self.service.registry.document(doc_id).pages_done

    def batch_in_hand(self, doc_id: str, after: int) -> bool:
        """A worker has started a batch it has not finished, and `after` pages are done already."""
        started = {int(p.name) for p in (self.service.settings.home / "started").glob("*")}
        pending = set(self.service.registry.pending_pages(doc_id, self.service.registry.latest_job(doc_id).fingerprint,
                                                          PAGES))
        return self.pages_done(doc_id) >= after and bool(started & pending)

    def finish(self, doc_id: str, timeout_s: float = 150):
        try:
            return wait_for(self.service, doc_id, timeout_s=timeout_s)
        except TimeoutError as exc:
            logs = "\n".join(f"--- {w.name}\n{w.log()[-4000:]}" for w in self.workers)
            raise AssertionError(f"{exc}\n{logs}") from exc

    def close(self) -> None:
        for w in self.workers:
            w.kill()
        self.runner.close()
        self.service.close()
        self.redis.stop()


@pytest.fixture
def cluster_factory(tmp_path, embedder):
    made: list[Cluster] = []

    def make(page_delay_s: float = 0.0, durable_redis: bool = False, owner: bool = True, **overrides) -> Cluster:
        redis = RedisServer(tmp_path / "redis", durable=durable_redis).start()
        try:
            c = Cluster(tmp_path, embedder, redis, page_delay_s, **overrides)
        except BaseException:
            redis.stop()
            raise
        if owner:  # else another process (a `docground ingest`) owns the embedded store
            c.runner.start()
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def assert_same_chunks(cluster: Cluster, doc_id: str, clean: list[tuple[str, int, str]]) -> None:
    doc = cluster.service.registry.document(doc_id)
    assert doc.status == "ready", (doc.status, doc.error)
    assert doc.pages_done == doc.pages_total == PAGES
    got = stored_chunks(cluster.service.store("kb"), doc_id)
    assert got == clean  # ids, order and texts: none lost, none duplicated
    assert doc.chunks == len(clean) == cluster.service.store("kb").count(doc_id)


def test_a_worker_killed_mid_document_loses_and_duplicates_nothing(cluster_factory, document, clean_run):
    cluster = cluster_factory(page_delay_s=PAGE_DELAY_S)
    first = cluster.worker(pool="prefork")  # the parent acknowledges; the child parses
    doc_id = cluster.submit(document)
    wait_until(lambda: cluster.batch_in_hand(doc_id, after=8), 120, "a batch in hand after the first pages")
    first.kill()
    assert cluster.pages_done(doc_id) < PAGES  # killed mid-document, holding an unacknowledged batch
    cluster.worker()
    cluster.finish(doc_id)
    assert_same_chunks(cluster, doc_id, clean_run)


def test_redis_restarted_mid_document_loses_and_duplicates_nothing(cluster_factory, document, clean_run):
    cluster = cluster_factory(page_delay_s=PAGE_DELAY_S, durable_redis=True)
    cluster.worker()
    doc_id = cluster.submit(document)
    wait_until(lambda: cluster.pages_done(doc_id) >= 8, 120, "the first pages")
    cluster.redis.restart()
    assert cluster.pages_done(doc_id) < PAGES
    cluster.finish(doc_id)
    assert_same_chunks(cluster, doc_id, clean_run)


def test_a_broker_that_lost_its_queues_is_recovered_from_the_registry(cluster_factory, document, clean_run):
    """A Redis without persistence restarts empty: the messages are gone, the registry still knows which
    pages are left, and the owner dispatches the silent job again after DOCGROUND_STALL_TIMEOUT_S."""
    cluster = cluster_factory(page_delay_s=PAGE_DELAY_S, durable_redis=False, stall_timeout_s=6)
    cluster.worker()
    doc_id = cluster.submit(document)
    wait_until(lambda: cluster.pages_done(doc_id) >= 8, 120, "the first pages")
    cluster.redis.restart()
    cluster.finish(doc_id)
    assert_same_chunks(cluster, doc_id, clean_run)
    assert cluster.service.registry.latest_job(doc_id).dispatches >= 2


def test_docground_ingest_through_docground_workers(cluster_factory, document, clean_run, tmp_path):
    """The commands as deployed: `docground worker` per queue, and `docground ingest` with a broker set,
    which submits to the workers, follows the registry and (owning the embedded store) writes the chunks."""
    cluster = cluster_factory(owner=False)
    cluster.worker(queues="cpu", pool="prefork", cli=True)
    cluster.worker(queues="gpu", cli=True)
    pdf = tmp_path / "long.pdf"
    pdf.write_bytes(document)
    cli = subprocess.run([str(Path(sys.executable).with_name("docground")), "ingest", str(pdf), "--kb", "kb", "--json"],
                         env=cluster.env, capture_output=True, text=True, timeout=240)
    assert cli.returncode == 0, cli.stderr[-3000:]
    [result] = json.loads(cli.stdout)
    assert result["status"] == "ready" and result["chunks"] == len(clean_run) and result["pages"] == PAGES
    assert_same_chunks(cluster, result["document_id"], clean_run)
