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

from docground_testing.cluster import long_pdf, wait_until
from docground_testing.local_cluster import assert_same_chunks, cluster_fixtures

PAGES = 40
PAGE_DELAY_S = 0.15
# Short timeouts keep the tests short; they still hold the production invariant (the visibility
# timeout exceeds the longest task and the longest backoff), which celery_app.check_timeouts enforces.
TIMEOUTS = {"task_time_limit_s": 15, "visibility_timeout_s": 20, "retry_backoff_max_s": 2}
FIELDS = {"page_batch_size": 4, "ocr_backend": "cpu", "embedding_threads": 1, "stall_timeout_s": 3600, **TIMEOUTS}


@pytest.fixture(scope="module")
def document() -> bytes:
    return long_pdf(PAGES, seed=5)


clean_run, cluster_factory = cluster_fixtures(FIELDS, PAGES)


def test_a_worker_killed_mid_document_loses_and_duplicates_nothing(cluster_factory, document, clean_run):
    cluster = cluster_factory(page_delay_s=PAGE_DELAY_S)
    first = cluster.worker(pool="prefork")  # the parent acknowledges; the child parses
    doc_id = cluster.submit(document)
    wait_until(lambda: cluster.batch_in_hand(doc_id, PAGES, after=8), 120, "a batch in hand after the first pages")
    first.kill()
    assert cluster.pages_done(doc_id) < PAGES  # killed mid-document, holding an unacknowledged batch
    cluster.worker()
    cluster.finish(doc_id)
    assert_same_chunks(cluster, doc_id, clean_run, PAGES)


def test_redis_restarted_mid_document_loses_and_duplicates_nothing(cluster_factory, document, clean_run):
    cluster = cluster_factory(page_delay_s=PAGE_DELAY_S, durable_redis=True)
    cluster.worker()
    doc_id = cluster.submit(document)
    wait_until(lambda: cluster.pages_done(doc_id) >= 8, 120, "the first pages")
    cluster.redis.restart()
    assert cluster.pages_done(doc_id) < PAGES
    cluster.finish(doc_id)
    assert_same_chunks(cluster, doc_id, clean_run, PAGES)


def test_a_broker_that_lost_its_queues_is_recovered_from_the_registry(cluster_factory, document, clean_run):
    """A Redis without persistence restarts empty: the messages are gone, the registry still knows which
    pages are left, and the owner dispatches the silent job again after DOCGROUND_STALL_TIMEOUT_S."""
    cluster = cluster_factory(page_delay_s=PAGE_DELAY_S, durable_redis=False, stall_timeout_s=6)
    cluster.worker()
    doc_id = cluster.submit(document)
    wait_until(lambda: cluster.pages_done(doc_id) >= 8, 120, "the first pages")
    cluster.redis.restart()
    cluster.finish(doc_id)
    assert_same_chunks(cluster, doc_id, clean_run, PAGES)
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
    assert_same_chunks(cluster, result["document_id"], clean_run, PAGES)
