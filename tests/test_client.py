"""The typed client, sync and async, against the real app on a real socket."""

from __future__ import annotations

import asyncio
import inspect
import json

import pytest

from docground.api.client import AsyncDocgroundClient, DocgroundAPIError, DocgroundClient, _Calls
from docground.api.models import KnowledgeBaseKey, QueryResponse
from docground.service import Docground
from docground.settings import Settings
from docground_testing.citation_docs import report_pdf
from docground_testing.live_server import LiveServer
from docground_testing.llm_standin import StandIn, source_number

ADMIN = "client-admin"
NITRATE = "Nitrate levels fell by twelve percent over the study period, mostly downstream of Vienna."
QUESTION = "How much did nitrate levels fall in the Danube survey?"


@pytest.fixture(scope="module")
def server(tmp_path_factory, embedder):
    settings = Settings(home=tmp_path_factory.mktemp("client") / "home", admin_key=ADMIN, rate_limit_per_minute=0)
    service = Docground(settings)
    service._embedder = embedder
    with LiveServer(settings, service) as live:
        yield live, service
    service.close()


def test_sync_client_upload_wait_query_stream_and_page(server):
    live, _ = server
    with DocgroundClient(live.url, api_key=ADMIN) as admin:
        assert admin.health()
        created = admin.create_knowledge_base("sync")
        assert isinstance(created, KnowledgeBaseKey) and created.api_key.startswith("dgk_")
    with DocgroundClient(live.url, api_key=created.api_key) as dg:
        accepted = dg.upload("sync", report_pdf(), filename="report.pdf")
        progress = list(dg.document_events(accepted.document_id))
        assert progress[-1].name == "done" and progress[-1].response.status == "ready"
        status = dg.wait(accepted.document_id, timeout=300)
        assert status.status == "ready" and status.pages_total == 3 and status.chunks >= 3
        assert [d.document_id for d in dg.documents("sync")] == [accepted.document_id]
        pages = dg.document_pages(accepted.document_id).pages
        assert [p.page for p in pages] == [1, 2, 3] and {p.status for p in pages} == {"done"}
        assert {p.engine for p in pages} == {"textlayer"} and all(p.reason and p.blocks > 0 for p in pages)
        answer = dg.query("sync", QUESTION, top_k=3, mode="extractive")
        assert isinstance(answer, QueryResponse) and NITRATE in [c.quote for c in answer.citations]
        (event,) = list(dg.query_stream("sync", QUESTION, top_k=3, mode="extractive"))
        assert event.name == "done"
        assert (event.response.answer, event.response.citations) == (answer.answer, answer.citations)
        citation = answer.citations[0]
        png = dg.page_image(citation.document_id, citation.page, boxes=citation.boxes)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        with pytest.raises(DocgroundAPIError) as refused:
            dg.create_knowledge_base("mine")
        assert refused.value.status == 403 and refused.value.code == "forbidden"
        assert dg.delete_document(accepted.document_id).deleted
        with pytest.raises(DocgroundAPIError) as gone:
            dg.document(accepted.document_id)
        assert gone.value.status == 404 and gone.value.code == "not_found"


def test_async_client_streams_a_generated_answer(server):
    live, service = server

    async def scenario(endpoint: str) -> tuple[list, QueryResponse]:
        async with AsyncDocgroundClient(live.url, api_key=ADMIN) as admin:
            key = (await admin.create_knowledge_base("async")).api_key
        async with AsyncDocgroundClient(live.url, api_key=key) as dg:
            accepted = await dg.upload("async", report_pdf(), filename="report.pdf")
            assert (await dg.wait(accepted.document_id, timeout=300)).status == "ready"
            events = [e async for e in dg.query_stream("async", QUESTION, top_k=3, mode="generate")]
            with pytest.raises(DocgroundAPIError) as other:
                await dg.query("sync", QUESTION)
            assert other.value.status == 403
            return events, await dg.query("async", QUESTION, top_k=3, mode="extractive")

    with StandIn(lambda r: f"Nitrate levels fell by twelve percent [{source_number(r, 'arabica')}].") as model:
        service.settings.llm_endpoint = model.endpoint
        try:
            events, extractive = asyncio.run(scenario(model.endpoint))
        finally:
            service.settings.llm_endpoint = None
    assert [e.name for e in events[:-1]] == ["delta"] * (len(events) - 1) and len(events) > 3
    done = events[-1]
    assert done.name == "done" and done.response.answer_mode == "generated"
    assert done.response.answer == "Nitrate levels fell by twelve percent. [1]"  # the wrong marker repaired
    assert done.response.citations[0].quote == NITRATE
    assert extractive.answer_mode == "extractive"


def test_errors_carry_the_servers_code(server):
    live, _ = server
    with DocgroundClient(live.url) as anonymous, pytest.raises(DocgroundAPIError) as missing:
        anonymous.knowledge_bases()
    assert missing.value.status == 401 and missing.value.code == "unauthorized"
    with DocgroundClient(live.url, api_key=ADMIN) as admin, pytest.raises(DocgroundAPIError) as unknown:
        admin.query("no-such-kb", QUESTION)
    assert unknown.value.status == 404 and "no-such-kb" in unknown.value.message


def test_the_client_covers_every_v1_operation(server):
    """A route added to the API without a client method fails here."""
    live, _ = server
    with DocgroundClient(live.url, api_key=ADMIN) as admin:
        schema = admin.http.get("/openapi.json").json()
    served = {(method.upper(), path) for path, ops in schema["paths"].items() if path.startswith("/v1/")
              for method in ops}
    placeholders = {"kb": "{kb}", "document_id": "{document_id}", "page": "{page}", "name": "x", "question": "q",
                    "top_k": 5, "mode": "auto", "file": b"x", "filename": None, "idempotency_key": None,
                    "dpi": 110, "boxes": None, "stream": False, "content_format": "markdown",
                    "block_id": "{block_id}", "callback_url": None}
    called = set()
    for fn in vars(_Calls).values():
        if isinstance(fn, staticmethod):
            fn = fn.__func__
            args = {p: placeholders[p] for p in inspect.signature(fn).parameters}
            call = fn(**args)
            called.add((call.method, call.path))
    assert served <= called, served - called


def test_openapi_schema_from_the_cli():
    from typer.testing import CliRunner

    from docground.api.cli import app as cli

    result = CliRunner().invoke(cli, ["openapi"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    query = schema["paths"]["/v1/knowledge-bases/{kb}/query"]["post"]
    assert "text/event-stream" in query["responses"]["200"]["content"]
    response = schema["components"]["schemas"]["QueryResponse"]["properties"]
    assert {"answer", "citations", "chunks", "answer_mode"} <= set(response)
