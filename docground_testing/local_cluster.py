"""A cluster that this test process takes part in: cluster.py's private redis-server and worker processes, and
this process's service and CeleryRunner, which own the embedded store and sweep leases (as `docground serve`
does). The reference a cluster's outcome must equal is a clean in-process run, chunk for chunk; cluster_fixtures
gives a test module both.

Apart from cluster.py, which imports nothing of docground and which bench/gpu_scaleout.py uses too: importing
docground's runner builds the workers' Celery app from the environment."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from docground.service import Docground
from docground.settings import Settings
from docground.workers.runner import CeleryRunner, wait_for
from docground_testing.cluster import RedisServer, WorkerProcess, cluster_env, stored_chunks

Chunks = list[tuple[str, int, str]]


def clean_run_chunks(settings: Settings, embedder, data: bytes, pages: int) -> Chunks:
    """The reference: the document ingested in one process, no broker."""
    service = Docground(settings)
    service._embedder = embedder
    try:
        result = service.ingest("kb", "long.pdf", data)
        assert result.status == "ready" and result.pages == pages
        chunks = stored_chunks(service.store("kb"), result.document_id)
        assert len(chunks) == result.chunks > 1
        return chunks
    finally:
        service.close()


class LocalCluster:
    """Settings are `fields` and `overrides` with this cluster's home and broker. With `owner`, this process's
    runner starts and owns the embedded store; without, another process (a `docground ingest`) owns it.
    `env`: more environment for the workers (the test harness's DOCGROUND_TEST_* switches)."""

    def __init__(self, tmp_path: Path, embedder, fields: dict, *, page_delay_s: float = 0.0,
                 durable_redis: bool = False, owner: bool = True, ready_within_s: float = 150,
                 env: dict[str, str] | None = None, **overrides):
        self.tmp_path, self.ready_within_s = tmp_path, ready_within_s
        self.redis = RedisServer(tmp_path / "redis", durable=durable_redis).start()
        try:
            settings_fields = {**fields, "home": tmp_path / "home", "broker_url": self.redis.url, **overrides}
            self.env = cluster_env(settings_fields, DOCGROUND_TEST_PAGE_DELAY_S=str(page_delay_s), **(env or {}))
            self.settings = Settings(**settings_fields)
            self.service = Docground(self.settings)
        except BaseException:
            self.redis.stop()
            raise
        self.service._embedder = embedder  # the session's model: one load for every test
        self.runner = CeleryRunner(self.service)
        if owner:
            self.runner.start()
        self.workers: list[WorkerProcess] = []

    def worker(self, **kwargs) -> WorkerProcess:
        w = WorkerProcess(self.env, self.tmp_path, **kwargs).start()
        self.workers.append(w)
        return w

    def register(self, data: bytes, name: str, kb: str = "kb") -> tuple[str, str]:
        """The document's and the job's id, the job not yet submitted."""
        registration = self.service.register(kb, name, data)
        assert registration.created
        return registration.document.id, registration.job.id

    def submit(self, data: bytes, name: str = "long.pdf", kb: str = "kb") -> str:
        doc_id, job_id = self.register(data, name, kb)
        self.runner.submit(job_id)
        return doc_id

    def pages_done(self, doc_id: str) -> int:
        return self.service.registry.document(doc_id).pages_done

    def batch_in_hand(self, doc_id: str, pages: int, after: int) -> bool:
        """A worker has started a batch it has not finished, and `after` pages are done already."""
        started = {int(p.name) for p in (self.settings.home / "started").glob("*")}
        job = self.service.registry.latest_job(doc_id)
        pending = set(self.service.registry.pending_pages(doc_id, job.fingerprint, pages))
        return self.pages_done(doc_id) >= after and bool(started & pending)

    def finish(self, doc_id: str):
        try:
            return wait_for(self.service, doc_id, timeout_s=self.ready_within_s)
        except TimeoutError as exc:
            logs = "\n".join(f"--- {w.name}\n{w.log()[-4000:]}" for w in self.workers)
            raise AssertionError(f"{exc}\n{logs}") from exc

    def chunks(self, doc_id: str) -> Chunks:
        return stored_chunks(self.service.store("kb"), doc_id)

    def close(self) -> None:
        for w in self.workers:
            w.kill()
        self.runner.close()
        self.service.close()
        self.redis.stop()


def cluster_fixtures(fields: dict, pages: int, **cluster_defaults):
    """The fixtures `clean_run` and `cluster_factory`, on settings `fields` and documents of `pages` pages.
    A test module assigns both: `clean_run, cluster_factory = cluster_fixtures(FIELDS, PAGES)`."""

    @pytest.fixture(scope="module")
    def clean_run(tmp_path_factory, document, embedder) -> Chunks:
        """The module's `document` ingested in one process, no broker: the reference."""
        settings = Settings(home=tmp_path_factory.mktemp("clean") / "home", **fields)
        return clean_run_chunks(settings, embedder, document, pages)

    @pytest.fixture
    def cluster_factory(tmp_path, embedder):
        """Makes clusters (LocalCluster's keyword arguments, over `cluster_defaults`), closed when the test ends."""
        yield from closing_cluster_factory(tmp_path, embedder, fields, **cluster_defaults)

    return clean_run, cluster_factory


def closing_cluster_factory(tmp_path: Path, embedder, fields: dict,
                            **defaults) -> Iterator[Callable[..., LocalCluster]]:
    """Makes clusters (LocalCluster's keyword arguments, over `defaults`); closes each one when resumed."""
    made: list[LocalCluster] = []

    def make(**kwargs) -> LocalCluster:
        made.append(LocalCluster(tmp_path, embedder, fields, **{**defaults, **kwargs}))
        return made[-1]

    yield make
    for cluster in made:
        cluster.close()


def assert_same_chunks(cluster: LocalCluster, doc_id: str, clean: Chunks, pages: int) -> None:
    doc = cluster.service.registry.document(doc_id)
    assert doc.status == "ready", (doc.status, doc.error)
    assert doc.pages_done == doc.pages_total == pages
    assert cluster.chunks(doc_id) == clean  # ids, order and texts: none lost, none duplicated
    assert doc.chunks == len(clean) == cluster.service.store("kb").count(doc_id)
