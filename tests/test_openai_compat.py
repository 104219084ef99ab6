"""The OpenAI-compatible chat through the official `openai` client against the real app on a real socket:
knowledge bases as models per key, cited completions, streaming, follow-up questions."""

from __future__ import annotations

import openai
import pytest

from docground.api.auth import Keys
from docground.service import Docground
from docground.settings import Settings
from docground_testing.citation_docs import ASTRONOMY, displayed_rects, report_pdf, same_region
from docground_testing.live_server import LiveServer
from docground_testing.llm_standin import StandIn, source_number

ADMIN = "chat-admin"
NITRATE = "Nitrate levels fell by twelve percent over the study period, mostly downstream of Vienna."
QUESTION = "How much did nitrate levels fall in the Danube survey?"
EUROPA = "Europa, one of its moons, is thought to hide a salty ocean beneath its icy crust."


@pytest.fixture(scope="module")
def server(tmp_path_factory, embedder):
    settings = Settings(home=tmp_path_factory.mktemp("chat") / "home", admin_key=ADMIN, rate_limit_per_minute=0,
                        llm_model="stand-in-model")
    service = Docground(settings)
    service._embedder = embedder
    assert service.ingest("reports", "report.pdf", report_pdf()).status == "ready"
    assert service.ingest("planets", "jupiter.pdf", report_pdf(topics={"Jupiter": ASTRONOMY})).status == "ready"
    keys = Keys(service.registry)
    with LiveServer(settings, service) as live:
        yield live, service, {kb: keys.issue(kb, create=False) for kb in ("reports", "planets")}
    service.close()


def client(live, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.url + "/v1", api_key=key, max_retries=0)


def streamed(chat: openai.OpenAI, **request) -> tuple[str, list]:
    content, last = [], None
    for chunk in chat.chat.completions.create(stream=True, **request):
        content += [choice.delta.content or "" for choice in chunk.choices]
        last = chunk
    assert last.choices[0].finish_reason == "stop"
    return "".join(content), last


def test_models_are_the_knowledge_bases_the_key_may_read(server):
    live, _, keys = server
    assert [m.id for m in client(live, ADMIN).models.list()] == ["planets", "reports"]
    assert [m.id for m in client(live, keys["reports"]).models.list()] == ["reports"]
    with pytest.raises(openai.AuthenticationError):
        client(live, "dgk_wrong").models.list()


def test_a_completion_has_markers_in_content_and_citations_in_the_extra_field(server):
    live, _, keys = server
    chat = client(live, keys["reports"])
    request = {"model": "reports", "messages": [{"role": "user", "content": QUESTION}], "extra_body": {"top_k": 3}}
    completion = chat.chat.completions.create(**request)
    content = completion.choices[0].message.content
    assert completion.object == "chat.completion" and completion.model == "reports"
    assert content.startswith(NITRATE) and "[1]" in content.split("\n\nSources:")[0]
    citations = completion.citations
    first = citations[0]
    assert first["n"] == 1 and first["quote"] == NITRATE and first["filename"] == "report.pdf" and first["page"] == 1
    assert same_region(first["boxes"], displayed_rects(report_pdf(), 1, NITRATE))
    assert first["viewer_url"].startswith(f"{live.url}/viewer/documents/{first['document_id']}/pages/1?boxes=")
    assert f"[1] report.pdf, page 1: {first['viewer_url']}" in content
    assert completion.docground == {"question": QUESTION, "answer_mode": "extractive", "knowledge_base": "reports"}

    text, last = streamed(chat, **request)
    assert text == content
    assert last.citations == citations and last.docground == completion.docground


def test_another_knowledge_base_is_forbidden(server):
    live, _, keys = server
    with pytest.raises(openai.PermissionDeniedError):
        client(live, keys["reports"]).chat.completions.create(
            model="planets", messages=[{"role": "user", "content": "How large is Jupiter?"}])


def test_a_follow_up_is_made_standalone_by_the_rule(server):
    live, _, keys = server
    chat = client(live, keys["planets"])
    first = [{"role": "user", "content": "When did the Galileo probe enter the Jovian atmosphere?"}]
    answer = chat.chat.completions.create(model="planets", messages=first).choices[0].message.content
    assert "December 1995" in answer
    follow_up = first + [{"role": "assistant", "content": answer}, {"role": "user", "content": "What about its moons?"}]
    completion = chat.chat.completions.create(model="planets", messages=follow_up)
    question = completion.docground["question"]
    assert question.endswith("What about its moons?") and {"galileo", "probe", "jovian"} <= set(question.split())
    assert EUROPA in [c["quote"] for c in completion.citations]

    standalone = "How large is the Great Red Spot compared with the Earth?"
    completion = chat.chat.completions.create(model="planets", messages=follow_up + [
        {"role": "assistant", "content": completion.choices[0].message.content},
        {"role": "user", "content": standalone}])
    assert completion.docground["question"] == standalone


def test_with_an_llm_the_follow_up_is_rewritten_by_it_and_the_answer_generated(server):
    live, service, keys = server
    rewritten = "What is thought to hide beneath the icy crust of Jupiter's moon Europa?"

    def reply(request: dict) -> str:
        if request["messages"][0]["content"].startswith("Rewrite"):
            return rewritten + "\n"
        return f"Europa is thought to hide a salty ocean beneath its icy crust [{source_number(request, 'Europa')}]."

    conversation = [{"role": "user", "content": "What is the Great Red Spot?"},
                    {"role": "assistant", "content": "An anticyclonic storm larger than our planet. [1]"},
                    {"role": "user", "content": "And what might one of its moons hide?"}]
    chat = client(live, keys["planets"])
    with StandIn(reply) as model:
        service.settings.llm_endpoint = model.endpoint
        try:
            completion = chat.chat.completions.create(model="planets", messages=conversation)
            text, last = streamed(chat, model="planets", messages=conversation)
        finally:
            service.settings.llm_endpoint = None
    rewrite = model.requests[0]["messages"][1]["content"]
    assert "User: What is the Great Red Spot?" in rewrite and "Assistant: An anticyclonic storm" in rewrite
    assert "Last question: And what might one of its moons hide?" in rewrite
    assert completion.docground == {"question": rewritten, "answer_mode": "generated", "knowledge_base": "planets"}
    answered = model.requests[1]["messages"][-1]["content"]
    assert "Question: " + rewritten in answered
    content = completion.choices[0].message.content
    assert content.startswith("Europa is thought to hide a salty ocean beneath its icy crust. [1]")
    assert completion.citations[0]["quote"] == EUROPA and completion.citations[0]["page"] == 1
    assert text == content and last.citations == completion.citations
