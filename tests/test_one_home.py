"""One home, several processes: the CLI run on a home that `docground serve` holds goes through the server
(found by the lock file it writes, api/home.py) instead of opening the embedded stores; without a server,
or with a stale lock file, it works embedded."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from docground_testing.pdfgen import two_column_pdf

DOCGROUND = [sys.executable, "-m", "docground.api.cli"]
ADMIN_KEY = "dgk_admin_one_home_test"
DEADLINE_S = 240.0


def env_for(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCGROUND_")}
    return env | {"DOCGROUND_HOME": str(home), "DOCGROUND_ADMIN_KEY": ADMIN_KEY, "DOCGROUND_RATE_LIMIT_PER_MINUTE": "0"}


def run(args, home: Path):
    return subprocess.run(DOCGROUND + args, capture_output=True, text=True, env=env_for(home), timeout=600)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_lock(home: Path, url: str, pid: int, started: float) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "server.json").write_text(json.dumps({"url": url, "pid": pid, "started": started}))


class Served:
    """`docground serve` in its own process on a home, its access log in a file."""

    def __init__(self, home: Path, log: Path):
        self.home, self.log, self.port = home, log, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(DOCGROUND + ["serve", "--port", str(self.port)], env=env_for(home),
                                     stdout=log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, log.read_text()
            try:
                if httpx.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise AssertionError(f"docground serve did not become ready: {log.read_text()}")

    def requests(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # a clean exit, as Ctrl-C gives
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    data, lines = two_column_pdf(pages=2, seed=11)
    (folder / "report.pdf").write_bytes(data)
    return folder / "report.pdf", lines[5]["text"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A server on a home that a crashed server left a lock file in (its pid dead): replaced as it starts."""
    home = tmp_path_factory.mktemp("served") / "home"
    write_lock(home, "http://127.0.0.1:9", dead_pid(), time.time())
    server = Served(home, home.parent / "serve.log")
    yield server
    server.stop()


def ingest_and_query(home: Path, pdf: Path, question: str) -> tuple[list, dict]:
    ingested = run(["ingest", str(pdf), "--kb", "reports", "--json"], home)
    assert ingested.returncode == 0, ingested.stderr
    answered = run(["query", question, "--kb", "reports", "--top-k", "3", "--json"], home)
    assert answered.returncode == 0, answered.stderr
    return json.loads(ingested.stdout), json.loads(answered.stdout)


def best(body: dict) -> tuple[float, set[str]]:
    top = max(c["score"] for c in body["chunks"])
    return round(top, 5), {c["chunk_id"] for c in body["chunks"] if round(c["score"], 5) == round(top, 5)}


def scores(body: dict) -> list[float]:
    """The ranking's scores: which of two chunks of equal score comes first may differ between two reads."""
    return [round(c["score"], 5) for c in body["chunks"]]


def test_the_server_replaced_the_stale_lock_with_its_own(served):
    lock = json.loads((served.home / "server.json").read_text())
    assert lock["url"] == served.url and lock["pid"] == served.proc.pid


def test_ingest_and_query_go_through_the_server_and_match_embedded(served, report, tmp_path):
    pdf, question = report
    through_server = ingest_and_query(served.home, pdf, question)
    log = served.requests()
    assert "POST /v1/knowledge-bases/reports/documents" in log and "POST /v1/knowledge-bases/reports/query" in log

    embedded = ingest_and_query(tmp_path / "embedded", pdf, question)
    assert through_server[0] == embedded[0]
    [doc] = through_server[0]
    assert doc["status"] == "ready" and doc["pages"] == 2 and doc["chunks"] > 0
    # The best-scored chunks match. Below them the ranking may not: `docground ingest` builds the vector index
    # of the store it opened, a server leaves that to `optimize`, and two equal scores may come in either
    # order; the same store read by both paths matches its scores (test_a_stopped_server_...).
    served_answer, embedded_answer = through_server[1], embedded[1]
    assert best(served_answer) == best(embedded_answer)
    assert served_answer["answer"] and served_answer["citations"][0]["document_id"] == doc["document_id"]

    # the plain output too: the same lines, whichever process did the work
    again = run(["ingest", str(pdf), "--kb", "reports"], served.home)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"✓ {pdf}: 2 pages, {doc['chunks']} chunks\n"

    exported = run(["export", doc["document_id"], "--format", "json"], served.home)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == run(["export", doc["document_id"], "--format", "json"], tmp_path / "embedded").stdout


def test_progress_follows_the_document_events_and_delete_goes_through_the_server(served, tmp_path):
    from docground.api.cli import _server_ingest
    from docground.api.client import DocgroundClient

    pdf = tmp_path / "three.pdf"
    pdf.write_bytes(two_column_pdf(pages=3, seed=23)[0])
    seen = []
    with DocgroundClient(served.url, api_key=ADMIN_KEY) as client:
        result = _server_ingest(client, "progress", [pdf])("progress", pdf.name, b"", lambda *p: seen.append(p))
        assert result.status == "ready" and result.pages == 3
        assert seen and seen[-1] == (3, 3) and all(done <= total == 3 for done, total in seen)

        deleted = run(["delete", result.document_id], served.home)
        assert deleted.returncode == 0, deleted.stderr
        assert f"DELETE /v1/documents/{result.document_id}" in served.requests()
        assert client.documents("progress") == []
    gone = run(["delete", result.document_id], served.home)
    assert gone.returncode == 2 and "does not exist" in gone.stderr


def test_status_lists_the_server_and_its_knowledge_bases(served, report):
    pdf, _ = report
    assert run(["ingest", str(pdf), "--kb", "reports", "--json"], served.home).returncode == 0
    status = run(["status", "--json"], served.home)
    assert status.returncode == 0, status.stderr
    body = json.loads(status.stdout)
    assert body["server"] == {"url": served.url, "pid": served.proc.pid}
    assert body["workers"]["names"] == [] and body["workers"]["broker"] is None
    kbs = {kb["name"]: kb for kb in body["knowledge_bases"]}
    assert kbs["reports"] == {"name": "reports", "documents": 1, "in_flight": []}

    text = run(["status"], served.home)
    assert f"server: {served.url} (pid {served.proc.pid})" in text.stdout
    assert "reports: 1 document(s)" in text.stdout and "workers: none" in text.stdout


def test_a_second_server_on_the_same_home_is_refused(served):
    second = run(["serve", "--port", str(free_port())], served.home)
    assert second.returncode == 2 and "already served" in second.stderr


def test_stale_lock_files_are_ignored(report, tmp_path):
    pdf, question = report
    home = tmp_path / "home"
    write_lock(home, "http://127.0.0.1:9", dead_pid(), time.time())  # its server died
    [doc], answer = ingest_and_query(home, pdf, question)
    assert doc["status"] == "ready" and answer["chunks"]

    # a live pid (not a server: this test) whose address has not answered for long
    write_lock(home, f"http://127.0.0.1:{free_port()}", os.getpid(), time.time() - 3600)
    status = json.loads(run(["status", "--json"], home).stdout)
    assert status["server"] is None and status["knowledge_bases"][0]["documents"] == 1
    assert run(["query", question, "--kb", "reports", "--json"], home).returncode == 0


def test_a_stopped_server_removes_its_lock_and_the_cli_works_embedded(report, tmp_path):
    pdf, question = report
    home = tmp_path / "home"
    server = Served(home, tmp_path / "serve.log")
    try:
        [doc], through_server = ingest_and_query(home, pdf, question)
    finally:
        server.stop()
    assert server.proc.returncode == 0 and not (home / "server.json").exists()
    status = run(["status"], home)
    assert "server: none" in status.stdout and "reports: 1 document(s)" in status.stdout
    answered = run(["query", question, "--kb", "reports", "--top-k", "3", "--json"], home)
    assert answered.returncode == 0, answered.stderr
    embedded = json.loads(answered.stdout)
    assert scores(embedded) == scores(through_server) and len(scores(embedded)) == 3
    assert best(embedded) == best(through_server)
    assert embedded["chunks"][0]["document_id"] == doc["document_id"]
