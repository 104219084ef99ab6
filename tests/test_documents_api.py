"""The documents API in the embedded default (no broker: jobs run on a thread of the API process)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from docground.api.app import create_app
from docground_testing.live_server import no_rate_limit, upload, wait_document
from docground_testing.pdfgen import two_column_pdf


@pytest.fixture
def client(settings, service):
    no_rate_limit(settings)
    with TestClient(create_app(settings, service)) as c:
        yield c


def test_upload_status_list_query_delete(client, service):
    data, lines = two_column_pdf(pages=3, seed=31)
    r = upload(client, "kb", data, "paper.pdf")
    assert r.status_code == 202
    accepted = r.json()
    assert set(accepted) == {"document_id", "status"} and accepted["status"] in ("queued", "processing", "ready")
    status = wait_document(client, accepted["document_id"])
    assert status["status"] == "ready", status
    assert status["filename"] == "paper.pdf" and status["pages_total"] == 3 and status["pages_done"] == 3
    assert status["chunks"] == service.store("kb").count(accepted["document_id"]) > 0
    assert status["error"] is None

    listed = client.get("/v1/knowledge-bases/kb/documents").json()["documents"]
    assert [d["document_id"] for d in listed] == [accepted["document_id"]]

    answer = client.post("/v1/knowledge-bases/kb/query", json={"query": lines[40]["text"]}).json()
    assert answer["chunks"] and answer["chunks"][0]["document_id"] == accepted["document_id"]

    r = client.delete(f"/v1/documents/{accepted['document_id']}")
    assert r.status_code == 200 and r.json()["deleted"] is True
    assert service.store("kb").count(accepted["document_id"]) == 0
    assert client.get(f"/v1/documents/{accepted['document_id']}").status_code == 404
    assert client.get("/v1/knowledge-bases/kb/documents").json()["documents"] == []
    assert client.delete(f"/v1/documents/{accepted['document_id']}").status_code == 404


def test_the_same_file_twice_is_one_document_and_no_new_chunks(client, service):
    data, _ = two_column_pdf(pages=2, seed=32)
    first = upload(client, "kb", data, "a.pdf").json()
    wait_document(client, first["document_id"])
    count = service.store("kb").count()
    again = upload(client, "kb", data, "copy.pdf")
    assert again.status_code == 202 and again.json() == {"document_id": first["document_id"], "status": "ready"}
    assert service.store("kb").count() == count
    # the same content in another knowledge base is another document
    other = upload(client, "kb2", data, "a.pdf").json()
    assert other["document_id"] != first["document_id"]


def test_idempotency_key_replays_and_refuses_another_file(client):
    data, _ = two_column_pdf(pages=1, seed=33)
    first = upload(client, "kb", data, key="order-17").json()
    assert upload(client, "kb", data, key="order-17").json()["document_id"] == first["document_id"]
    other, _ = two_column_pdf(pages=1, seed=34)
    r = upload(client, "kb", other, key="order-17")
    assert r.status_code == 409 and r.json()["code"] == "idempotency_conflict"
    r = upload(client, "kb", other, key="x" * 300)
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"
    wait_document(client, first["document_id"])


def test_events_stream_progress_then_done(client):
    data, _ = two_column_pdf(pages=4, seed=35)
    doc_id = upload(client, "kb", data).json()["document_id"]
    events = []
    with client.stream("GET", f"/v1/documents/{doc_id}/events") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    assert events[-1][0] == "done" and events[-1][1]["status"] == "ready"
    assert all(n == "progress" for n, _ in events[:-1])
    done_counts = [e["pages_done"] for _, e in events]
    assert done_counts == sorted(done_counts) and done_counts[-1] == 4
    assert client.get("/v1/documents/nope/events").status_code == 404


def test_bad_uploads_fail_clearly_and_store_nothing(client, service):
    r = upload(client, "kb", b"%PDF-1.7\n garbage that is not a pdf")
    assert r.status_code == 422 and r.json()["code"] == "corrupt_file"
    r = upload(client, "kb", b"\x00\x01\x02 binary junk is not a document", "notes.txt")
    assert r.status_code == 415 and r.json()["code"] == "unsupported_file_type"
    r = upload(client, "kb", b"")
    assert r.status_code == 400 and r.json()["code"] == "empty_file"
    r = upload(client, "bad name!", b"%PDF-1.7")
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"
    r = client.post("/v1/knowledge-bases/kb/documents")
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"
    assert client.get("/v1/knowledge-bases/kb/documents").status_code == 404
    assert service.registry.jobs(("queued", "parsing", "indexing", "indexable", "done", "failed")) == []


def test_an_unfinished_job_resumes_when_the_api_starts_again(settings, service):
    """The in-process runner: a job registered while no runner ran (a crash right after the upload)
    is picked up at the next start, from the pages already parsed."""
    data, _ = two_column_pdf(pages=3, seed=36)
    registration = service.register("kb", "a.pdf", data)
    service.parse_pages(registration.job.id, [2])  # a batch finished before the crash
    no_rate_limit(settings)
    with TestClient(create_app(settings, service)) as c:
        status = wait_document(c, registration.document.id)
    assert status["status"] == "ready" and status["pages_done"] == 3


def test_document_routes_are_scoped_to_the_callers_knowledge_base(settings, service):
    """With API keys on (api/auth.py's app-wide guard), a knowledge base's key reaches only its own
    documents: another tenant's document is not found, another tenant's listing is forbidden."""
    settings.admin_key = "admin-secret"
    no_rate_limit(settings)
    admin = {"Authorization": "Bearer admin-secret"}
    with TestClient(create_app(settings, service)) as c:
        keys = {kb: {"Authorization": "Bearer " + c.post("/v1/knowledge-bases", json={"name": kb},
                                                         headers=admin).json()["api_key"]} for kb in ("a", "b")}
        data, _ = two_column_pdf(pages=1, seed=37)
        files = {"file": ("a.pdf", data, "application/pdf")}
        assert c.post("/v1/knowledge-bases/a/documents", files=files).status_code == 401
        assert c.post("/v1/knowledge-bases/a/documents", files=files, headers=keys["b"]).status_code == 403
        r = c.post("/v1/knowledge-bases/a/documents", files=files, headers=keys["a"])
        assert r.status_code == 202
        doc_id = r.json()["document_id"]
        assert c.get(f"/v1/documents/{doc_id}", headers=keys["a"]).status_code == 200
        assert c.get(f"/v1/documents/{doc_id}", headers=keys["b"]).status_code == 404
        assert c.get(f"/v1/documents/{doc_id}/events", headers=keys["b"]).status_code == 404
        assert c.delete(f"/v1/documents/{doc_id}", headers=keys["b"]).status_code == 404
        assert c.get("/v1/knowledge-bases/a/documents", headers=keys["b"]).status_code == 403
        assert [d["document_id"] for d in c.get("/v1/knowledge-bases/a/documents", headers=keys["a"]).json()[
            "documents"]] == [doc_id]
        assert c.delete(f"/v1/documents/{doc_id}", headers=keys["a"]).status_code == 200
