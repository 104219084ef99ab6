from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from docground_testing.corpus import CORPUS

# CI replays the same examples every run (a red CI is a real regression, not a new random draw);
# HYPOTHESIS_PROFILE=explore draws fresh examples for deeper fuzzing.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis_settings.register_profile("explore", derandomize=False, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def corpus_file(relative: str) -> Path:
    path = CORPUS / relative
    if not path.exists():
        pytest.skip(f"evaluation corpus not present: {path}")
    return path


@pytest.fixture(scope="session")
def embedder():
    from docground.retrieval.embeddings import Embedder

    return Embedder()


@pytest.fixture
def settings(tmp_path):
    from docground.settings import Settings

    return Settings(home=tmp_path / "home")


@pytest.fixture
def service(settings, embedder):
    from docground.service import Docground

    svc = Docground(settings)
    svc._embedder = embedder  # one model load per test session
    yield svc
    svc.close()
