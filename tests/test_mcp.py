"""The MCP server through the official SDK's own client: `docground mcp` over stdio (a real subprocess on a
real data directory), and /mcp of the real app over streamable HTTP with the REST keys."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from docground.api.auth import Keys
from docground.api.routes.viewer import parse_boxes
from docground.service import Docground
from docground.settings import Settings
from docground_testing.citation_docs import ASTRONOMY, displayed_rects, report_pdf, same_region
from docground_testing.live_server import LiveServer

NITRATE = "Nitrate levels fell by twelve percent over the study period, mostly downstream of Vienna."
QUESTION = "How much did nitrate levels fall in the Danube survey?"
ADMIN = "mcp-admin"
TOOLS = {"list_knowledge_bases", "search", "answer", "get_document"}


def structured(result) -> dict:
    assert not result.is_error, result.content
    return result.structured_content


def error_text(result) -> str:
    assert result.is_error
    return " ".join(block.text for block in result.content)


def link_boxes(url: str) -> list[tuple[float, float, float, float]]:
    return parse_boxes(parse_qs(urlparse(url).query)["boxes"][0])


# ---- stdio: `docground mcp` started by the client, as Claude Desktop or an IDE starts it
@pytest.fixture(scope="module")
def home(tmp_path_factory, embedder):
    home = tmp_path_factory.mktemp("mcp-stdio") / "home"
    svc = Docground(Settings(home=home))
    svc._embedder = embedder
    assert svc.ingest("reports", "report.pdf", report_pdf()).status == "ready"
    svc.close()  # the embedded store admits one process: the server's
    return home


def docground_command() -> tuple[str, list[str]]:
    script = Path(sys.executable).with_name("docground")
    return (str(script), []) if script.exists() else (sys.executable, ["-m", "docground.api.cli"])


def test_stdio_server_answers_with_cited_boxes_and_viewer_links(home):
    command, prefix = docground_command()
    params = StdioServerParameters(command=command, args=[*prefix, "mcp", "--home", str(home)],
                                   env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    pdf = report_pdf()

    async def session():
        async with Client(params, read_timeout_seconds=240) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            listed = structured(await client.call_tool("list_knowledge_bases", {}))
            answer = structured(await client.call_tool("answer", {"kb": "reports", "question": QUESTION,
                                                                  "top_k": 3, "mode": "extractive"}))
            hits = structured(await client.call_tool("search", {"kb": "reports", "query": "arabica frost price"}))
            doc_id = answer["citations"][0]["document_id"]
            markdown = await client.call_tool("get_document", {"document_id": doc_id})
            missing = await client.call_tool("answer", {"kb": "nowhere", "question": QUESTION})
            return tools, listed, answer, hits, markdown, missing

    tools, listed, answer, hits, markdown, missing = anyio.run(session)
    assert tools == TOOLS
    assert listed == {"knowledge_bases": [{"name": "reports", "documents": 1}]}

    assert answer["answer_mode"] == "extractive" and "[1]" in answer["answer"]
    first = answer["citations"][0]
    assert first["n"] == 1 and first["quote"] == NITRATE and first["filename"] == "report.pdf" and first["page"] == 1
    assert same_region(first["boxes"], displayed_rects(pdf, 1, NITRATE))
    url = first["viewer_url"]
    assert url.startswith(f"http://127.0.0.1:8000/viewer/documents/{first['document_id']}/pages/1?boxes=")
    assert same_region(link_boxes(url), first["boxes"], tolerance=1e-4)

    top = hits["hits"][0]
    assert top["filename"] == "report.pdf" and "arabica" in top["text"]
    assert [p["page"] for p in top["pages"]] == [2]
    assert "/pages/2?boxes=" in top["pages"][0]["viewer_url"]

    text = markdown.content[0].text
    assert not markdown.is_error and "<!-- page 2 -->" in text and "Arabica coffee grows best" in text
    assert "not_found" in error_text(missing) and "nowhere" in error_text(missing)


# ---- streamable HTTP: /mcp of `docground serve`, keys on
@pytest.fixture(scope="module")
def server(tmp_path_factory, embedder):
    settings = Settings(home=tmp_path_factory.mktemp("mcp-http") / "home", admin_key=ADMIN, rate_limit_per_minute=0)
    service = Docground(settings)
    service._embedder = embedder
    reports = service.ingest("reports", "report.pdf", report_pdf())
    planets = service.ingest("planets", "jupiter.pdf", report_pdf(topics={"The planet Jupiter": ASTRONOMY}))
    assert reports.status == planets.status == "ready"
    keys = Keys(service.registry)
    with LiveServer(settings, service) as live:
        yield live, {"reports": keys.issue("reports", create=False), "planets": keys.issue("planets", create=False)}, \
            {"reports": reports.document_id, "planets": planets.document_id}
    service.close()


def call_over_http(url: str, key: str, calls: list[tuple[str, dict]]) -> list:
    async def session():
        async with create_mcp_http_client(headers={"Authorization": f"Bearer {key}"}) as http, \
                Client(streamable_http_client(url, http_client=http), read_timeout_seconds=120) as client:
            return [await client.call_tool(name, args) for name, args in calls]

    return anyio.run(session)


def test_a_knowledge_base_key_sees_only_its_knowledge_base(server):
    live, keys, docs = server
    listed, answered, foreign, foreign_doc, own_doc = call_over_http(live.url + "/mcp", keys["reports"], [
        ("list_knowledge_bases", {}),
        ("answer", {"kb": "reports", "question": QUESTION, "top_k": 3, "mode": "extractive"}),
        ("search", {"kb": "planets", "query": "Jupiter storm"}),
        ("get_document", {"document_id": docs["planets"]}),
        ("get_document", {"document_id": docs["reports"], "format": "json"}),
    ])
    assert structured(listed) == {"knowledge_bases": [{"name": "reports", "documents": 1}]}
    citation = structured(answered)["citations"][0]
    assert citation["quote"] == NITRATE
    assert citation["viewer_url"].startswith(f"{live.url}/viewer/documents/{docs['reports']}/pages/1?boxes=")
    assert "forbidden" in error_text(foreign) and "planets" in error_text(foreign)
    assert "not_found" in error_text(foreign_doc)
    layout = json.loads(own_doc.content[0].text)
    assert layout["document_id"] == docs["reports"] and len(layout["pages"]) == 3

    # the link's boxes draw on the page image the viewer loads with the same key
    image = httpx.get(f"{live.url}/v1/documents/{docs['reports']}/pages/1/image",
                      params={"boxes": parse_qs(urlparse(citation["viewer_url"]).query)["boxes"][0]},
                      headers={"Authorization": f"Bearer {keys['reports']}"})
    assert image.status_code == 200 and image.content[:4] == b"\x89PNG"


def test_the_admin_key_sees_every_knowledge_base(server):
    live, _, _ = server
    (listed, hits) = call_over_http(live.url + "/mcp", ADMIN, [
        ("list_knowledge_bases", {}), ("search", {"kb": "planets", "query": "Great Red Spot storm", "top_k": 2})])
    assert [kb["name"] for kb in structured(listed)["knowledge_bases"]] == ["planets", "reports"]
    assert "Great Red Spot" in structured(hits)["hits"][0]["text"]


def test_no_key_or_a_wrong_key_gets_no_mcp_session(server):
    live, _, _ = server
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
             "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": {"name": "t", "version": "0"}}}
    accept = {"Accept": "application/json, text/event-stream"}
    assert httpx.post(live.url + "/mcp", json=hello, headers=accept).status_code == 401
    wrong = httpx.post(live.url + "/mcp", json=hello, headers=accept | {"Authorization": "Bearer dgk_nope"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "unauthorized"
    with pytest.raises(Exception):  # the SDK's client cannot connect without a key either
        call_over_http(live.url + "/mcp", "dgk_nope", [("list_knowledge_bases", {})])
