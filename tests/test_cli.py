import json
import os
import subprocess
import sys
from pathlib import Path

from docground_testing.pdfgen import image_bytes, two_column_pdf

DOCGROUND = [sys.executable, "-m", "docground.api.cli"]


def run(args, home: Path):
    env = dict(os.environ, DOCGROUND_HOME=str(home))
    return subprocess.run(DOCGROUND + args, capture_output=True, text=True, env=env, timeout=300)


def test_ingest_folder_then_query_as_json(tmp_path):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    data, lines = two_column_pdf(pages=2, seed=11)
    (docs / "sub" / "report.pdf").write_bytes(data)
    (docs / "notes.bin").write_bytes(b"\x00\x01 not a document: skipped inside folders")
    home = tmp_path / "home"

    first = run(["ingest", str(docs), "--kb", "reports", "--json"], home)
    assert first.returncode == 0, first.stderr
    [item] = json.loads(first.stdout)
    assert set(item) == {"filename", "document_id", "pages", "chunks", "status", "error"}
    assert item["status"] == "ready" and item["pages"] == 2 and item["chunks"] > 0 and item["error"] is None

    again = run(["ingest", str(docs / "sub" / "report.pdf"), "--kb", "reports", "--json"], home)
    assert json.loads(again.stdout)[0]["document_id"] == item["document_id"]

    answer = run(["query", lines[5]["text"], "--kb", "reports", "--top-k", "2", "--json"], home)
    assert answer.returncode == 0, answer.stderr
    body = json.loads(answer.stdout)
    assert set(body) >= {"query", "answer", "citations", "chunks"}
    assert len(body["chunks"]) == 2
    citation = body["citations"][0]
    assert {"n", "document_id", "filename", "page", "boxes", "boxes_pt", "page_size_pt", "quote", "chunk_id",
            "score"} <= set(citation)
    assert citation["filename"] == "report.pdf" and citation["page"] == 1


def test_failed_files_are_named_and_the_exit_code_says_so(tmp_path):
    good = tmp_path / "scan.png"
    good.write_bytes(image_bytes("PNG"))
    bad = tmp_path / "fake.pdf"
    bad.write_bytes(b"PK\x03\x04 this is a zip, not a pdf")
    result = run(["ingest", str(good), str(bad), str(tmp_path / "missing.pdf"), "--kb", "x", "--json"], tmp_path / "h")
    assert result.returncode == 1
    by_name = {Path(r["filename"]).name: r for r in json.loads(result.stdout)}
    assert by_name["fake.pdf"]["status"] == "failed" and "zip" in by_name["fake.pdf"]["error"]
    assert by_name["missing.pdf"]["status"] == "failed"
    assert by_name["scan.png"]["status"] == "ready"


def test_query_of_a_missing_knowledge_base_fails_clearly(tmp_path):
    result = run(["query", "anything", "--kb", "nothing-here"], tmp_path / "h")
    assert result.returncode == 2
    assert "does not exist" in result.stderr
