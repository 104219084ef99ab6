"""The crash matrix (#15) for the API process: `docground serve` (the default topology: the embedded store and the
jobs in the server's own process, default timeouts) killed with SIGKILL mid-upload, while another document is being
ingested, and mid-answer-stream, then started again on the same home. Nothing stored is lost or half-written,
every document's chunks equal a clean in-process run's, and the interrupted upload, repeated, gives one document.
Killed mid index write, the restarted server answers nothing from the half it wrote before the document is ready."""

from __future__ import annotations

import random

import pymupdf
import pytest

from docground.ingest.pipeline import document_id, file_sha256
from docground.service import Docground
from docground.settings import Settings
from docground_testing.cluster import long_pdf, stored_chunks, wait_until
from docground_testing.llm_standin import Answer, OcrStandIn
from docground_testing.serve_process import HalfSentUpload, ServeProcess

# Only what is not a timeout differs from the defaults: the CPU engines, one embedding thread on the 2-core machine.
FIELDS = {"ocr_backend": "cpu", "embedding_threads": 1}
SERVE = {**FIELDS, "rate_limit_per_minute": 0}
UPLOAD = "/v1/knowledge-bases/kb/documents"
READY_WITHIN_S = 240
BIG_MB = 24  # far more than loopback's socket buffers hold: half sent means the server is mid-body


def big_pdf(seed: int) -> bytes:
    """A few pages of text carrying a large incompressible attachment: a large upload of a small document."""
    doc = pymupdf.open(stream=long_pdf(6, seed=seed))
    doc.embfile_add("noise.bin", random.Random(seed).randbytes(BIG_MB << 20))
    return doc.tobytes()


@pytest.fixture(scope="module")
def documents() -> dict[str, bytes]:
    return {"a.pdf": long_pdf(5, seed=41), "c.pdf": long_pdf(24, seed=42), "big.pdf": big_pdf(43)}


@pytest.fixture(scope="module")
def clean(tmp_path_factory, embedder, documents) -> dict[str, list]:
    """Each document ingested in one process, no server: the reference, by document id."""
    service = Docground(Settings(home=tmp_path_factory.mktemp("clean") / "home", **FIELDS))
    service._embedder = embedder
    try:
        out = {}
        for name, data in documents.items():
            result = service.ingest("kb", name, data)
            assert result.status == "ready", result.error
            out[result.document_id] = stored_chunks(service.store("kb"), result.document_id)
            assert out[result.document_id]
        return out
    finally:
        service.close()


def doc_id(data: bytes) -> str:
    return document_id("kb", file_sha256(data))


def upload(http, name: str, data: bytes) -> str:
    response = http.post(UPLOAD, files={"file": (name, data, "application/pdf")})
    assert response.status_code == 202, response.text
    return response.json()["document_id"]


def status(http, document: str) -> dict:
    return http.get(f"/v1/documents/{document}").json()


def wait_ready(http, document: str) -> dict:
    done = wait_until(lambda: (s := status(http, document))["status"] in ("ready", "failed") and s, READY_WITHIN_S,
                      f"document {document} to be ready", 0.2)
    assert done["status"] == "ready", done
    return done


def listing(http) -> dict[str, dict]:
    return {d["document_id"]: d for d in http.get(UPLOAD).json()["documents"]}


def assert_store_is_clean_runs(settings: Settings, embedder, clean: dict[str, list], ids: list[str]) -> None:
    """Read once the server has stopped (an embedded store admits one process): each document's chunks, as the
    store holds them, equal a clean run's; no partial file is left in the home."""
    service = Docground(settings)
    service._embedder = embedder
    try:
        assert {d.id for d in service.registry.documents("kb")} == set(ids)
        for i in ids:
            assert stored_chunks(service.store("kb"), i) == clean[i]
            assert service.registry.document(i).chunks == len(clean[i]) == service.store("kb").count(i)
    finally:
        service.close()
    assert not [p for p in settings.home.rglob("*") if p.name.endswith(".part")]


def test_the_api_killed_mid_upload_loses_nothing_and_the_upload_sent_again_gives_one_document(
        tmp_path, embedder, documents, clean):
    fields = {**SERVE, "home": tmp_path / "home"}
    a, c, big = (documents[n] for n in ("a.pdf", "c.pdf", "big.pdf"))
    home = fields["home"]
    # The harness holds every index write until released (docground_testing/serve_harness.py): a's at once, c's
    # never, so that c is still being ingested when the server dies.
    (home / "release").mkdir(parents=True)
    (home / "release" / doc_id(a)).touch()
    server = ServeProcess(fields, tmp_path, env={"DOCGROUND_TEST_WRITE_HOLD": "1"}).start(harness=True)
    try:
        with server.client() as http:
            assert upload(http, "a.pdf", a) == doc_id(a)
            before = wait_ready(http, doc_id(a))
            assert upload(http, "c.pdf", c) == doc_id(c)
            wait_until(lambda: (home / "holding" / doc_id(c)).exists(), READY_WITHIN_S, "c's index write")
            cut = HalfSentUpload(server.url, UPLOAD, "big.pdf", big, sent=len(big) // 2)
            server.kill()
            cut.close()
        server.start()  # `docground serve` itself, nothing held
        with server.client() as http:
            assert status(http, doc_id(a)) == before
            wait_ready(http, doc_id(c))  # resumed by the restarted server, from the pages it had
            assert set(listing(http)) == {doc_id(a), doc_id(c)}  # the upload cut short left no document
            assert upload(http, "big.pdf", big) == doc_id(big)
            assert upload(http, "big.pdf", big) == doc_id(big)  # sent again: the same document, no new work
            wait_ready(http, doc_id(big))
            assert set(listing(http)) == {doc_id(a), doc_id(c), doc_id(big)}
            assert status(http, doc_id(a)) == before
        server.stop()
    finally:
        server.kill()
    assert_store_is_clean_runs(Settings(**fields), embedder, clean, [doc_id(a), doc_id(c), doc_id(big)])


def question(data: bytes) -> str:
    """A line of the document's third page, word for word: a question its text answers."""
    with pymupdf.open(stream=data) as doc:
        return doc[2].get_text().splitlines()[3]


def test_the_api_killed_mid_answer_stream_loses_nothing(tmp_path, embedder, documents, clean):
    a, big = documents["a.pdf"], documents["big.pdf"]
    query = {"query": question(a), "mode": "extractive"}
    with OcrStandIn(Answer("The page says so [1]."), hold_after=3, wait_s=120) as llm:
        fields = {**SERVE, "home": tmp_path / "home", "llm_endpoint": llm.endpoint, "llm_model": "stand-in"}
        server = ServeProcess(fields, tmp_path).start()
        try:
            with server.client() as http:
                for name, data in (("a.pdf", a), ("big.pdf", big)):
                    upload(http, name, data)
                    wait_ready(http, doc_id(data))
                before = listing(http), http.post("/v1/knowledge-bases/kb/query", json=query).json()
                with http.stream("POST", "/v1/knowledge-bases/kb/query",
                                 json={"query": query["query"], "mode": "generate", "stream": True}) as answer:
                    events = answer.iter_lines()
                    assert answer.status_code == 200
                    wait_until(lambda: next(events).startswith("event: delta"), 60, "the answer's first words")
                    server.kill()  # the model is still writing (the stand-in holds the rest back)
            llm.release.set()
            wait_until(lambda: llm.held_until_released, 30, "the held stream to be let go")  # killed mid-stream
            server.start()
            with server.client() as http:
                assert (listing(http), http.post("/v1/knowledge-bases/kb/query", json=query).json()) == before
                streamed = http.post("/v1/knowledge-bases/kb/query",
                                     json={"query": query["query"], "mode": "generate", "stream": True}).text
                assert "event: done" in streamed and "event: error" not in streamed
            server.stop()
        finally:
            server.kill()
    assert_store_is_clean_runs(Settings(**fields), embedder, clean, [doc_id(a), doc_id(big)])


def answered_from(http, text: str) -> set[str]:
    """The documents whose chunks an extractive answer to `text` draws on (as many chunks as a query may ask)."""
    response = http.post("/v1/knowledge-bases/kb/query", json={"query": text, "mode": "extractive", "top_k": 50})
    assert response.status_code == 200, response.text
    return {chunk["document_id"] for chunk in response.json()["chunks"]}


def test_the_api_killed_mid_index_write_answers_nothing_from_the_half_written_document(
        tmp_path, embedder, documents, clean):
    """`docground serve` killed while it writes a document's chunks into its embedded store, half of them written
    and flushed (docground_testing/serve_harness.py): started again, it answers no question from that half while
    the document is not ready (held before its write), and once ready, with a clean run's chunks."""
    a, c = documents["a.pdf"], documents["c.pdf"]
    fields = {**SERVE, "home": tmp_path / "home"}
    home = fields["home"]
    server = ServeProcess(fields, tmp_path).start()
    try:
        with server.client() as http:
            upload(http, "a.pdf", a)
            before = wait_ready(http, doc_id(a)), answered_from(http, question(a))
        server.stop()
        server.env["DOCGROUND_TEST_UPSERT_PAUSE_S"] = "600"
        server.start(harness=True)
        with server.client() as http:
            upload(http, "c.pdf", c)
            wait_until(lambda: (home / "upserting" / doc_id(c)).exists(), READY_WITHIN_S, "half of c's chunks written")
            assert doc_id(c) in answered_from(http, question(c))  # the half is in the store, and answers
        server.kill()
        del server.env["DOCGROUND_TEST_UPSERT_PAUSE_S"]
        server.env["DOCGROUND_TEST_WRITE_HOLD"] = "1"
        server.start(harness=True)
        wait_until(lambda: (home / "holding" / doc_id(c)).exists(), READY_WITHIN_S, "c's write, resumed, to hold")
        with server.client() as http:
            assert status(http, doc_id(c))["status"] != "ready"
            assert doc_id(c) not in answered_from(http, question(c))
            assert (status(http, doc_id(a)), answered_from(http, question(a))) == before
            (home / "release").mkdir()
            (home / "release" / doc_id(c)).touch()
            wait_ready(http, doc_id(c))
            assert doc_id(c) in answered_from(http, question(c))
        server.stop()
    finally:
        server.kill()
    assert_store_is_clean_runs(Settings(**fields), embedder, clean, [doc_id(a), doc_id(c)])
