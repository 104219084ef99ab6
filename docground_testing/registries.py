"""A registry on SQLite or on the machine's PostgreSQL, for tests that must hold on both."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

from docground.registry import Registry

POSTGRES_URL = os.environ.get("DOCGROUND_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class PostgresUnreachable(RuntimeError):
    pass


@contextmanager
def registry_on(kind: str, folder: Path) -> Iterator[Registry]:
    """kind "sqlite": a file in `folder`; "postgresql": a private schema (other tests may share the
    database), dropped afterwards."""
    if kind == "sqlite":
        yield Registry(f"sqlite:///{folder / 'registry.sqlite3'}")
        return
    schema = "dg_test_" + uuid.uuid4().hex[:12]
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:
        raise PostgresUnreachable(f"PostgreSQL is not reachable at {POSTGRES_URL} "
                                  f"(set DOCGROUND_TEST_POSTGRES_URL): {exc}") from exc
    registry = Registry(f"{POSTGRES_URL}?options=-csearch_path%3D{schema}")
    try:
        yield registry
    finally:
        registry.engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
