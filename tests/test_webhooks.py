"""Signed webhooks against a real receiver on 127.0.0.1: events on ready and failed, signatures the README's
snippet verifies, retries after errors, refused private addresses, the secret's guard, resumption after a
restart, events a Celery worker writes, and the outbox itself on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from docground.api.app import create_app
from docground.errors import InvalidCallbackUrl
from docground.registry import Document
from docground.service import Docground
from docground.settings import Settings
from docground.webhooks import WebhookSender, check_callback_url
from docground_testing.cluster import RedisServer, WorkerProcess, cluster_env
from docground_testing.live_server import Borrowed
from docground_testing.llm_standin import LocalServer, QuietHandler
from docground_testing.pdfgen import image_only_pdf, two_column_pdf
from docground_testing.registries import registry_on

ADMIN = "webhook-admin-key"
DEADLINE_S = 90.0
README = Path(__file__).resolve().parents[1] / "README.md"


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def readme_verify():
    """The verification snippet exactly as the README shows it."""
    code_block = r"```python\n((?:(?!```).)*def verify_signature(?:(?!```).)*)```"
    block = re.search(code_block, README.read_text(encoding="utf-8"), re.S)
    assert block, "README.md has no verify_signature snippet"
    namespace: dict = {}
    exec(block.group(1), namespace)  # noqa: S102 - the documented code is what is under test
    return namespace["verify_signature"]


class Receiver(LocalServer):
    """An HTTP server on 127.0.0.1 that records every POST; a path may be told to fail its first requests."""

    def __init__(self):
        self.requests: list[dict] = []
        self.failures: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self):  # noqa: N802 - the http.server interface
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    planned = receiver.failures.get(self.path)
                    status = planned.pop(0) if planned else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(Handler)

    def at(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def wait(self, path: str, count: int = 1) -> list[dict]:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            if len(got := self.at(path)) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{len(self.at(path))} of {count} requests at {path} after {DEADLINE_S:.0f} s")


def hook_settings(home: Path, **overrides) -> Settings:
    # A page image over max_image_pixels is refused, so a scan fails as no_readable_pages (a failed document).
    values = dict(home=home, admin_key=ADMIN, rate_limit_per_minute=0, ocr_backend="none", max_image_pixels=1000,
                  webhook_allow_private=True, webhook_backoff_s=0.2, webhook_backoff_max_s=1.0)
    return Settings(**(values | overrides))


@pytest.fixture(scope="module")
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def api(tmp_path_factory, embedder, receiver):
    settings = hook_settings(tmp_path_factory.mktemp("webhooks") / "home")
    service = Docground(settings)
    service._embedder = embedder
    with TestClient(create_app(settings, Borrowed(service))) as client:
        keys = {}
        for kb in ("alpha", "beta"):
            r = client.post("/v1/knowledge-bases", headers=bearer(ADMIN),
                            json={"name": kb, "callback_url": f"{receiver.url}/kb/{kb}"})
            assert r.status_code == 201, r.text
            keys[kb] = r.json()["api_key"]
        yield client, keys, service
    service.close()


def upload(client, kb: str, key: str, data: bytes, name: str, callback_url: str | None = None):
    form = {"callback_url": callback_url} if callback_url else None
    r = client.post(f"/v1/knowledge-bases/{kb}/documents", headers=bearer(key), data=form,
                    files={"file": (name, data, "application/pdf")})
    assert r.status_code == 202, r.text
    return r.json()["document_id"]


def wait_document(client, document_id: str) -> dict:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        body = client.get(f"/v1/documents/{document_id}", headers=bearer(ADMIN)).json()
        if body["status"] in ("ready", "failed"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"document {document_id} still {body['status']} after {DEADLINE_S:.0f} s")


def test_a_ready_document_is_announced_with_a_signature_the_readme_snippet_verifies(api, receiver):
    client, keys, _ = api
    secret = client.post("/v1/knowledge-bases/alpha/webhook-secret", headers=bearer(keys["alpha"])).json()["secret"]
    assert secret.startswith("whsec_")
    data, _ = two_column_pdf(pages=2, seed=71)
    doc_id = upload(client, "alpha", keys["alpha"], data, "paper.pdf")
    status = wait_document(client, doc_id)
    request = receiver.wait("/kb/alpha")[0]
    headers = {k.lower(): v for k, v in request["headers"].items()}
    event = json.loads(request["body"])
    assert headers["content-type"] == "application/json"
    assert headers["x-docground-event"] == event["event"] == "document.ready"
    assert headers["x-docground-delivery"] == event["id"]
    assert event["kb"] == "alpha" and event["document_id"] == doc_id and event["filename"] == "paper.pdf"
    assert event["status"] == "ready" and event["pages"] == 2 and event["chunks"] == status["chunks"] > 0
    assert event["error"] is None and event["error_code"] is None and event["timestamp"].endswith("Z")

    verify = readme_verify()
    signature = headers["x-docground-signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", signature)
    assert verify(secret, signature, request["body"])
    assert not verify(secret, signature, request["body"].replace(b'"ready"', b'"failed"'))
    assert not verify(secret.replace("whsec_", "whsec_x"), signature, request["body"])
    assert not verify(secret, signature, request["body"], tolerance_s=-1)  # a replay past the tolerance

    info = client.get("/v1/knowledge-bases/alpha", headers=bearer(keys["alpha"])).json()
    assert info["callback_url"] == f"{receiver.url}/kb/alpha" and info["has_webhook_secret"] is True
    assert "secret" not in info


def test_a_failed_document_is_announced_to_the_upload_and_the_knowledge_base(api, receiver):
    client, keys, service = api
    secret = client.post("/v1/knowledge-bases/beta/webhook-secret", headers=bearer(keys["beta"])).json()["secret"]
    data, _ = two_column_pdf(pages=1, seed=72)
    doc_id = upload(client, "beta", keys["beta"], image_only_pdf(data), "scan.pdf",
                    callback_url=f"{receiver.url}/upload/scan")
    assert wait_document(client, doc_id)["status"] == "failed"
    for path in ("/upload/scan", "/kb/beta"):
        request = receiver.wait(path)[0]
        event = json.loads(request["body"])
        assert event["event"] == "document.failed" and event["status"] == "failed" and event["document_id"] == doc_id
        assert event["error_code"] == "no_readable_pages" and "image" in event["error"]
        assert readme_verify()(secret, request["headers"]["X-Docground-Signature"], request["body"])
    assert {d.status for d in service.registry.deliveries(doc_id)} == {"delivered"}


def test_a_delivery_is_retried_after_the_receiver_fails_twice(api, receiver):
    client, keys, service = api
    receiver.failures["/flaky"] = [500, 500]
    data, _ = two_column_pdf(pages=1, seed=73)
    doc_id = upload(client, "alpha", keys["alpha"], data, "flaky.pdf", callback_url=f"{receiver.url}/flaky")
    requests = receiver.wait("/flaky", 3)
    assert len({r["body"] for r in requests}) == 1  # the same event, re-signed on each attempt
    assert json.loads(requests[0]["body"])["document_id"] == doc_id
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        delivery = next(d for d in service.registry.deliveries(doc_id) if d.url.endswith("/flaky"))
        if delivery.status != "pending":
            break
        time.sleep(0.05)
    assert delivery.status == "delivered" and delivery.attempts == 3 and delivery.last_status_code == 200


def test_an_upload_of_a_ready_document_is_announced_at_once(api, receiver):
    client, keys, _ = api
    data, _ = two_column_pdf(pages=1, seed=74)
    doc_id = upload(client, "alpha", keys["alpha"], data, "again.pdf")
    wait_document(client, doc_id)
    assert upload(client, "alpha", keys["alpha"], data, "again.pdf", callback_url=f"{receiver.url}/again") == doc_id
    event = json.loads(receiver.wait("/again")[0]["body"])
    assert event["event"] == "document.ready" and event["document_id"] == doc_id


def test_the_secret_and_the_settings_are_the_knowledge_bases_own(api, receiver):
    client, keys, _ = api
    assert client.post("/v1/knowledge-bases/alpha/webhook-secret").status_code == 401
    for path, method, body in (("/v1/knowledge-bases/beta/webhook-secret", "POST", None),
                               ("/v1/knowledge-bases/beta", "PATCH", {"callback_url": None})):
        r = client.request(method, path, headers=bearer(keys["alpha"]), json=body)
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
    first = client.post("/v1/knowledge-bases/alpha/webhook-secret", headers=bearer(keys["alpha"])).json()
    second = client.post("/v1/knowledge-bases/alpha/webhook-secret", headers=bearer(ADMIN)).json()
    assert first["name"] == second["name"] == "alpha" and first["secret"] != second["secret"]
    assert client.post("/v1/knowledge-bases/nowhere/webhook-secret", headers=bearer(ADMIN)).status_code == 404

    patched = client.patch("/v1/knowledge-bases/alpha", headers=bearer(keys["alpha"]),
                           json={"callback_url": f"{receiver.url}/kb/alpha2"})
    assert patched.status_code == 200 and patched.json()["callback_url"] == f"{receiver.url}/kb/alpha2"
    unchanged = client.patch("/v1/knowledge-bases/alpha", headers=bearer(keys["alpha"]), json={})
    assert unchanged.json()["callback_url"] == f"{receiver.url}/kb/alpha2"
    cleared = client.patch("/v1/knowledge-bases/alpha", headers=bearer(keys["alpha"]), json={"callback_url": None})
    assert cleared.json()["callback_url"] is None
    client.patch("/v1/knowledge-bases/alpha", headers=bearer(ADMIN), json={"callback_url": f"{receiver.url}/kb/alpha"})


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/", "http://192.168.0.10/x",
    "http://169.254.169.254/latest/meta-data/", "http://[::1]/", "http://[fe80::1]/", "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0/", "http://100.64.0.1/", "http://224.0.0.1/", "http://[2002:7f00:1::]/",
])
def test_private_loopback_and_link_local_addresses_are_refused(url):
    with pytest.raises(InvalidCallbackUrl, match="DOCGROUND_WEBHOOK_ALLOW_PRIVATE"):
        check_callback_url(url, allow_private=False)
    assert check_callback_url(url, allow_private=True) == url


@pytest.mark.parametrize("url", ["ftp://example.org/x", "file:///etc/passwd", "https://user:pw@example.org/",
                                 "http:///nohost", "https://exa mple.org/", "http://bad_host!/", "example.org/hook",
                                 "http://example.org:99999/", "https://" + "a" * 2100 + ".org/"])
def test_malformed_callback_urls_are_refused(url):
    for allow_private in (False, True):
        with pytest.raises(InvalidCallbackUrl, match="callback_url"):
            check_callback_url(url, allow_private=allow_private)


def test_without_the_setting_the_api_refuses_a_private_callback(tmp_path, embedder, receiver):
    settings = hook_settings(tmp_path / "home", webhook_allow_private=False)
    service = Docground(settings)
    service._embedder = embedder
    with TestClient(create_app(settings, Borrowed(service))) as client:
        r = client.post("/v1/knowledge-bases", headers=bearer(ADMIN),
                        json={"name": "locked", "callback_url": f"{receiver.url}/private"})
        assert r.status_code == 422 and r.json()["code"] == "invalid_callback_url"
        assert "127.0.0.1" in r.json()["message"] and "DOCGROUND_WEBHOOK_ALLOW_PRIVATE" in r.json()["message"]
        assert client.get("/v1/knowledge-bases/locked", headers=bearer(ADMIN)).status_code == 404  # not created
        assert client.post("/v1/knowledge-bases", headers=bearer(ADMIN), json={"name": "locked"}).status_code == 201
        for url in (f"{receiver.url}/private", "http://[::1]/x", "gopher://example.org/"):
            r = client.patch("/v1/knowledge-bases/locked", headers=bearer(ADMIN), json={"callback_url": url})
            assert r.status_code == 422 and r.json()["code"] == "invalid_callback_url", r.text
        data, _ = two_column_pdf(pages=1, seed=75)
        r = client.post("/v1/knowledge-bases/locked/documents", headers=bearer(ADMIN),
                        data={"callback_url": "http://localhost:9/x"}, files={"file": ("a.pdf", data)})
        assert r.status_code == 422 and r.json()["code"] == "invalid_callback_url"
        listed = client.get("/v1/knowledge-bases/locked/documents", headers=bearer(ADMIN)).json()["documents"]
        assert listed == []  # nothing was registered
    service.close()
    assert receiver.at("/private") == []


def ingest_announced(settings: Settings, embedder, kb: str, callback_url: str, seed: int) -> tuple[Docground, str]:
    """A service that has ingested one document into `kb`, whose events go to `callback_url`; no sender has
    run, so the document's event is still waiting in the outbox."""
    service = Docground(settings)
    service._embedder = embedder
    service.registry.ensure_kb(kb)
    service.registry.set_callback_url(kb, callback_url)
    data, _ = two_column_pdf(pages=1, seed=seed)
    return service, service.ingest(kb, "a.pdf", data).document_id


def test_a_host_that_turns_private_before_delivery_is_not_called(tmp_path, embedder, receiver):
    """The check runs again before each attempt: a URL accepted earlier whose host now resolves to a
    loopback address (DNS rebinding) is given up, and nothing reaches it."""
    settings = hook_settings(tmp_path / "home", webhook_allow_private=False)
    rebound_url = f"http://localhost:{receiver.url.rsplit(':', 1)[1]}/rebound"
    service, doc_id = ingest_announced(settings, embedder, "rebound", rebound_url, seed=76)
    sender = WebhookSender(service.registry, settings, threads=0)
    assert sender.send_one() and not sender.send_one()
    delivery = service.registry.deliveries(doc_id)[0]
    assert delivery.status == "failed" and delivery.attempts == 1 and "refused" in delivery.last_error
    assert receiver.at("/rebound") == []
    sender.close()
    service.close()


def test_pending_deliveries_survive_a_restart(tmp_path, embedder, receiver):
    """An event written while no server ran (`docground ingest`, or a server stopped before sending) is sent
    by the next server on that home."""
    settings = hook_settings(tmp_path / "home")
    service, doc_id = ingest_announced(settings, embedder, "later", f"{receiver.url}/later", seed=77)
    assert [d.status for d in service.registry.deliveries(doc_id)] == ["pending"]
    service.close()

    restarted = Docground(settings)
    restarted._embedder = embedder
    with TestClient(create_app(settings, Borrowed(restarted))):
        event = json.loads(receiver.wait("/later")[0]["body"])
    restarted.close()
    assert event["document_id"] == doc_id and event["event"] == "document.ready"


def test_with_celery_workers_an_event_a_worker_writes_is_sent_by_the_server(tmp_path, embedder, receiver):
    """With a broker, a worker process fails the scan (its finalize task) and so writes the event; the
    document parsed by the worker and indexed by this process (the store's owner) is announced too. The
    server's sender threads deliver both."""
    redis = RedisServer(tmp_path / "redis").start()
    fields = dict(home=tmp_path / "home", broker_url=redis.url, ocr_backend="none", max_image_pixels=1000,
                  embedding_threads=1, webhook_allow_private=True, webhook_backoff_s=0.2, webhook_backoff_max_s=1.0)
    worker = WorkerProcess(cluster_env(fields), tmp_path, queues="cpu,gpu").start()
    settings = Settings(**fields)
    service = Docground(settings)
    service._embedder = embedder
    try:
        worker.wait_ready()
        with TestClient(create_app(settings, Borrowed(service))) as client:
            data, _ = two_column_pdf(pages=1, seed=78)
            ids = {}
            for name, body in (("ready", data), ("failed", image_only_pdf(data))):
                r = client.post("/v1/knowledge-bases/queued/documents", files={"file": (f"{name}.pdf", body)},
                                data={"callback_url": f"{receiver.url}/c/{name}"})
                assert r.status_code == 202, r.text
                ids[name] = r.json()["document_id"]
            events = {name: json.loads(receiver.wait(f"/c/{name}")[0]["body"]) for name in ids}
    finally:
        worker.kill()
        service.close()
        redis.stop()
    assert events["ready"]["event"] == "document.ready" and events["ready"]["document_id"] == ids["ready"]
    assert events["failed"]["event"] == "document.failed" and events["failed"]["error_code"] == "no_readable_pages"
    assert "no_readable_pages" in worker.log() or "NoReadablePages" in worker.log()  # the worker failed it


POSTGRES_URL = os.environ.get("DOCGROUND_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request, tmp_path):
    with registry_on(request.param, tmp_path) as registry:
        yield registry


def test_the_outbox_arms_once_claims_once_and_backs_off(registry):
    """An event is written with the status change; one sender at a time holds an attempt; a failed attempt
    is due again after its backoff, and the last allowed one gives up."""
    registry.ensure_kb("kb")
    registry.set_callback_url("kb", "https://hooks.example.org/kb")
    doc = Document(id="f" * 32, kb="kb", filename="a.pdf", sha256="2" * 64, kind="pdf", size_bytes=1, pages_total=1)
    job = registry.register(doc, "fp").job
    registry.subscribe(doc.id, "https://hooks.example.org/upload")
    registry.subscribe(doc.id, "https://hooks.example.org/upload")  # the same URL again: one delivery
    assert [d.status for d in registry.deliveries(doc.id)] == ["waiting"]
    assert registry.claim_delivery(60) is None  # nothing is due before the document is done
    assert registry.advance(job.id, "done", chunks=3)
    assert not registry.advance(job.id, "done")  # a second finish writes no second event
    assert sorted((d.url, d.status, d.event) for d in registry.deliveries(doc.id)) == [
        ("https://hooks.example.org/kb", "pending", "document.ready"),
        ("https://hooks.example.org/upload", "pending", "document.ready")]

    first, second = registry.claim_delivery(60), registry.claim_delivery(60)
    assert first.id != second.id and first.attempts == second.attempts == 1
    assert registry.claim_delivery(60) is None  # both are held
    assert json.loads(first.payload)["chunks"] == 3 and json.loads(first.payload)["id"] == first.id
    registry.finish_delivery(first.id, True, 204, None, None, max_attempts=3)
    registry.finish_delivery(second.id, False, 500, "HTTP 500", 0.0, max_attempts=2)
    again = registry.claim_delivery(60)
    assert again.id == second.id and again.attempts == 2
    registry.finish_delivery(again.id, False, 500, "HTTP 500", 0.0, max_attempts=2)
    assert registry.claim_delivery(60) is None
    final = {d.id: d for d in registry.deliveries(doc.id)}
    assert final[first.id].status == "delivered" and final[first.id].last_status_code == 204
    assert final[second.id].status == "failed" and final[second.id].attempts == 2
