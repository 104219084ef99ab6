"""LlamaIndex retriever and query engine over a knowledge base, in process and through the HTTP client."""

from __future__ import annotations

import asyncio

import pytest
from llama_index.core.schema import MetadataMode

from docground.api.client import DocgroundClient
from docground.retrieval.llamaindex import DocgroundQueryEngine, DocgroundRetriever
from docground.service import Docground
from docground.settings import Settings
from docground_testing.citation_docs import displayed_rects, report_pdf, same_region
from docground_testing.live_server import LiveServer

NITRATE = "Nitrate levels fell by twelve percent over the study period, mostly downstream of Vienna."
QUESTION = "How much did nitrate levels fall in the Danube survey?"


@pytest.fixture(scope="module")
def kb(tmp_path_factory, embedder):
    settings = Settings(home=tmp_path_factory.mktemp("llamaindex") / "home")
    service = Docground(settings)
    service._embedder = embedder
    pdf = report_pdf()
    assert service.ingest("reports", "report.pdf", pdf).status == "ready"
    yield service, pdf
    service.close()


def test_retriever_returns_chunks_with_spans_kept_out_of_the_llm_text(kb):
    service, _ = kb
    nodes = DocgroundRetriever(service, "reports", top_k=2).retrieve(QUESTION)
    assert len(nodes) == 2 and NITRATE in nodes[0].node.get_content()
    meta = nodes[0].node.metadata
    assert meta["filename"] == "report.pdf" and meta["pages"] == [1]
    spans = meta["spans"]
    assert spans and all(len(s["bbox"]) == 4 and 0 <= s["bbox"][0] < s["bbox"][2] <= 1 for s in spans)
    text = nodes[0].node.get_content()
    assert any(text[s["char_start"]:s["char_end"]] == "Rivers of Europe" for s in spans)
    llm_view = nodes[0].node.get_content(metadata_mode=MetadataMode.LLM)
    assert "report.pdf" in llm_view and "bbox" not in llm_view
    assert nodes[0].score >= nodes[1].score


def test_query_engine_sources_are_verified_citations_with_boxes(kb):
    service, pdf = kb
    response = DocgroundQueryEngine(service, "reports", mode="extractive").query(QUESTION)
    assert NITRATE in str(response.response) and response.metadata["answer_mode"] == "extractive"
    source = next(s for s in response.source_nodes if s.node.get_content() == NITRATE)
    meta = source.node.metadata
    assert meta["page"] == 1 and meta["filename"] == "report.pdf" and meta["page_size_pt"] == [595.0, 842.0]
    assert same_region(meta["boxes"], displayed_rects(pdf, 1, NITRATE))
    assert f"[{meta['n']}]" in response.response
    nothing = DocgroundQueryEngine(service, "reports", mode="extractive").query("Who painted the Sistine Chapel?")
    assert nothing.response is None and nothing.source_nodes == []


def test_async_and_over_http(kb):
    service, _ = kb
    with LiveServer(service.settings, service) as live, DocgroundClient(live.url) as client:
        nodes = asyncio.run(DocgroundRetriever(client, "reports", top_k=3).aretrieve(QUESTION))
        answer = asyncio.run(DocgroundQueryEngine(client, "reports", mode="extractive").aquery(QUESTION))
    assert NITRATE in nodes[0].node.get_content() and nodes[0].node.metadata["spans"]
    assert NITRATE in [s.node.get_content() for s in answer.source_nodes]
