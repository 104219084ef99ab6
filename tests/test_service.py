import pytest

from docground.errors import NotFound
from docground_testing.citecheck import quote_under_boxes
from docground_testing.pdfgen import two_column_pdf


def test_ingest_then_query_cites_the_lines_the_quote_comes_from(service):
    data, lines = two_column_pdf(pages=2, seed=3)
    result = service.ingest("kb1", "paper.pdf", data)
    assert result.status == "ready" and result.pages == 2 and result.chunks > 0
    target = lines[30]["text"]
    response = service.query("kb1", target, top_k=3)
    assert response.answer and response.citations
    assert any(target in c.quote or c.quote in target for c in response.citations)
    for c in response.citations:
        assert quote_under_boxes(data, c), c
        assert len(c.boxes) <= c.quote.count(" ") + 1  # line boxes, not a whole chunk
        assert c.page_size_pt == (595.0, 842.0)
        for box, box_pt in zip(c.boxes, c.boxes_pt):
            assert box_pt[0] == pytest.approx(box[0] * 595.0, abs=0.01)
            assert box_pt[3] == pytest.approx(box[3] * 842.0, abs=0.01)


def test_reingesting_changes_nothing(service):
    data, _ = two_column_pdf(pages=2, seed=4)
    first = service.ingest("kb1", "a.pdf", data)
    count = service.store("kb1").count()
    again = service.ingest("kb1", "a-copy.pdf", data)
    assert again.document_id == first.document_id and again.chunks == first.chunks
    assert service.store("kb1").count() == count


def test_a_new_pipeline_replaces_a_documents_chunks_without_duplicates(service):
    data, _ = two_column_pdf(pages=2, seed=5)
    first = service.ingest("kb1", "a.pdf", data)
    service.settings.chunk_tokens = 60  # a different chunker: a different pipeline fingerprint
    service._pipeline = None
    second = service.ingest("kb1", "a.pdf", data)
    assert second.chunks > first.chunks
    assert service.store("kb1").count() == second.chunks


def test_a_bad_file_fails_clearly_and_leaves_the_knowledge_base_as_it_was(service):
    data, lines = two_column_pdf(seed=6)
    service.ingest("kb1", "good.pdf", data)
    before = service.query("kb1", lines[3]["text"]).model_dump()
    bad = service.ingest("kb1", "bad.pdf", b"%PDF-1.7\n garbage that is not a pdf")
    assert bad.status == "failed" and bad.error and bad.error_code == "corrupt_file"
    assert service.query("kb1", lines[3]["text"]).model_dump() == before


def test_unknown_knowledge_base_is_not_found(service):
    with pytest.raises(NotFound):
        service.query("nope", "anything")


def test_a_qdrant_server_url_uses_the_client_path(settings, embedder):
    from docground.retrieval.store import ServerStore
    from docground.service import Docground

    settings.qdrant_url = ":memory:"  # qdrant-client's local mode speaks the server's API
    svc = Docground(settings)
    svc._embedder = embedder
    data, lines = two_column_pdf(seed=8)
    assert svc.ingest("kb1", "a.pdf", data).status == "ready"
    assert isinstance(svc.store("kb1"), ServerStore)
    response = svc.query("kb1", lines[2]["text"])
    assert response.citations and all(quote_under_boxes(data, c) for c in response.citations)
    svc.close()
