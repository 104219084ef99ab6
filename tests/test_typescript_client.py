"""The TypeScript client in clients/typescript/ is generated from this app's OpenAPI schema and its example
(upload, poll, ask) must type-check: a schema change that would break a frontend fails here."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from docground.api.app import create_app
from docground.settings import Settings

PACKAGE = Path(__file__).resolve().parents[1] / "clients" / "typescript"


def npm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["npm", *args], cwd=PACKAGE, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed (make install adds nodejs/npm)")
def test_the_generated_typescript_client_type_checks_the_example(tmp_path):
    (PACKAGE / "openapi.json").write_text(json.dumps(create_app(Settings(home=tmp_path / "home")).openapi()))
    installed = npm("ci", "--no-audit", "--no-fund")
    assert installed.returncode == 0, installed.stderr[-3000:]
    generated = npm("run", "generate")
    assert generated.returncode == 0, generated.stderr[-3000:]
    assert "operations" in (PACKAGE / "src" / "schema.d.ts").read_text()
    checked = npm("run", "check")
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
