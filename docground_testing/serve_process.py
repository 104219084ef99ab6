"""`docground serve` as a real process on a free port, killable with SIGKILL (a machine or container dying), and
restartable on the same home; and a streamed upload that a test can stop halfway through its body. Nothing is a
mock: the process is the installed CLI with the settings it is given as DOCGROUND_<NAME> variables."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from docground_testing.cluster import ROOT, ChildProcess, cluster_env, free_port, wait_until


class ServeProcess(ChildProcess):
    """`docground serve --port <free port>` on `settings_fields` (home included), in its own process group; stop()
    is a clean shutdown (the server closes its store and removes its lock file).
    `env`: more environment (the test harnesses' DOCGROUND_TEST_* switches); with `harness`, start() runs
    docground_testing/serve_harness.py (the same app, its index writes pausing half-way) instead of the CLI."""

    stop_wait_s = 60.0

    def __init__(self, settings_fields: dict[str, object], log_dir: Path, env: dict[str, str] | None = None):
        self.env = cluster_env(settings_fields, **(env or {}))
        self.home = Path(str(settings_fields["home"]))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"serve-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, ready_within_s: float = 180, harness: bool = False) -> ServeProcess:
        cmd = ([sys.executable, "-m", "docground_testing.serve_harness"] if harness else
               [str(Path(sys.executable).with_name("docground")), "serve"]) + ["--port", str(self.port)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_until(self.ready, ready_within_s, "docground serve to answer /healthz", 0.2)
        return self

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"docground serve exited ({self.proc.returncode}): {self.log()[-3000:]}")
        try:
            return httpx.get(self.url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def client(self, timeout_s: float = 60) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout_s)



def multipart_upload(filename: str, data: bytes) -> tuple[bytes, str]:
    """The body and content type of a browser's upload form with one file field."""
    boundary = uuid.uuid4().hex
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/pdf\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class HalfSentUpload:
    """An upload to `url` (a `/v1/knowledge-bases/{kb}/documents` path) whose headers and first `sent` bytes of
    body are written on a raw socket; the rest never is. sendall returns only once the server has read all but
    what the kernel's buffers hold, so with a body far larger than those the server is mid-body."""

    def __init__(self, base_url: str, path: str, filename: str, data: bytes, sent: int):
        body, kind = multipart_upload(filename, data)
        host, port = base_url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.sock.sendall(head + body[:sent])
        self.total = len(body)

    def close(self) -> None:
        self.sock.close()
