"""Generated answers: a local OpenAI-compatible stand-in plays the model; docground's grounding is real."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from docground.api.app import create_app
from docground.errors import LLMNotConfigured, LLMUnavailable
from docground.service import Docground
from docground.settings import Settings
from docground_testing.citation_docs import displayed_rects, report_pdf, same_region
from docground_testing.live_server import Borrowed
from docground_testing.llm_standin import StandIn, source_number

NITRATE = "Nitrate levels fell by twelve percent over the study period, mostly downstream of Vienna."
FROST = "The market price of arabica rose sharply in 2021 after a severe frost damaged plantations in Minas Gerais."
QUESTION = "How much did nitrate levels fall in the Danube survey?"


@pytest.fixture(scope="module")
def kb(tmp_path_factory, embedder):
    svc = Docground(Settings(home=tmp_path_factory.mktemp("gen") / "home", llm_model="stand-in-model"))
    svc._embedder = embedder
    pdf = report_pdf()
    assert svc.ingest("reports", "report.pdf", pdf).status == "ready"
    yield svc, pdf
    svc.close()


def ask(svc, reply, question=QUESTION, **llm):
    with StandIn(reply) as model:
        svc.settings.llm_endpoint = model.endpoint
        for name, value in llm.items():
            setattr(svc.settings, name, value)
        try:
            return svc.query("reports", question, top_k=3), model.requests
        finally:
            svc.settings.llm_endpoint = None


def test_correct_markers_give_verified_quotes_with_line_boxes(kb):
    svc, pdf = kb
    response, requests = ask(svc, lambda r: f"Nitrate levels fell by twelve percent [{source_number(r, 'Nitrate')}].")
    assert response.answer_mode == "generated"
    assert response.answer == "Nitrate levels fell by twelve percent. [1]"
    (citation,) = response.citations
    assert citation.n == 1 and citation.quote == NITRATE
    assert same_region(citation.boxes, displayed_rects(pdf, citation.page, NITRATE))
    sent = requests[0]
    assert sent["path"] == "/v1/chat/completions" and sent["model"] == "stand-in-model"
    assert "Question: " + QUESTION in sent["messages"][-1]["content"]


def test_a_marker_pointing_at_the_wrong_source_is_repaired(kb):
    svc, _ = kb
    response, _ = ask(svc, lambda r: f"Nitrate levels fell by twelve percent [{source_number(r, 'arabica')}].")
    (citation,) = response.citations
    assert citation.quote == NITRATE and response.answer.endswith("[1]")


def test_missing_and_malformed_markers_are_inserted_and_normalised(kb):
    svc, _ = kb
    response, _ = ask(svc, lambda r: (
        "Nitrate levels fell by twelve percent over the study period.\n"
        f"The survey used forty monitoring stations between 2001 and 2004 【{source_number(r, 'forty')}】\n"
        f"Spring floods come from snowmelt in the Alps [Source {source_number(r, 'snowmelt')}, 9]"))
    quotes = [c.quote for c in response.citations]
    assert quotes[0] == NITRATE
    assert any(q.startswith("The survey measured nitrate concentrations at forty") for q in quotes)
    assert any("snowmelt" in q for q in quotes)
    assert "【" not in response.answer and "Source" not in response.answer and "[9]" not in response.answer
    assert [line[-3:] for line in response.answer.split("\n")] == ["[1]", "[2]", "[3]"]


def test_a_sentence_no_source_supports_keeps_no_citation(kb):
    svc, _ = kb
    response, _ = ask(svc, lambda r: (
        f"Nitrate levels fell by twelve percent [{source_number(r, 'Nitrate')}]. "
        f"The Danube is home to more than three hundred species of freshwater fish [{source_number(r, 'Nitrate')}]. "
        f"Nitrate levels fell by forty percent in Budapest [{source_number(r, 'Nitrate')}]."))
    assert response.answer == ("Nitrate levels fell by twelve percent. [1] The Danube is home to more than three "
                               "hundred species of freshwater fish. Nitrate levels fell by forty percent in Budapest.")
    assert [c.quote for c in response.citations] == [NITRATE]


def test_two_sources_in_one_answer(kb):
    svc, pdf = kb
    response, _ = ask(svc, lambda r: (
        f"Nitrate levels fell by twelve percent [{source_number(r, 'Nitrate')}]. "
        f"Frost in Minas Gerais pushed arabica prices up sharply in 2021 [{source_number(r, 'arabica')}]."),
        question="What happened to nitrate levels and to the arabica coffee price?")
    assert [c.quote for c in response.citations] == [NITRATE, FROST]
    frost = response.citations[1]
    assert frost.page == 2 and same_region(frost.boxes, displayed_rects(pdf, 2, FROST))


def test_the_model_saying_not_found_gives_a_null_answer(kb):
    svc, _ = kb
    response, _ = ask(svc, lambda r: "NOT_FOUND")
    assert response.answer is None and response.citations == [] and response.answer_mode == "not_found"


def test_nothing_relevant_retrieved_means_the_model_is_not_asked(kb):
    svc, _ = kb
    response, requests = ask(svc, lambda r: "Michelangelo [1].", question="Who painted the Sistine Chapel ceiling?")
    assert requests == [] and response.answer is None and response.answer_mode == "not_found"


def test_streaming_yields_the_model_text_then_the_grounded_answer(kb):
    svc, _ = kb
    with StandIn(lambda r: f"Nitrate levels fell by twelve percent [{source_number(r, 'arabica')}].") as model:
        svc.settings.llm_endpoint = model.endpoint
        try:
            events = list(svc.query_stream("reports", QUESTION, top_k=3))
        finally:
            svc.settings.llm_endpoint = None
    deltas = [data["text"] for name, data in events if name == "delta"]
    assert len(deltas) > 3 and "".join(deltas).startswith("Nitrate levels fell by twelve percent [")
    name, done = events[-1]
    assert name == "done" and done["answer"] == "Nitrate levels fell by twelve percent. [1]"
    assert done["citations"][0]["quote"] == NITRATE


def test_the_endpoint_failing_is_a_clear_error(kb):
    svc, _ = kb
    with StandIn(lambda r: "", status=503) as model:
        svc.settings.llm_endpoint = model.endpoint
        try:
            with pytest.raises(LLMUnavailable, match="HTTP 503"):
                svc.query("reports", QUESTION)
        finally:
            svc.settings.llm_endpoint = None


def test_generation_without_an_endpoint_is_refused(kb):
    svc, _ = kb
    with pytest.raises(LLMNotConfigured):
        svc.query("reports", QUESTION, mode="generate")
    assert svc.query("reports", QUESTION).answer_mode == "extractive"  # auto without an endpoint


def test_api_key_for_the_endpoint_is_sent(kb):
    svc, _ = kb
    _, requests = ask(svc, lambda r: "Nitrate levels fell by twelve percent [1].", llm_api_key="sk-local")
    svc.settings.llm_api_key = None
    assert requests[0]["authorization"] == "Bearer sk-local"


def test_http_streaming_is_server_sent_events(kb):
    svc, _ = kb
    with StandIn(lambda r: f"Nitrate levels fell by twelve percent [{source_number(r, 'Nitrate')}].") as model:
        svc.settings.llm_endpoint = model.endpoint
        try:
            with TestClient(create_app(svc.settings, Borrowed(svc))) as client:
                r = client.post("/v1/knowledge-bases/reports/query", json={"query": QUESTION, "stream": True})
                failed = client.post("/v1/knowledge-bases/nope/query", json={"query": QUESTION, "stream": True})
        finally:
            svc.settings.llm_endpoint = None
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [(b.split("\n")[0][7:], json.loads(b.split("\n")[1][6:])) for b in r.text.strip().split("\n\n")]
    assert {name for name, _ in events[:-1]} == {"delta"}
    assert events[-1][0] == "done" and events[-1][1]["citations"][0]["quote"] == NITRATE
    assert failed.status_code == 404 and failed.json()["code"] == "not_found"


def test_a_model_failing_mid_stream_ends_the_stream_with_an_error_event(kb):
    svc, _ = kb
    with StandIn(lambda r: "", status=500) as model:
        svc.settings.llm_endpoint = model.endpoint
        try:
            with TestClient(create_app(svc.settings, Borrowed(svc))) as client:
                r = client.post("/v1/knowledge-bases/reports/query", json={"query": QUESTION, "stream": True})
        finally:
            svc.settings.llm_endpoint = None
    assert r.status_code == 200
    name, data = r.text.strip().split("\n")[:2]
    assert name == "event: error" and json.loads(data[6:])["code"] == "llm_unavailable"
