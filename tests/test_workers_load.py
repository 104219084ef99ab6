"""20 concurrent uploads through the HTTP API while queries run, in the production shape: a private
redis-server, a `docground worker` process, the API owning the embedded store. No request may fail and
every document must end ready; the query latency under load is printed (pytest -s), as bench/load.py
prints it."""

from __future__ import annotations

import httpx

from docground_testing.load import local_stack, percentile, run_load, table


def test_twenty_concurrent_uploads_while_queries_run(tmp_path):
    api, stop = local_stack("celery", tmp_path / "home", workers=1, concurrency=2)
    try:
        result = run_load(api.url, "load", uploads=20, pages=3, query_threads=2)
        listed = httpx.get(f"{api.url}/v1/knowledge-bases/load/documents", timeout=30).json()["documents"]
    finally:
        stop()
    print("\n" + table(result, "celery: 1 worker x 2 processes, private redis-server"))
    assert result.errors == []
    assert len(set(result.document_ids)) == 21
    assert sorted(d["document_id"] for d in listed) == sorted(result.document_ids)
    assert all(d["status"] == "ready" and d["chunks"] > 0 and d["pages_done"] == d["pages_total"] for d in listed)
    assert result.load_query_ms and percentile(result.load_query_ms, 95) > 0
