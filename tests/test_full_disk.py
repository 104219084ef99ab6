"""A full disk under DOCGROUND_HOME: the home is a small tmpfs, and one large file takes its free space.

An upload then answers 507 `no_space`; space running out during ingestion fails the document with that
code; earlier documents answer exactly as before; once space is freed the same upload succeeds. Nothing
is mocked: the writes really fail with ENOSPC (SQLite's "database or disk is full" for the registry).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from docground.api.app import create_app
from docground.service import Docground
from docground.settings import Settings
from docground_testing.full_disk import fill
from docground_testing.live_server import no_rate_limit, upload, wait_document
from docground_testing.pdfgen import two_column_pdf

# The child process of the store test: writes a few chunks, fills the disk, then writes more; exit 0 when
# the second write was refused and the first chunks are all that is stored.
STORE_ON_A_FULL_DISK = textwrap.dedent("""
    import sys
    from pathlib import Path
    from docground.errors import NoSpace
    from docground.retrieval.store import EdgeStore, IndexedChunk
    from docground_testing.full_disk import fill

    disk = Path(sys.argv[1])
    def chunks(start, n):
        return [IndexedChunk(f"00000000-0000-0000-0000-{i:012d}", [1.0 + i] + [0.5] * 383, ([1, 2], [0.1, 0.2]),
                             {"document_id": "d", "fingerprint": "f", "text": "words " * 300}) for i in range(start, n)]
    store = EdgeStore(disk / "store", 384)
    store.upsert(chunks(0, 5))
    store.flush()
    fill(disk)
    try:
        store.upsert(chunks(5, 55))
    except NoSpace:
        sys.exit(0 if store.count() == 5 else 3)
    sys.exit(2)
""")
# Room for the registry, an embedded store and a few small PDFs, and for the store's margin (4 MiB + ...).
DISK_SIZE = "24m"
KB = "papers"


@pytest.fixture
def disk(tmp_path) -> Path:
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux")
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(mount)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"this machine does not let root mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def service(disk, embedder):
    settings = Settings(home=disk / "home")
    no_rate_limit(settings)
    svc = Docground(settings)
    svc._embedder = embedder
    yield svc
    svc.close()  # before the disk's unmount: the store's files are mapped, the registry's open
    svc.registry.engine.dispose()


@pytest.fixture
def client(service):
    with TestClient(create_app(service.settings, service)) as c:
        yield c


def ingested(client, data: bytes, name: str) -> dict:
    r = upload(client, KB, data, name)
    assert r.status_code == 202, r.text
    status = wait_document(client, r.json()["document_id"])
    assert status["status"] == "ready", status
    return status


def ask(client, question: str) -> dict:
    r = client.post(f"/v1/knowledge-bases/{KB}/query", json={"query": question})
    assert r.status_code == 200, r.text
    return r.json()


def partial_files(home: Path) -> list[Path]:
    return [p for p in home.rglob("*") if p.name.endswith(".part")]


def test_an_upload_on_a_full_disk_is_refused_and_earlier_documents_answer_as_before(client, service, disk):
    first, lines = two_column_pdf(pages=2, seed=41)
    earlier = ingested(client, first, "first.pdf")
    question = lines[12]["text"]
    before = ask(client, question)
    assert before["citations"] and before["citations"][0]["document_id"] == earlier["document_id"]

    filler = fill(disk)
    second, second_lines = two_column_pdf(pages=2, seed=42)
    refused = upload(client, KB, second, "second.pdf")
    assert refused.status_code == 507, refused.text
    assert refused.json()["code"] == "no_space"
    assert refused.json()["message"].startswith("no space left on the data directory's disk")
    listed = client.get(f"/v1/knowledge-bases/{KB}/documents").json()["documents"]
    assert [d["document_id"] for d in listed] == [earlier["document_id"]]
    assert partial_files(service.settings.home) == []
    assert ask(client, question) == before

    filler.unlink()
    later = ingested(client, second, "second.pdf")
    assert ask(client, second_lines[12]["text"])["citations"][0]["document_id"] == later["document_id"]
    assert client.get(f"/v1/documents/{earlier['document_id']}").json() == earlier


@pytest.mark.parametrize(("leave", "pages_stored"), [(0, 0), (2 << 20, 2)],
                         ids=["disk-full", "too-little-for-the-store"])
def test_space_running_out_during_ingestion_fails_the_document_and_keeps_the_others(client, service, disk, leave,
                                                                                    pages_stored):
    """Registered (the upload's first stage), then the disk fills before the job runs on the runner's
    thread: completely (the registry's first write fails), or all but 2 MiB (the pages are stored, the
    store refuses the chunks: its memory-mapped writes would kill the process on a full disk)."""
    first, lines = two_column_pdf(pages=2, seed=43)
    earlier = ingested(client, first, "first.pdf")
    question = lines[12]["text"]
    before = ask(client, question)

    second, _ = two_column_pdf(pages=2, seed=44)
    registration = service.register(KB, "second.pdf", second)
    filler = fill(disk, leave)
    service.run_job(registration.job.id)  # what the runner's thread runs
    failed = client.get(f"/v1/documents/{registration.document.id}").json()
    assert failed["status"] == "failed" and failed["error_code"] == "no_space", failed
    assert failed["error"].startswith("no space left") and failed["pages_done"] == pages_stored
    assert service.store(KB).count(registration.document.id) == 0
    assert partial_files(service.settings.home) == []
    assert ask(client, question) == before
    assert client.get(f"/v1/documents/{earlier['document_id']}").json() == earlier

    filler.unlink()
    again = ingested(client, second, "second.pdf")
    assert again["document_id"] == registration.document.id and again["chunks"] > 0


def test_the_embedded_store_refuses_chunks_on_a_full_disk_instead_of_dying(disk):
    """qdrant-edge writes through memory maps: on a full disk the write is a SIGBUS that kills the process,
    not an error. A child process writes to a store on the full disk and must live to report NoSpace."""
    child = subprocess.run([sys.executable, "-c", STORE_ON_A_FULL_DISK, str(disk)], capture_output=True, text=True,
                           timeout=120)
    assert child.returncode == 0, (child.returncode, child.stderr[-2000:])
