"""Prometheus /metrics: query latency from real requests, ingest progress and queue depth from the registry."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from docground.api.app import create_app
from docground.registry import Document
from docground.service import Docground
from docground.settings import Settings
from docground_testing.citation_docs import report_pdf
from docground_testing.live_server import Borrowed


def scrape(client: TestClient) -> dict[tuple[str, tuple], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def test_metrics_report_ingest_queue_and_query_latency(tmp_path, embedder):
    settings = Settings(home=tmp_path / "home", rate_limit_per_minute=0)
    service = Docground(settings)
    service._embedder = embedder
    assert service.ingest("m", "report.pdf", report_pdf()).status == "ready"
    with TestClient(create_app(settings, Borrowed(service))) as client:
        before = scrape(client)
        assert before[("docground_ingest_pages_total", ())] == 3
        assert before[("docground_documents", (("status", "ready"),))] == 1
        assert before[("docground_queue_depth", ())] == 0
        for _ in range(3):
            assert client.post("/v1/knowledge-bases/m/query", json={"query": "nitrate levels"}).status_code == 200
        assert client.post("/v1/knowledge-bases/none/query", json={"query": "x"}).status_code == 404
        service.registry.ensure_kb("m")
        service.registry.upsert_document(Document(id="q" * 32, kb="m", filename="waiting.pdf", sha256="0" * 64,
                                                  status="queued", pages_total=7, pages_done=2))
        after = scrape(client)
    assert after[("docground_query_seconds_count", ())] == 3  # answered queries only
    assert after[("docground_query_seconds_sum", ())] > 0
    route = "/v1/knowledge-bases/{kb}/query"
    assert after[("docground_http_request_seconds_count",
                  (("method", "POST"), ("route", route), ("status", "404")))] == 1
    assert after[("docground_queue_depth", ())] == 1
    assert after[("docground_queue_pages", ())] == 5
    assert after[("docground_ingest_pages_total", ())] == 5
    assert after[("docground_ingest_pages_per_second", ())] >= 0
    service.close()
