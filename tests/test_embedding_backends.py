"""The embedder's backends: PyTorch, and ONNX Runtime on an export of the same local model (float, int8).

The ONNX export is made once from the packaged MiniLM into a cache directory and reused; its vectors stay
close to PyTorch's; a misspelt backend is refused with the allowed values; and the pipeline fingerprint (so
every chunk id) differs between backends, so a knowledge base never mixes their vectors.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pymupdf
import pytest

from docground.retrieval.embeddings import BACKENDS, Embedder, residual_writes
from docground.service import Docground
from docground.settings import Settings, describe_error

SENTENCES = [
    "The invoice is due thirty days after delivery.",
    "Quarterly revenue rose by twelve percent, driven by demand in Asia and Europe.",
    "Reset the device by holding the power button for ten seconds.",
    "Table 3 reports the ablation results on the validation set.",
    "x",
    " ".join(["The committee reviewed the safety procedures of the plant and recommended changes."] * 12),
]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def int8(onnx_cache):
    return Embedder(backend="onnx-int8", cache_dir=onnx_cache)


@pytest.fixture(scope="module")
def torch_embedder():
    return Embedder(backend="torch")


def test_export_happens_once_and_is_reused(int8, onnx_cache):
    assert int8.exported
    exports = list((onnx_cache / "onnx").iterdir())
    assert len(exports) == 1 and {p.name for p in exports[0].iterdir()} == {"model.onnx", "model_int8.onnx"}
    stamp = (exports[0] / "model_int8.onnx").stat().st_mtime_ns

    again = Embedder(backend="onnx-int8", cache_dir=onnx_cache)
    assert not again.exported
    assert list((onnx_cache / "onnx").iterdir()) == exports  # no second export, no staging left behind
    assert (exports[0] / "model_int8.onnx").stat().st_mtime_ns == stamp
    np.testing.assert_allclose(again.embed(SENTENCES), int8.embed(SENTENCES), atol=1e-5)


def test_int8_keeps_the_products_that_write_the_residual_stream_float(int8, onnx_cache):
    import onnx

    export = next((onnx_cache / "onnx").iterdir())
    residual = residual_writes(onnx.load(str(export / "model.onnx")).graph)
    assert len(residual) == 12  # MiniLM: 6 layers, attention output and feed-forward output
    quantized = onnx.load(str(export / "model_int8.onnx")).graph
    float_products = {n.name for n in quantized.node if n.op_type == "MatMul"}
    assert set(residual) <= float_products
    assert sum(1 for n in quantized.node if n.op_type == "MatMulInteger") == 24  # query, key, value, FFN in


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_vectors_close_to_torch(torch_embedder, onnx_cache, int8, backend):
    other = int8 if backend == "onnx-int8" else Embedder(backend=backend, cache_dir=onnx_cache)
    reference = torch_embedder.embed(SENTENCES)
    for vectors in (other.embed(SENTENCES), np.stack([other.embed_query(s) for s in SENTENCES])):
        assert vectors.shape == reference.shape and vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
        cosines = np.sum(vectors * reference, axis=1)
        assert cosines.min() > (0.999 if backend == "onnx" else 0.95), cosines
    # the nearest sentence to each query is the one PyTorch finds
    queries = ["when must the invoice be paid", "how to restart the device", "ablation table"]
    assert [int(np.argmax(reference @ torch_embedder.embed_query(q))) for q in queries] == \
        [int(np.argmax(other.embed(SENTENCES) @ other.embed_query(q))) for q in queries] == [0, 2, 3]


def test_batches_are_packed_by_tokens_not_chunks(torch_embedder):
    embedder = torch_embedder
    texts = [" ".join(["word"] * n) for n in (3, 200, 5, 180, 4, 190, 6)]  # 5, 202, 7, 182, 6, 192, 8 tokens
    packed = Embedder.__new__(Embedder)
    packed.__dict__.update(embedder.__dict__, batch_tokens=400)
    # longest first; a batch holds as many as fit in 400 tokens once padded to its longest
    assert list(packed.batches(texts)) == [[1], [5, 3], [6, 2, 4, 0]]
    vectors = packed.embed(texts)  # back in the order given
    np.testing.assert_allclose(vectors, embedder.embed(texts), atol=1e-5)
    assert all(np.dot(vectors[i], embedder.embed_query(texts[i])) > 0.999 for i in (0, 1, 6))


def test_an_int8_vector_does_not_depend_on_the_texts_embedded_with_it(int8):
    """Quantized activations share one scale per call: batched, a text's vector moved with its batch mates."""
    texts = SENTENCES + [" ".join(["word"] * n) for n in (3, 200, 5)]
    alone = np.stack([int8.embed([text])[0] for text in texts])
    np.testing.assert_allclose(int8.embed(texts), alone, atol=1e-6)
    np.testing.assert_allclose(int8.embed(texts[::-1])[::-1], alone, atol=1e-6)


def test_backend_typo_is_refused_with_the_allowed_values(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCGROUND_EMBEDDING_BACKEND", "onnx_int8")
    with pytest.raises(Exception) as err:
        Settings(home=tmp_path)
    message = describe_error(err.value)
    assert "DOCGROUND_EMBEDDING_BACKEND='onnx_int8'" in message
    assert all(f"'{b}'" in message for b in BACKENDS), message
    with pytest.raises(ValueError, match="torch, onnx, onnx-int8"):
        Embedder(backend="onnx_int8")


def test_fingerprint_and_chunk_ids_differ_between_backends(tmp_path, onnx_cache, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(onnx_cache / "xdg"))
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 160), "Reset the device by holding the power button for ten seconds.")
    data = doc.tobytes()
    fingerprints, ids = {}, {}
    for backend in ("torch", "onnx-int8"):
        service = Docground(Settings(home=tmp_path / backend, embedding_backend=backend))
        assert service.embedder.backend == backend
        pipeline = service.pipeline
        fingerprints[backend] = pipeline.fingerprint
        chunks = pipeline.chunk(pipeline.parse_pages(pipeline.open(data), "doc"), "doc")
        ids[backend] = [c.id for c in chunks]
        service.close()
    assert fingerprints["torch"] != fingerprints["onnx-int8"]
    assert ids["torch"] and not set(ids["torch"]) & set(ids["onnx-int8"])


def test_concurrent_first_uses_leave_one_whole_export(tmp_path):
    """Two processes exporting at once: each works in its own staging directory renamed into place, so the
    cache ends with one complete export that both use, and no staging directory."""
    code = ("import sys; from pathlib import Path; from docground.retrieval.embeddings import Embedder; "
            "e = Embedder(backend='onnx-int8', cache_dir=Path(sys.argv[1])); "
            "print(e.exported, float(e.embed_query('reset the device') @ e.embed_query('restart the device')))")
    runs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=600)[0].split() for run in runs]
    assert all(run.returncode == 0 for run in runs)
    assert {out[0] for out in outputs} <= {"True", "False"} and any(out[0] == "True" for out in outputs)
    assert all(float(out[1]) > 0.5 for out in outputs)
    exports = list((tmp_path / "onnx").iterdir())
    assert len(exports) == 1 and not exports[0].name.startswith(".")
    assert {p.name for p in exports[0].iterdir()} == {"model.onnx", "model_int8.onnx"}
