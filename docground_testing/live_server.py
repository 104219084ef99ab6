"""The real HTTP app on a real socket in a thread, for tests that need a browser or a network client; and
waiting on a document through the API, with that client or FastAPI's TestClient."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import uvicorn

from docground.api.app import create_app


class LiveServer:
    """With `service`, the app borrows the caller's service; without, it builds its own, as `docground serve`
    does (and this process then owns the embedded store)."""

    def __init__(self, settings, service=None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        app = create_app(settings, Borrowed(service) if service is not None else None)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the live server did not become ready")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)  # an owned service closes its store on the way out
        self.sock.close()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Borrowed:
    """A test's service lent to an app, which must not close it when it shuts down."""

    def __init__(self, service):
        self._service = service

    def __getattr__(self, name):
        return getattr(self._service, name)

    def close(self) -> None:
        pass


def wait_document(client, document_id: str, timeout_s: float = 60.0) -> dict:
    """The document's status once it is ready or failed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = client.get(f"/v1/documents/{document_id}").json()
        if body["status"] in ("ready", "failed"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"document {document_id} still {body['status']} after {timeout_s:.0f} s")


def no_rate_limit(settings) -> None:
    if "rate_limit_per_minute" in type(settings).model_fields:  # the API's per-client limit (api/auth.py)
        settings.rate_limit_per_minute = 0


def upload(client, kb: str, data: bytes, name: str = "doc.pdf", key: str | None = None):
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(f"/v1/knowledge-bases/{kb}/documents", files={"file": (name, data, "application/pdf")},
                       headers=headers)
