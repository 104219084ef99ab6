"""The stages the workers run, and the registry under them (SQLite and PostgreSQL): every stage is
idempotent, runs in any order and any number of times, and concurrent writers never lose a page or
start a second job."""

from __future__ import annotations

import os
import threading

import pymupdf
import pytest
from sqlalchemy import create_engine, text

from docground.errors import IdempotencyConflict, NotFound, PipelineMismatch
from docground.ingest.engines.base import PageEngine
from docground.ingest.routing import Router
from docground.ingest.schema import PageLayout
from docground.registry import ACTIVE_STAGES, Document, Page, Registry
from docground.service import Docground
from docground.settings import Settings
from docground.workers.celery_app import CPU_QUEUE, GPU_QUEUE, UnsafeTimeouts, make_celery
from docground.workers.tasks import page_batches
from docground_testing.cluster import long_pdf, stored_chunks
from docground_testing.registries import registry_on

POSTGRES_URL = os.environ.get("DOCGROUND_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request, tmp_path):
    with registry_on(request.param, tmp_path) as registry:
        yield registry


def a_document(doc_id: str = "d1", pages: int = 6) -> Document:
    return Document(id=doc_id, kb="kb", filename="a.pdf", sha256="0" * 64, kind="pdf", size_bytes=1, pages_total=pages)


def at_once(n: int, fn) -> list:
    """Run fn(i) on n threads released together; re-raise the first error."""
    barrier, results, errors = threading.Barrier(n), [None] * n, []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_concurrent_uploads_of_one_file_share_one_job(registry):
    registry.ensure_kb("kb")
    registrations = at_once(6, lambda i: registry.register(a_document(), "fp1"))
    assert len({r.job.id for r in registrations}) == 1 and sum(r.created for r in registrations) == 1
    assert len(registry.jobs(ACTIVE_STAGES)) == 1
    # a failed document uploaded again concurrently: still one new job
    job = registrations[0].job
    assert registry.advance(job.id, "failed", error="boom", error_code="x")
    again = at_once(6, lambda i: registry.register(a_document(), "fp1"))
    assert len({r.job.id for r in again}) == 1 and sum(r.created for r in again) == 1
    assert again[0].job.id != job.id and registry.document("d1").status == "queued"


def test_pages_are_first_writer_wins_and_the_count_misses_none(registry):
    registry.ensure_kb("kb")
    job = registry.register(a_document(pages=24), "fp1").job

    def complete(i: int) -> int:
        pages = [Page(page=n, engine="e", engine_version="1", blocks=1, layout=f"first-{n}")
                 for n in range(i + 1, 25, 8)]
        return registry.complete_pages("d1", "fp1", pages)

    at_once(8, complete)
    assert registry.document("d1").pages_done == 24
    assert registry.pending_pages("d1", "fp1", 24) == []
    # a duplicate delivery of a batch changes nothing
    registry.complete_pages("d1", "fp1", [Page(page=3, engine="e", engine_version="1", layout="second")])
    layouts = registry.page_layouts("d1", "fp1")
    assert len(layouts) == 24 and layouts[2] == "first-3"
    assert registry.advance(job.id, "parsing", from_stages=("queued",))
    assert not registry.advance(job.id, "parsing", from_stages=("queued",))  # someone got there first
    assert registry.document("d1").status == "processing"


def test_a_new_pipeline_starts_over_and_supersedes_the_old_job(registry):
    registry.ensure_kb("kb")
    old = registry.register(a_document(pages=3), "fp1").job
    registry.complete_pages("d1", "fp1", [Page(page=1, engine="e", engine_version="1", layout="x")])
    new = registry.register(a_document(pages=3), "fp2")
    assert new.created and registry.job(old.id).stage == "failed"
    assert registry.pending_pages("d1", "fp2", 3) == [1, 2, 3] and new.document.pages_done == 0


def test_idempotency_keys(registry):
    registry.remember_idempotency_key("kb", "k1", "a" * 64, "d1")
    registry.remember_idempotency_key("kb", "k1", "a" * 64, "d1")
    assert registry.idempotent_document("kb", "k1", "a" * 64) == "d1"
    assert registry.idempotent_document("other", "k1", "b" * 64) is None
    with pytest.raises(IdempotencyConflict):
        registry.idempotent_document("kb", "k1", "b" * 64)


def test_an_older_registry_gets_the_new_columns(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    engine = create_engine(url)
    with engine.begin() as conn:  # the pages table as docground 0.1's first registry made it
        conn.execute(text("CREATE TABLE pages (document_id VARCHAR(64) NOT NULL, page INTEGER NOT NULL, "
                          "status VARCHAR(16), engine VARCHAR(32), engine_version VARCHAR(32), reason TEXT, "
                          "blocks INTEGER, attempts INTEGER, error TEXT, meta JSON, PRIMARY KEY (document_id, page))"))
        conn.execute(text("INSERT INTO pages (document_id, page, status) VALUES ('old', 1, 'done')"))
    registry = Registry(url)
    assert [p.page for p in registry.pages("old")] == [1]
    registry.ensure_kb("kb")
    registry.register(a_document(), "fp1")
    registry.complete_pages("d1", "fp1", [Page(page=1, engine="e", engine_version="1", layout="x")])
    assert registry.page_layouts("d1", "fp1") == ["x"]


# ---- the service's stages


@pytest.fixture
def twin(tmp_path, embedder):
    """A second service with the same settings but its own data directory: the clean reference."""
    svc = Docground(Settings(home=tmp_path / "twin"))
    svc._embedder = embedder
    yield svc
    svc.close()


def test_stages_in_any_order_and_twice_give_exactly_the_clean_chunks(service, twin):
    data = long_pdf(12, seed=2)
    clean = twin.ingest("kb", "r.pdf", data)
    expected = stored_chunks(twin.store("kb"), clean.document_id)

    registration = service.register("kb", "r.pdf", data)
    job_id = registration.job.id
    batches = [[9, 10, 11, 12], [5, 6, 7, 8], [1, 2, 3, 4]]
    for batch in batches + batches:  # out of order, and every batch delivered twice
        service.parse_pages(job_id, batch)
    first = service.finalize(job_id)
    again = service.finalize(job_id)
    assert first.status == again.status == "ready" and first.chunks == len(expected)
    assert stored_chunks(service.store("kb"), registration.document.id) == expected
    assert service.register("kb", "r.pdf", data).job is None  # ready: nothing to do


def test_a_worker_beside_an_embedded_store_hands_the_chunks_to_its_owner(service, twin):
    data = long_pdf(4, seed=3)
    expected = stored_chunks(twin.store("kb"), twin.ingest("kb", "r.pdf", data).document_id)
    registration = service.register("kb", "r.pdf", data)
    service.parse_pages(registration.job.id, [1, 2, 3, 4])
    doc = service.finalize(registration.job.id, write_store=False)
    assert doc.status == "processing" and service.registry.job(registration.job.id).stage == "indexable"
    assert service.store("kb").count() == 0
    assert service.index_job(registration.job.id).status == "ready"
    assert service.index_job(registration.job.id).status == "ready"  # a second owner round: no-op
    assert stored_chunks(service.store("kb"), doc.id) == expected


def test_workers_write_a_qdrant_server_themselves(tmp_path, embedder):
    svc = Docground(Settings(home=tmp_path / "h", qdrant_url=":memory:"))
    svc._embedder = embedder
    try:
        registration = svc.register("kb", "r.pdf", long_pdf(3, seed=4))
        svc.parse_pages(registration.job.id, [1, 2, 3])
        doc = svc.finalize(registration.job.id, write_store=True)
        assert doc.status == "ready" and svc.store("kb").count(doc.id) == doc.chunks > 0
    finally:
        svc.close()


def test_a_process_with_another_pipeline_fails_the_job_clearly(service):
    registration = service.register("kb", "r.pdf", long_pdf(2, seed=6))
    service.parse_pages(registration.job.id, [1, 2])
    service.settings.chunk_tokens = 50  # this process now chunks differently from the registration
    service._pipeline = None
    with pytest.raises(PipelineMismatch):
        service.finalize(registration.job.id)
    doc = service.fail_job(registration.job.id, PipelineMismatch("x"))
    assert doc.status == "failed" and doc.error_code == "pipeline_mismatch"


def test_a_failed_document_uploaded_again_resumes_from_its_parsed_pages(service):
    data = long_pdf(6, seed=7)
    registration = service.register("kb", "r.pdf", data)
    service.parse_pages(registration.job.id, [1, 2, 3])
    service.fail_job(registration.job.id, RuntimeError("the GPU fell off"))
    assert service.registry.document(registration.document.id).error == "RuntimeError: the GPU fell off"
    parsed: list[int] = []
    original = service.pipeline.parse_pages
    service.pipeline.parse_pages = lambda source, doc_id, pages=None, progress=None: (
        parsed.extend(pages), original(source, doc_id, pages, progress))[1]
    result = service.ingest("kb", "r.pdf", data)
    assert result.status == "ready" and sorted(parsed) == [4, 5, 6]


def test_a_deleted_document_stops_its_tasks(service):
    registration = service.register("kb", "r.pdf", long_pdf(2, seed=8))
    service.delete_document(registration.document.id)
    with pytest.raises(NotFound):
        service.parse_pages(registration.job.id, [1])
    with pytest.raises(NotFound):
        page_batches(service, registration.job.id)


class StandInVisionEngine(PageEngine):
    """A stand-in for DeepSeek-OCR-2: reads nothing, declares the gpu queue."""

    name, version, queue = "standin-vision", "1", GPU_QUEUE

    def parse_many(self, pages, document_id):
        return [PageLayout(page=p.number, width_pt=p.width_pt, height_pt=p.height_pt, engine=self.name,
                           engine_version=self.version) for p in pages]


def test_fan_out_sends_text_pages_to_cpu_and_scans_to_gpu(tmp_path, embedder):
    doc = pymupdf.open()
    for n in range(1, 11):
        page = doc.new_page()
        if n % 3:  # pages 3, 6, 9 have no text layer: the vision engine's
            page.insert_text((72, 72), f"Page {n} has a text layer with enough characters.", fontsize=11)
    svc = Docground(Settings(home=tmp_path / "h", page_batch_size=3), router=Router(ocr=StandInVisionEngine()))
    svc._embedder = embedder
    try:
        registration = svc.register("kb", "mixed.pdf", doc.tobytes())
        batches = page_batches(svc, registration.job.id)
        assert [(q, p) for q, p in batches if q == GPU_QUEUE] == [(GPU_QUEUE, [3, 6, 9])]
        assert [p for q, p in batches if q == CPU_QUEUE] == [[1, 2, 4], [5, 7, 8], [10]]
        svc.parse_pages(registration.job.id, [1, 2, 3, 4])
        assert [p for _, p in page_batches(svc, registration.job.id)] == [[5, 7, 8], [10], [6, 9]]
    finally:
        svc.close()


def test_a_visibility_timeout_shorter_than_a_task_is_refused(tmp_path):
    with pytest.raises(UnsafeTimeouts):
        make_celery(Settings(home=tmp_path, broker_url="redis://x", task_time_limit_s=600, visibility_timeout_s=600))
    app = make_celery(Settings(home=tmp_path, broker_url="redis://x"))
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
