import pytest
from fastapi.testclient import TestClient

from docground.api.app import create_app
from docground_testing.pdfgen import two_column_pdf


@pytest.fixture
def client(settings, service):
    with TestClient(create_app(settings, service)) as c:
        yield c


def test_health_then_query(client, service):
    assert client.get("/healthz").json() == {"status": "ok"}
    data, lines = two_column_pdf(seed=21)
    service.ingest("papers", "p.pdf", data)
    r = client.post("/v1/knowledge-bases/papers/query", json={"query": lines[10]["text"], "top_k": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["answer"] and body["citations"] and len(body["chunks"]) <= 3
    span = body["chunks"][0]["spans"][0]
    assert set(span) >= {"page", "bbox", "bbox_pt", "char_start", "char_end"}


def test_errors_are_clear_and_machine_readable(client):
    r = client.post("/v1/knowledge-bases/unknown/query", json={"query": "x"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = client.post("/v1/knowledge-bases/papers/query", json={"query": "", "top_k": 3})
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"
    r = client.post("/v1/knowledge-bases/bad name!/query", json={"query": "x"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"
