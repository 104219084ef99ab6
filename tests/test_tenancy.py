"""Tenancy: knowledge-base keys reach only their own knowledge base, on every /v1 route; limits."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from docground.api.app import create_app
from docground.api.auth import is_loopback
from docground.api.cli import app as cli
from docground.service import Docground
from docground.settings import Settings
from docground_testing.citation_docs import ASTRONOMY, COFFEE, RIVERS, report_pdf
from docground_testing.live_server import Borrowed

ADMIN = "the-admin-key"


def bearer(key: str | None) -> dict:
    return {"Authorization": f"Bearer {key}"} if key else {}


@pytest.fixture(scope="module")
def tenants(tmp_path_factory, embedder):
    settings = Settings(home=tmp_path_factory.mktemp("tenancy") / "home", admin_key=ADMIN, rate_limit_per_minute=0)
    service = Docground(settings)
    service._embedder = embedder
    with TestClient(create_app(settings, Borrowed(service))) as client:
        keys = {}
        for kb in ("alpha", "beta"):
            r = client.post("/v1/knowledge-bases", json={"name": kb}, headers=bearer(ADMIN))
            assert r.status_code == 201 and r.json()["name"] == kb
            keys[kb] = r.json()["api_key"]
        docs = {
            "alpha": service.ingest("alpha", "rivers.pdf", report_pdf(topics={"Rivers": RIVERS})).document_id,
            "beta": service.ingest("beta", "space.pdf", report_pdf(topics={"Coffee": COFFEE, "Jupiter": ASTRONOMY})
                                   ).document_id,
        }
        yield client, keys, docs, service
    service.close()


def test_no_key_or_a_wrong_key_is_401(tenants):
    client, _, _, _ = tenants
    for headers in ({}, bearer("dgk_not-a-key"), {"Authorization": "Basic abc"}):
        r = client.post("/v1/knowledge-bases/alpha/query", json={"query": "Danube"}, headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert client.get("/healthz").status_code == 200  # health stays open for probes


def test_a_key_reaches_its_own_knowledge_base_and_only_its_chunks(tenants):
    client, keys, docs, _ = tenants
    r = client.post("/v1/knowledge-bases/alpha/query", json={"query": "What is Jupiter's Great Red Spot?"},
                    headers=bearer(keys["alpha"]))
    assert r.status_code == 200
    body = r.json()
    assert body["chunks"] and {c["document_id"] for c in body["chunks"]} == {docs["alpha"]}
    assert all(c["document_id"] == docs["alpha"] for c in body["citations"])
    assert not any("Jupiter" in c["text"] for c in body["chunks"])


def test_another_tenants_knowledge_base_is_403_and_its_documents_404(tenants):
    client, keys, docs, service = tenants
    alpha = bearer(keys["alpha"])
    r = client.post("/v1/knowledge-bases/beta/query", json={"query": "Jupiter"}, headers=alpha)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    for method, path in (("GET", f"/v1/documents/{docs['beta']}"), ("DELETE", f"/v1/documents/{docs['beta']}"),
                         ("GET", f"/v1/documents/{docs['beta']}/pages/1/image")):
        r = client.request(method, path, headers=alpha)
        assert r.status_code == 404 and docs["beta"] in r.json()["message"]
    assert service.registry.document(docs["beta"]) is not None  # the delete did nothing
    assert client.get(f"/v1/documents/{docs['alpha']}", headers=alpha).status_code == 200


def test_every_v1_route_is_guarded(tenants):
    """Whoever added a /v1 route, a KB key never gets another tenant's data from it and no key gets 401."""
    client, keys, docs, _ = tenants
    values = {"kb": "beta", "document_id": docs["beta"], "job_id": "0" * 32, "page": "1"}
    checked = 0
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        if not path.startswith("/v1/"):
            continue
        url = re.sub(r"{(\w+)(:\w+)?}", lambda m: values.get(m.group(1), "x"), path)
        for method in (m.upper() for m in operations):
            assert client.request(method, url).status_code == 401, (method, path)
            r = client.request(method, url, headers=bearer(keys["alpha"]))
            if path == "/v1/knowledge-bases" and method == "GET":
                assert [kb["name"] for kb in r.json()] == ["alpha"]
            else:
                assert r.status_code in (403, 404), (method, path, r.status_code)
            checked += 1
    assert checked >= 6


def test_only_the_admin_creates_knowledge_bases_and_rotates_keys(tenants):
    client, keys, _, _ = tenants
    alpha = bearer(keys["alpha"])
    assert client.post("/v1/knowledge-bases", json={"name": "gamma"}, headers=alpha).status_code == 403
    assert client.post("/v1/knowledge-bases/alpha/api-key", headers=alpha).status_code == 403
    again = client.post("/v1/knowledge-bases", json={"name": "alpha"}, headers=bearer(ADMIN))
    assert again.status_code == 409 and again.json()["code"] == "already_exists"
    bad = client.post("/v1/knowledge-bases", json={"name": "../etc"}, headers=bearer(ADMIN))
    assert bad.status_code == 422
    listed = client.get("/v1/knowledge-bases", headers=bearer(ADMIN)).json()
    assert {kb["name"] for kb in listed} >= {"alpha", "beta"}


def test_a_rotated_key_replaces_the_old_one(tenants):
    client, keys, _, _ = tenants
    r = client.post("/v1/knowledge-bases/beta/api-key", headers=bearer(ADMIN))
    assert r.status_code == 200
    new = r.json()["api_key"]
    assert new != keys["beta"]
    assert client.get("/v1/knowledge-bases/beta", headers=bearer(keys["beta"])).status_code == 401
    assert client.get("/v1/knowledge-bases/beta", headers=bearer(new)).json()["has_api_key"] is True
    keys["beta"] = new


def test_the_admin_reaches_every_knowledge_base(tenants):
    client, _, docs, _ = tenants
    r = client.post("/v1/knowledge-bases/beta/query", json={"query": "Great Red Spot storm"}, headers=bearer(ADMIN))
    assert r.status_code == 200 and {c["document_id"] for c in r.json()["chunks"]} == {docs["beta"]}


def test_upload_is_scoped_and_limited_by_size_and_pages(tmp_path, embedder):
    settings = Settings(home=tmp_path / "home", admin_key=ADMIN, max_upload_mb=0.05, max_pages=2,
                        rate_limit_per_minute=0)
    service = Docground(settings)
    service._embedder = embedder
    with TestClient(create_app(settings, Borrowed(service))) as client:
        key = client.post("/v1/knowledge-bases", json={"name": "alpha"}, headers=bearer(ADMIN)).json()["api_key"]
        pdf = report_pdf()  # three pages
        assert len(pdf) < 0.05 * 2**20
        elsewhere = client.post("/v1/knowledge-bases/beta/documents", files={"file": ("r.pdf", pdf)},
                                headers=bearer(key))
        assert elsewhere.status_code == 403
        pages = client.post("/v1/knowledge-bases/alpha/documents", files={"file": ("r.pdf", pdf)}, headers=bearer(key))
        assert pages.status_code == 413 and pages.json()["code"] == "too_many_pages"
        big = b"%PDF-1.7\n" + b"0" * (60 * 1024)
        sized = client.post("/v1/knowledge-bases/alpha/documents", files={"file": ("big.pdf", big)},
                            headers=bearer(key))
        assert sized.status_code == 413 and sized.json()["code"] == "payload_too_large"
        chunked = client.post("/v1/knowledge-bases/alpha/query",
                              headers=bearer(key) | {"content-type": "application/json"},
                              content=iter([b'{"query": "', b"x" * (60 * 1024), b'"}']))
        assert chunked.status_code == 413 and chunked.json()["code"] == "payload_too_large"
    service.close()


def test_rate_limit_per_key(tmp_path, embedder):
    settings = Settings(home=tmp_path / "home", admin_key=ADMIN, rate_limit_per_minute=3)
    service = Docground(settings)
    service._embedder = embedder
    with TestClient(create_app(settings, Borrowed(service))) as client:
        statuses = [client.get("/v1/knowledge-bases", headers=bearer(ADMIN)).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = client.get("/v1/knowledge-bases", headers=bearer(ADMIN)).json()
        assert limited["code"] == "rate_limited" and "retry in" in limited["message"]
    service.close()


def test_without_an_admin_key_auth_is_off(tmp_path, embedder):
    settings = Settings(home=tmp_path / "home")
    service = Docground(settings)
    service._embedder = embedder
    with TestClient(create_app(settings, Borrowed(service))) as client:
        created = client.post("/v1/knowledge-bases", json={"name": "local"})
        assert created.status_code == 201 and created.json()["api_key"].startswith("dgk_")
        assert client.get("/v1/knowledge-bases/local").status_code == 200
    service.close()


def test_serve_refuses_a_network_interface_without_an_admin_key(tmp_path, monkeypatch):
    monkeypatch.delenv("DOCGROUND_ADMIN_KEY", raising=False)
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--home", str(tmp_path)])
    assert result.exit_code == 2 and "DOCGROUND_ADMIN_KEY" in result.output
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
