"""The GPU benchmarks' stand-in modules (docground_testing/module_standins.py, for packages the GPU machine
lacks): written only for a package that is missing, appended to sys.path (installed packages win), kept in a
per-run temporary folder that is gone after cleanup, and handed to child interpreters by environment, not
PYTHONPATH."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from docground_testing import module_standins as standins

ROOT = Path(__file__).resolve().parents[1]
ABSENT = "docground_bench_absent_module"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


@pytest.fixture
def clean(monkeypatch):
    """A private sys.path and environment: nothing a test adds leaks into the session."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in (standins.RUN_DIR_ENV, standins.STUBS_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    yield
    sys.modules.pop(ABSENT, None)
    standins.cleanup_run_dir()


def test_stand_in_only_for_a_missing_module_and_gone_after_cleanup(clean):
    import filetype

    real = Path(filetype.__file__).resolve()
    run = standins.run_dir()
    assert run.is_dir() and os.environ[standins.RUN_DIR_ENV] == str(run)
    assert standins.run_dir() == run  # one folder per run
    stubs = run / "stubs"
    written = standins.write_stand_ins(stubs, {ABSENT: "VALUE = 42\n",
                                              "filetype": "def guess(data):\n    return None\n"})

    assert written == [ABSENT]
    assert sorted(p.name for p in stubs.iterdir()) == [f"{ABSENT}.py"]  # never a stand-in for filetype
    assert sys.path[-1] == str(stubs)  # appended: every installed package comes first
    assert importlib.import_module(ABSENT).VALUE == 42
    sys.modules.pop("filetype")
    try:
        again = importlib.import_module("filetype")
        assert Path(again.__file__).resolve() == real
        assert again.guess(PNG) is not None
    finally:
        sys.modules["filetype"] = filetype

    standins.cleanup_run_dir()
    assert not run.exists()
    assert str(stubs) not in sys.path
    assert standins.RUN_DIR_ENV not in os.environ


def test_make_importable_hands_stand_ins_to_children_by_environment(clean, monkeypatch):
    monkeypatch.setattr(standins, "STAND_INS", {**standins.STAND_INS, ABSENT: "VALUE = 7\n"})
    before = os.environ["PYTHONPATH"]
    standins.make_importable()
    run = Path(os.environ[standins.RUN_DIR_ENV])
    stubs = Path(os.environ[standins.STUBS_ENV])
    assert run in stubs.parents and not Path("/tmp/docground_stubs", f"{ABSENT}.py").exists()
    assert sorted(p.name for p in stubs.iterdir()) == [f"{ABSENT}.py"]  # pymupdf and filetype are installed here
    assert os.environ["PYTHONPATH"] == before  # docground is installed here: no link, and stand-ins never go there
    assert importlib.import_module(ABSENT).VALUE == 7

    # the bug this guards against: a stale filetype.py beside the stand-ins shadowed the real package in a
    # Celery worker. A child appends the folder after its installed packages, and exiting does not remove
    # the folder it inherited.
    (stubs / "filetype.py").write_text("def guess(data):\n    return None\n")
    child = ("from docground_testing.module_standins import run_dir, use_stand_ins_from_env\n"
             "use_stand_ins_from_env(); run_dir()\n"
             f"import filetype, {ABSENT}\n"
             f"print({ABSENT}.VALUE, filetype.guess({PNG!r}) is not None, filetype.__file__)\n")
    out = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    value, guessed, where = out.stdout.split()
    assert (value, guessed) == ("7", "True") and run not in Path(where).parents
    assert stubs.is_dir()

    standins.cleanup_run_dir()
    assert not run.exists()
    assert standins.STUBS_ENV not in os.environ and standins.RUN_DIR_ENV not in os.environ
