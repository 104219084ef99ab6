"""Backup and migration: a snapshot restored into a fresh home, or a knowledge base moved onto a Qdrant
server, answers every question as the original did, with the same documents, chunks and line boxes."""

import io
import json
import tarfile

import pytest
from typer.testing import CliRunner

from docground.errors import AlreadyExists, InvalidSnapshot, SnapshotMismatch
from docground.retrieval.store import EdgeStore, ServerStore
from docground.settings import Settings
from docground.snapshots import create_snapshot, migrate_to_server, on_server, restore_snapshot
from docground_testing.citecheck import quote_under_boxes
from docground_testing.pdfgen import two_column_pdf

KB = "papers"


@pytest.fixture
def open_home(tmp_path, embedder):
    """Opens a service on a new home under tmp_path (the session's embedder), closed at the end."""
    from docground.service import Docground

    opened = []

    def open_home(name: str, **settings) -> Docground:
        svc = Docground(Settings(home=tmp_path / name, **settings))
        svc._embedder = embedder
        opened.append(svc)
        return svc

    yield open_home
    for svc in opened:
        svc.close()


@pytest.fixture
def papers(service):
    """Two small PDFs ingested into KB; the questions quote lines of both."""
    questions, files = [], {}
    for seed in (41, 42):
        data, lines = two_column_pdf(pages=2, seed=seed)
        result = service.ingest(KB, f"paper-{seed}.pdf", data)
        assert result.status == "ready"
        files[result.document_id] = data
        questions += [lines[3]["text"], lines[30]["text"], " ".join(lines[12]["text"].split()[:5])]
    return {"files": files, "questions": questions}


def answers(svc, questions: list[str]) -> list[dict]:
    """What a reader sees of each answer: its text, citations (document, page, quote, boxes) and chunks."""
    found = []
    for q in questions:
        r = svc.query(KB, q, top_k=5)
        found.append({"answer": r.answer,
                      "citations": [(c.document_id, c.page, c.quote, c.boxes, c.chunk_id) for c in r.citations],
                      "chunks": [(c.chunk_id, c.document_id, c.text) for c in r.chunks]})
    return found


def chunk_texts(svc) -> dict[str, list[str]]:
    return {d.id: [c.text for c in svc.document_chunks(d.id)] for d in svc.registry.documents(KB)}


def test_a_restored_snapshot_has_the_same_documents_and_answers(service, papers, open_home, tmp_path):
    snapshot = tmp_path / "papers.tar.gz"
    manifest = create_snapshot(service, KB, snapshot)
    assert manifest.documents == 2 and not snapshot.with_name("papers.tar.gz.part").exists()

    restored = open_home("restored")
    assert restore_snapshot(restored, snapshot).kb == KB
    assert [d.id for d in restored.registry.documents(KB)] == [d.id for d in service.registry.documents(KB)]
    assert all(d.status == "ready" for d in restored.registry.documents(KB))
    assert restored.store(KB).count() == service.store(KB).count() > 0
    assert chunk_texts(restored) == chunk_texts(service)
    expected = answers(service, papers["questions"])
    assert all(a["citations"] for a in expected)
    assert answers(restored, papers["questions"]) == expected
    # The originals came along: quotes are read from them and lie under their boxes.
    for question in papers["questions"]:
        citations = restored.query(KB, question).citations
        assert citations and all(quote_under_boxes(papers["files"][c.document_id], c) for c in citations)


def test_a_snapshot_made_on_a_qdrant_server_restores_into_an_embedded_store(service, papers, open_home, tmp_path):
    server = on_server(service, ":memory:")  # qdrant-client's local mode speaks the server's API
    migrate_to_server(service, server, KB)
    snapshot = tmp_path / "from-server.tar.gz"
    create_snapshot(server, KB, snapshot)
    server.close()

    restored = open_home("restored")
    restore_snapshot(restored, snapshot)
    assert isinstance(restored.store(KB), EdgeStore)
    assert answers(restored, papers["questions"]) == answers(service, papers["questions"])


def test_restore_refuses_a_knowledge_base_the_home_has(service, papers, tmp_path):
    snapshot = tmp_path / "papers.tar.gz"
    create_snapshot(service, KB, snapshot)
    before = service.store(KB).count()
    with pytest.raises(AlreadyExists, match="already exists"):
        restore_snapshot(service, snapshot)
    assert service.store(KB).count() == before


def test_restore_refuses_files_that_are_not_snapshots(service, open_home, tmp_path):
    target = open_home("target")
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(two_column_pdf(seed=43)[0])
    other_tar = tmp_path / "other.tar.gz"
    with tarfile.open(other_tar, "w:gz") as tar:
        tar.add(pdf, arcname="paper.pdf")
    for path in (pdf, other_tar, tmp_path / "missing.tar.gz"):
        with pytest.raises(InvalidSnapshot, match="not a docground snapshot"):
            restore_snapshot(target, path)
    assert target.registry.get_kb(KB) is None


def test_restore_refuses_a_snapshot_of_another_embedding_model_or_pipeline(service, papers, open_home, tmp_path):
    snapshot = tmp_path / "papers.tar.gz"
    create_snapshot(service, KB, snapshot)

    other_chunker = open_home("chunked-otherwise", chunk_tokens=60)
    with pytest.raises(SnapshotMismatch, match="pipeline"):
        restore_snapshot(other_chunker, snapshot)

    # A snapshot a home with another model wrote: only its manifest tells, and the restore reads it.
    other_model = tmp_path / "other-model.tar.gz"
    with tarfile.open(snapshot) as src, tarfile.open(other_model, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None
            if member.name == "manifest.json":
                data = json.dumps(dict(json.loads(data), embedding_model="intfloat/multilingual-e5-small")).encode()
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    fresh = open_home("fresh")
    with pytest.raises(SnapshotMismatch, match="multilingual-e5-small"):
        restore_snapshot(fresh, other_model)
    assert fresh.registry.get_kb(KB) is None and fresh.store(KB).count() == 0


def test_migrating_to_a_qdrant_server_keeps_every_answer(service, papers):
    expected = answers(service, papers["questions"])
    server = on_server(service, ":memory:")
    try:
        moved = migrate_to_server(service, server, KB)
        assert isinstance(server.store(KB), ServerStore)
        assert moved.points == service.store(KB).count() and moved.collection == "docground_papers"
        assert answers(server, papers["questions"]) == expected
        assert chunk_texts(server) == chunk_texts(service)
        with pytest.raises(AlreadyExists, match="already holds"):
            migrate_to_server(service, server, KB)
    finally:
        server.close()


def test_the_cli_writes_and_restores_snapshots_and_says_why_it_refuses(service, papers, tmp_path):
    from docground.api.cli import app

    home, fresh, snapshot = str(service.settings.home), str(tmp_path / "fresh"), str(tmp_path / "kb.tar.gz")
    expected = answers(service, papers["questions"][:2])
    service.close()  # the embedded store admits one holder
    cli = CliRunner()

    created = cli.invoke(app, ["snapshot", "create", KB, snapshot, "--home", home])
    assert created.exit_code == 0, created.output
    restored = cli.invoke(app, ["snapshot", "restore", snapshot, "--home", fresh])
    assert restored.exit_code == 0 and "2 document(s) restored" in restored.output, restored.output
    again = cli.invoke(app, ["snapshot", "restore", snapshot, "--home", fresh])
    assert again.exit_code == 2 and "already exists" in again.output
    moved = cli.invoke(app, ["migrate", KB, "--to-qdrant", ":memory:", "--home", fresh])
    assert moved.exit_code == 0 and "chunk(s)" in moved.output, moved.output

    from docground.service import Docground

    reopened = Docground(Settings(home=fresh))
    reopened._embedder = service.embedder
    try:
        assert answers(reopened, papers["questions"][:2]) == expected
    finally:
        reopened.close()
