"""Where the evaluation corpus is: DOCGROUND_CORPUS, else ../shared/eval/corpus beside the checkout (internal use
only: never copied into the project beyond small fixtures). tests/conftest.py: corpus_file skips without it."""

from __future__ import annotations

import os
from pathlib import Path

CORPUS = next((p for p in (Path(os.environ.get("DOCGROUND_CORPUS", "/nonexistent")),
                           Path(__file__).resolve().parents[2] / "shared" / "eval" / "corpus",
                           Path("/work/shared/eval/corpus")) if p.exists()),
              Path("/work/shared/eval/corpus"))
