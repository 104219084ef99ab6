"""A registry made by an older docground opens and works: retired columns are dropped, new ones added."""

from __future__ import annotations

import sqlite3

from sqlalchemy import inspect

from docground.registry import Document, Page, Registry


def _old_registry(path) -> None:
    """The pages table as earlier releases made it: attempts NOT NULL without a server default, meta JSON."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE pages (document_id VARCHAR NOT NULL, page INTEGER NOT NULL, status VARCHAR(16) "
                   "NOT NULL, engine VARCHAR(32), engine_version VARCHAR(32), reason TEXT, blocks INTEGER NOT NULL, "
                   "attempts INTEGER NOT NULL, error TEXT, meta JSON, PRIMARY KEY (document_id, page))")


def test_an_old_registry_loses_its_retired_columns_and_takes_new_pages(tmp_path):
    path = tmp_path / "registry.sqlite3"
    _old_registry(path)
    registry = Registry(f"sqlite:///{path}")
    columns = {c["name"] for c in inspect(registry.engine).get_columns("pages")}
    assert "attempts" not in columns and "meta" not in columns and {"fingerprint", "layout"} <= columns
    registry.ensure_kb("kb")
    doc = Document(id="d" * 32, kb="kb", filename="a.pdf", sha256="0" * 64, kind="pdf", size_bytes=1, pages_total=1)
    registry.register(doc, "fp")
    assert registry.complete_pages(doc.id, "fp", [Page(page=1, engine="textlayer", engine_version="1", reason="r",
                                                      blocks=2, error=None, layout="{}")]) == 1


def test_an_old_registry_gains_the_webhook_settings_and_deliveries(tmp_path):
    """Knowledge bases made before webhooks keep their key and gain a callback URL and a secret; the
    deliveries table is created."""
    path = tmp_path / "registry.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE knowledge_bases (name VARCHAR(64) NOT NULL PRIMARY KEY, api_key_hash VARCHAR(128), "
                   "created_at DATETIME)")
        db.execute("INSERT INTO knowledge_bases (name, api_key_hash) VALUES ('old', 'abc')")
    registry = Registry(f"sqlite:///{path}")
    inspector = inspect(registry.engine)
    assert {"callback_url", "webhook_secret"} <= {c["name"] for c in inspector.get_columns("knowledge_bases")}
    assert "webhook_deliveries" in inspector.get_table_names()
    registry.set_callback_url("old", "https://hooks.example.org/x")
    secret = registry.webhook_secret("old")
    assert secret.startswith("whsec_") and registry.webhook_secret("old") == secret
    row = registry.get_kb("old")
    assert row.api_key_hash == "abc" and row.callback_url == "https://hooks.example.org/x"
    doc = Document(id="e" * 32, kb="old", filename="a.pdf", sha256="1" * 64, kind="pdf", size_bytes=1, pages_total=1)
    job = registry.register(doc, "fp").job
    registry.subscribe(doc.id, "https://hooks.example.org/upload")
    assert registry.advance(job.id, "failed", error="broken", error_code="corrupt_file")
    armed = registry.deliveries(doc.id)
    assert sorted(d.url for d in armed) == ["https://hooks.example.org/upload", "https://hooks.example.org/x"]
    assert {d.status for d in armed} == {"pending"} and {d.event for d in armed} == {"document.failed"}
