"""Hostile and broken input: every bad file gets a clear error, nothing stored is lost.

Each case is a file generated here (tests/hostile_files.py) with one documented outcome (README, "Bad
input: what happens"): refused on upload (4xx with a code), a document that ends `failed` with a code,
or a document that ends `ready`. Every case runs through the service (what the CLI calls) and through
the HTTP upload endpoint. A good document indexed first answers exactly as before once all have run.
"""

from __future__ import annotations

import glob
import io
import os
import signal
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from docground.api.app import create_app
from docground.errors import ImageTooLarge, TooManyPages
from docground.ingest.pipeline import document_id, file_sha256
from docground.ingest.providers import PageLimits, guard, open_source
from docground.ingest.providers.names import BIDI_CONTROLS
from docground.ingest.schema import PageOutcome
from docground.registry import Document
from docground.service import Docground
from docground.settings import Settings

from .hostile_files import (
    ATTACHMENT_TEXT,
    SCRIPT_MARKER,
    VISIBLE_TEXT,
    bomb_png,
    bomb_tiff,
    docx_bytes,
    encrypted_pdf,
    font_bomb_pdf,
    form_bomb_pdf,
    huge_image_pdf,
    many_pages_pdf,
    poster_pdf,
    random_bytes,
    scripted_pdf,
    small_pdf,
    zip_bytes,
)
from .live_server import wait_document
from .pdfgen import image_bytes, two_column_pdf

pytestmark = pytest.mark.timeout(180)  # never a hang: a stuck case fails instead of blocking CI

PAGE_TIME_LIMIT_S = 2.0
MAIN = "main"  # holds the good document; every refused or failing case is thrown at it too
ODD = "odd"  # valid but odd files, which add documents of their own
MB = 2**20


# ---- the cases
@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], bytes]
    ends: str  # "refused" (4xx on upload), "failed" or "ready"
    code: str | None = None  # the refusal's or the failed document's error code
    http_status: int = 202
    filename: str = "upload.pdf"
    check: Callable[[Docground, Document], None] | None = None  # more about a ready document

    def __str__(self) -> str:
        return self.name


def _text(service: Docground, doc: Document) -> str:
    layouts = service.registry.page_layouts(doc.id, doc.fingerprint)
    return "\n".join(raw for raw in layouts)


def _skipped_second_page(service: Docground, doc: Document) -> None:
    first, second = service.registry.pages(doc.id)
    assert VISIBLE_TEXT in _text(service, doc) and doc.pages_total == 2
    assert second.reason.startswith("skipped (page_timeout)") and "DOCGROUND_PAGE_TIME_LIMIT_S" in second.reason
    skipped = service.document_layouts(doc.id)[1]
    assert (skipped.outcome, skipped.refusal) == (PageOutcome.SKIPPED, "page_timeout")
    assert first.reason == "text layer"


def _scripts_and_attachments_ignored(service: Docground, doc: Document) -> None:
    text = _text(service, doc)
    assert VISIBLE_TEXT in text
    assert SCRIPT_MARKER not in text and "alert" not in text and ATTACHMENT_TEXT.decode() not in text


def _three_pages_from_what_survived(service: Docground, doc: Document) -> None:
    assert doc.pages_total == 3 and "p1c0q0" in _text(service, doc)


def _stored_as(name: str) -> Callable[[Docground, Document], None]:
    def check(_: Docground, doc: Document) -> None:
        assert doc.filename == name

    return check


def _long_name_kept_short(_: Docground, doc: Document) -> None:
    assert len(doc.filename) == 255 and doc.filename.endswith(".pdf")


def _cut(data: bytes, share: float) -> bytes:
    return data[:int(len(data) * share)]


CASES = [
    Case("empty file", lambda: b"", "refused", "empty_file", 400),
    Case("PDF cut inside its header", lambda: two_column_pdf()[0][:200], "refused", "corrupt_file", 422),
    Case("random bytes", lambda: random_bytes(256 * 1024), "refused", "unsupported_file_type", 415),
    Case("60 MB of junk", lambda: random_bytes(60 * MB, seed=60), "refused", "unsupported_file_type", 415),
    Case("60 MB of junk behind a PDF header", lambda: b"%PDF-1.7\n" + random_bytes(60 * MB, seed=61), "refused",
         "corrupt_file", 422),
    Case("PDF with a user password", lambda: encrypted_pdf(user_password=True), "refused", "encrypted_file", 422),
    Case("text named .pdf", lambda: (VISIBLE_TEXT + "\n").encode() * 40, "refused", "unsupported_file_type", 415),
    Case("ZIP named .pdf", zip_bytes, "refused", "unsupported_file_type", 415),
    Case("DOCX named .pdf", docx_bytes, "refused", "unsupported_file_type", 415),
    Case("PNG cut in half", lambda: _cut(image_bytes("PNG", size=(300, 200)), 0.5), "refused", "corrupt_file", 422,
         "photo.png"),
    Case("GIF image", lambda: image_bytes("GIF"), "refused", "unsupported_file_type", 415, "animation.gif"),
    Case("PNG decompression bomb", bomb_png, "refused", "image_too_large", 413, "photo.png"),
    Case("TIFF decompression bomb", bomb_tiff, "refused", "image_too_large", 413, "scan.tiff"),
    Case("PDF of 5001 pages", lambda: many_pages_pdf(5001), "refused", "too_many_pages", 413),
    Case("a page of forms drawing forms", form_bomb_pdf, "failed", "no_readable_pages"),
    Case("a page showing a 60000x60000 image", huge_image_pdf, "failed", "no_readable_pages"),
    Case("a good page, then a page of forms drawing forms", lambda: form_bomb_pdf(readable_page=True), "ready",
         check=_skipped_second_page),
    Case("a page of 200 x 200 inches", poster_pdf, "ready"),
    Case("PDF with an owner password only", lambda: encrypted_pdf(user_password=False), "ready"),
    Case("PDF with JavaScript and an attachment", scripted_pdf, "ready", check=_scripts_and_attachments_ignored),
    Case("PDF cut in the middle", lambda: _cut(two_column_pdf(pages=3, seed=5)[0], 0.6), "ready",
         check=_three_pages_from_what_survived),
    Case("path traversal name", lambda: small_pdf("traversal"), "ready", filename="../../../etc/passwd.pdf",
         check=_stored_as("passwd.pdf")),
    Case("Windows path name", lambda: small_pdf("windows"), "ready", filename="..\\..\\Windows\\System32\\evil.pdf",
         check=_stored_as("evil.pdf")),
    Case("Unicode name", lambda: small_pdf("unicode"), "ready", filename="Cafe\u0301 报告 📄.pdf",
         check=_stored_as("Caf\u00e9 报告 📄.pdf")),
    Case("control and bidi characters in the name", lambda: small_pdf("controls"), "ready",
         filename="inv\x00oice\n\u202efdp.exe.pdf", check=_stored_as("invoicefdp.exe.pdf")),
    Case("a 1000-character name", lambda: small_pdf("long name"), "ready", filename="n" * 1000 + ".pdf",
         check=_long_name_kept_short),
]


# ---- one service and one app for the whole module, with a good document indexed first
@pytest.fixture(scope="module")
def service(tmp_path_factory, embedder):
    settings = Settings(home=tmp_path_factory.mktemp("hostile") / "home", page_time_limit_s=PAGE_TIME_LIMIT_S,
                        rate_limit_per_minute=0)
    svc = Docground(settings)
    svc._embedder = embedder
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def client(service):
    with TestClient(create_app(service.settings, service)) as c:
        yield c


@pytest.fixture(scope="module")
def good(service, client):
    data, lines = two_column_pdf(pages=2, seed=11)
    result = service.ingest(MAIN, "good.pdf", data)
    assert result.status == "ready" and result.chunks > 0, result
    question = lines[30]["text"]
    return {
        "data": data, "question": question, "document": result,
        "answer": service.query(MAIN, question).model_dump(mode="json"),
        "http_answer": client.post(f"/v1/knowledge-bases/{MAIN}/query", json={"query": question}).json(),
        "chunks": service.store(MAIN).count(),
    }


def kb_for(case: Case, http: bool) -> str:
    kb = MAIN if case.ends != "ready" else ODD
    return f"{kb}-http" if http and case.ends == "ready" else kb


@pytest.mark.parametrize("case", CASES, ids=str)
def test_service_outcome(case: Case, service, good):
    data = case.make()
    result = service.ingest(kb_for(case, http=False), case.filename, data)
    if case.ends == "refused":
        assert (result.status, result.document_id, result.error_code) == ("failed", None, case.code), result
        assert result.error
        doc_id = document_id(MAIN, file_sha256(data))
        assert service.registry.document(doc_id) is None and not service.blob_dir(doc_id).exists()
        return
    doc = service.registry.document(result.document_id)
    if case.ends == "failed":
        assert (doc.status, doc.error_code) == ("failed", case.code), doc.error
        assert doc.error and service.store(MAIN).count(doc.id) == 0
        return
    assert doc.status == "ready" and doc.chunks > 0 and doc.chunks == service.store(ODD).count(doc.id), doc.error
    if case.check:
        case.check(service, doc)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_http_outcome(case: Case, client, service, good):
    r = client.post(f"/v1/knowledge-bases/{kb_for(case, http=True)}/documents",
                    files={"file": (case.filename, case.make(), "application/octet-stream")})
    assert r.status_code == case.http_status, r.text
    body = r.json()
    if case.ends == "refused":
        assert body["code"] == case.code and body["message"]
        return
    status = wait_document(client, body["document_id"], timeout_s=120)
    assert status["status"] == ("failed" if case.ends == "failed" else "ready"), status
    assert status["error_code"] == case.code
    if case.ends == "ready":
        assert status["chunks"] > 0 and status["error"] is None
        assert_safe_name(status["filename"])


def assert_safe_name(name: str) -> None:
    assert name and len(name) <= 255 and "/" not in name and "\\" not in name and name not in (".", "..")
    assert unicodedata.normalize("NFC", name) == name
    assert not any(unicodedata.category(c) == "Cc" or c in BIDI_CONTROLS for c in name)


def test_the_same_file_twice_returns_the_existing_document(service, client, good):
    jobs = len(service.registry.jobs(("queued", "parsing", "indexing", "indexable", "done", "failed")))
    again = service.ingest(MAIN, "copy-of-good.pdf", good["data"])
    assert (again.document_id, again.status, again.chunks) == (good["document"].document_id, "ready",
                                                               good["document"].chunks)
    r = client.post(f"/v1/knowledge-bases/{MAIN}/documents",
                    files={"file": ("good.pdf", good["data"], "application/pdf")})
    assert r.status_code == 202 and r.json() == {"document_id": good["document"].document_id, "status": "ready"}
    assert len(service.registry.jobs(("queued", "parsing", "indexing", "indexable", "done", "failed"))) == jobs
    assert service.registry.document(good["document"].document_id).filename == "good.pdf"


def test_viewer_renders_a_huge_page_within_the_limit_and_refuses_a_skipped_page(client, service):
    limits = PageLimits.from_settings(service.settings)
    poster = client.post(f"/v1/knowledge-bases/{ODD}-viewer/documents", files={"file": ("poster.pdf", poster_pdf())})
    wait_document(client, poster.json()["document_id"], timeout_s=120)
    r = client.get(f"/v1/documents/{poster.json()['document_id']}/pages/1/image", params={"dpi": 300})
    assert r.status_code == 200
    width, height = Image.open(io.BytesIO(r.content)).size
    assert width * height <= limits.render_pixels and width > 1000  # 60 000 px a side at 300 DPI, unclamped

    bombed = client.post(f"/v1/knowledge-bases/{ODD}-viewer/documents",
                         files={"file": ("bombed.pdf", form_bomb_pdf(readable_page=True))})
    doc_id = bombed.json()["document_id"]
    assert wait_document(client, doc_id, timeout_s=120)["status"] == "ready"
    assert client.get(f"/v1/documents/{doc_id}/pages/1/image").status_code == 200
    started = time.monotonic()
    r = client.get(f"/v1/documents/{doc_id}/pages/2/image")
    assert r.status_code == 422 and r.json()["code"] == "page_timeout"
    assert time.monotonic() - started < PAGE_TIME_LIMIT_S + 30


def test_an_upload_over_the_size_limit_is_refused_before_it_is_read(tmp_path, embedder):
    settings = Settings(home=tmp_path / "home", max_upload_mb=50, rate_limit_per_minute=0)
    service = Docground(settings)
    service._embedder = embedder
    with TestClient(create_app(settings, service)) as c:
        r = c.post(f"/v1/knowledge-bases/{MAIN}/documents", files={"file": ("big.pdf", random_bytes(60 * MB))})
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    assert service.registry.get_kb(MAIN) is None


# ---- the limits themselves, on the providers
def test_limits_come_from_the_settings(tmp_path):
    limits = PageLimits.from_settings(Settings(home=tmp_path, max_pages=3, max_image_pixels=10_000,
                                               max_render_pixels=1_000_000, page_time_limit_s=1.5))
    assert limits == PageLimits(max_pages=3, time_s=1.5, memory_mb=2048, image_pixels=10_000,
                                render_pixels=1_000_000)
    with pytest.raises(TooManyPages):
        open_source(many_pages_pdf(4), limits)
    with pytest.raises(TooManyPages):
        open_source(image_bytes("TIFF", size=(50, 50), frames=4), limits)
    with pytest.raises(ImageTooLarge) as exc:
        open_source(image_bytes("PNG", size=(200, 200)), limits)
    assert "DOCGROUND_MAX_IMAGE_PIXELS" in exc.value.message
    page = open_source(poster_pdf(inches=20), limits).page(1)  # 1440 pt a side: 4000 px at 200 DPI
    image = page.render(200)
    assert image.width * image.height <= 1_000_000 and abs(image.width / image.height - 1) < 0.01


def test_renders_shrink_when_memory_is_short(monkeypatch):
    page = open_source(small_pdf("memory")).page(1)
    full = page.render(300)
    monkeypatch.setattr(guard, "available_memory", lambda: 12 * guard.MIN_RENDER_PIXELS * guard.RENDER_COPIES)
    assert page.render(300).size == full.size  # 8.4 M pixels fit
    monkeypatch.setattr(guard, "available_memory", lambda: 30 * MB)
    small = page.render(300)
    assert small.width * small.height <= guard.MIN_RENDER_PIXELS < full.width * full.height


def test_a_page_needing_too_much_memory_is_refused():
    data = font_bomb_pdf(inflated_mb=200)
    assert open_source(data, PageLimits(memory_mb=2048)).page(1).refused is None
    refused = open_source(data, PageLimits(memory_mb=64)).page(1).refused
    assert refused.code == "page_unreadable" and "DOCGROUND_PAGE_MEMORY_MB" in refused.message


def test_a_page_that_crashes_the_reader_is_refused_and_the_next_page_is_read(monkeypatch):
    crash_on = 2
    real = guard._interpret

    def crashing(page):  # runs in the child, which dies as a segfault in MuPDF would kill it
        if page.number + 1 == crash_on:
            os.kill(os.getpid(), signal.SIGKILL)
        real(page)

    monkeypatch.setattr(guard, "_interpret", crashing)
    source = open_source(small_pdf("crash", pages=3))
    refused = [p.refused.code if p.refused else None for p in source.pages()]
    assert refused == [None, "page_unreadable", None]
    assert "crashed" in source.page(2).refused.message
    source.close()


def test_without_a_process_to_check_in_pages_are_read_unchecked(monkeypatch):
    forks = []

    def no_fork():
        forks.append(1)
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(guard.os, "fork", no_fork)
    source = open_source(small_pdf("no fork", pages=2))
    assert [p.refused for p in source.pages()] == [None, None] and len(forks) == 1
    assert source.page(2).render(72).size == (595, 842)  # A4 at 72 DPI
    source.close()


def test_a_slow_page_costs_the_time_limit_once_and_leaves_no_process_behind():
    before = child_processes()
    source = open_source(form_bomb_pdf(readable_page=True), PageLimits(time_s=1.0))
    started = time.monotonic()
    assert source.page(2).refused.code == "page_timeout"
    assert source.page(1).refused is None and source.page(2).refused.code == "page_timeout"
    assert time.monotonic() - started < 20
    assert len(child_processes() - before) == 1  # the stuck child was killed; one checks page 1's window
    source.close()
    assert child_processes() - before == set()


def child_processes() -> set[int]:
    """This process's live children (zombies included: a child not waited for would show)."""
    children = set()
    for status in glob.glob("/proc/[0-9]*/status"):
        try:
            with open(status) as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if int(fields.get("PPid", "0").strip() or 0) == os.getpid():
            children.add(int(status.split("/")[2]))
    return children


# ---- last: what was indexed before all of the above answers exactly as before
def test_the_good_document_answers_exactly_as_before(service, client, good):
    assert service.query(MAIN, good["question"]).model_dump(mode="json") == good["answer"]
    assert (client.post(f"/v1/knowledge-bases/{MAIN}/query", json={"query": good["question"]}).json()
            == good["http_answer"])
    assert service.store(MAIN).count() == good["chunks"]
    doc = service.registry.document(good["document"].document_id)
    assert (doc.status, doc.chunks, doc.error) == ("ready", good["document"].chunks, None)
