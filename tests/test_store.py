import numpy as np
import pytest
from qdrant_client import QdrantClient

from docground.retrieval import sparse
from docground.retrieval.store import (
    DENSE,
    MIN_PREFETCH,
    PREFETCH_FACTOR,
    SPARSE,
    EdgeStore,
    IndexedChunk,
    ServerStore,
    bounded,
)

DIM = 8


def vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def chunk(i: int, doc: str, text: str, fp: str = "fp1") -> IndexedChunk:
    return IndexedChunk(id=f"00000000-0000-0000-0000-{i:012d}", dense=vec(i).tolist(),
                        sparse=sparse.document_vector(text),
                        payload={"document_id": doc, "text": text, "fingerprint": fp})


@pytest.fixture(params=["edge", "qdrant-client"])
def store(request, tmp_path):
    if request.param == "edge":
        s = EdgeStore(tmp_path / "edge", DIM)
    else:
        s = ServerStore(QdrantClient(path=str(tmp_path / "local")), "docground_test", DIM)
    yield s
    s.close()


def test_hybrid_search_finds_exact_terms_and_vectors(store):
    texts = ["the quarterly revenue grew", "zebra migration patterns in kenya", "annual report of the board",
             "知识库问答系统的设计", "revenue recognition policy"]
    store.upsert([chunk(i, f"d{i % 2}", t) for i, t in enumerate(texts)])
    store.flush()
    assert store.count() == 5
    # Lexical: a rare exact term wins even with an unrelated query vector.
    hits = store.search(vec(99), sparse.query_vector("zebra"), limit=2)
    assert hits[0].payload["text"] == texts[1]
    # Chinese query matches through character bigrams.
    hits = store.search(vec(98), sparse.query_vector("问答系统"), limit=1)
    assert hits[0].payload["text"] == texts[3]
    # Dense: the nearest vector is found, with its cosine.
    hits = store.search(vec(2), ([], []), limit=1)
    assert hits[0].payload["text"] == texts[2] and hits[0].dense_score == pytest.approx(1.0, abs=1e-4)
    # A document filter keeps other documents out.
    hits = store.search(vec(0), sparse.query_vector("revenue"), limit=5, document_ids=["d1"])
    assert {h.payload["document_id"] for h in hits} == {"d1"}


def test_deletes_touch_only_what_they_name(store):
    store.upsert([chunk(1, "a", "alpha one"), chunk(2, "a", "alpha two", fp="old"), chunk(3, "b", "beta")])
    store.delete_stale("a", "fp1")
    assert store.count("a") == 1 and store.count("b") == 1
    store.delete_document("a")
    assert store.count("a") == 0 and store.count("b") == 1


def test_upserting_the_same_ids_never_duplicates(store):
    batch = [chunk(i, "a", f"text {i}") for i in range(10)]
    store.upsert(batch)
    store.upsert(batch)
    assert store.count() == 10


def test_the_embedded_store_persists_and_admits_one_process(tmp_path):
    s = EdgeStore(tmp_path / "edge", DIM)
    s.upsert([chunk(1, "a", "persisted text")])
    s.flush()
    with pytest.raises(Exception):
        EdgeStore(tmp_path / "edge", DIM)
    s.close()
    again = EdgeStore(tmp_path / "edge", DIM)
    assert again.count() == 1
    again.close()


def test_sparse_terms():
    assert sparse.terms("知识库") == ["知识", "识库"]
    assert sparse.terms("Revenue grew 7.9%") == ["revenue", "grew", "7", "9", "7.9"]  # a dotted number also whole
    assert sparse.terms("한국어 문서") == ["한국", "국어", "문서"]
    ids, values = sparse.document_vector("cat cat dog")  # words that are their own stems
    assert len(ids) == 2 and values[ids.index(sparse.term_id("cat"))] > values[ids.index(sparse.term_id("dog"))]
    # a stem beside the word: the query's "informal" meets the document's "informally"
    shared = set(sparse.document_vector("informally referred to")[0]) & set(sparse.query_vector("informal")[0])
    assert len(shared) == 1


def test_optimize_builds_the_index_and_search_still_finds_everything(tmp_path):
    dim, n = 384, 20000  # segments are indexed once they pass Qdrant's size threshold (in kB)
    vectors = np.random.default_rng(1).normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    s = EdgeStore(tmp_path / "edge", dim)
    s.upsert([IndexedChunk(f"00000000-0000-0000-0000-{i:012d}", v.tolist(), ([1], [1.0]),
                           {"document_id": "d", "text": f"text number {i}"}) for i, v in enumerate(vectors)])
    assert s.optimize() is True
    assert s.optimize() is False  # nothing left to do
    assert s.count() == n
    hits = s.search(vectors[12345], ([], []), limit=1)
    assert hits[0].payload["text"] == "text number 12345"
    s.close()


def test_long_sparse_queries_keep_their_heaviest_terms():
    ids, weights = list(range(50)), [0.3 if i % 2 else 1.0 for i in range(50)]
    kept_ids, kept_weights = bounded((ids, weights), 30)
    assert kept_ids == sorted(kept_ids) and len(kept_ids) == 30
    assert set(range(0, 50, 2)) <= set(kept_ids)  # every heavy term
    assert kept_weights == [weights[i] for i in kept_ids]
    assert bounded(([3, 1], [1.0, 0.3]), 30) == ([3, 1], [1.0, 0.3])


def test_a_shard_made_before_quantization_loads_and_searches(tmp_path):
    """A shard created with the earlier configuration (float vectors only) opens with today's store,
    searches and optimizes as before."""
    import qdrant_edge as q

    dim, n = 384, 12000
    vectors = np.random.default_rng(2).normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    old = q.EdgeShard.create(str(tmp_path / "old"), q.EdgeConfig(
        vectors={DENSE: q.EdgeVectorParams(size=dim, distance=q.Distance.Cosine)},
        sparse_vectors={SPARSE: q.EdgeSparseVectorParams(modifier=q.Modifier.Idf)}))
    points = [q.Point(f"00000000-0000-0000-0000-{i:012d}", {DENSE: v.tolist(), SPARSE: q.SparseVector([i], [1.0])},
                      {"document_id": "d", "text": f"text number {i}"}) for i, v in enumerate(vectors)]
    for i in range(0, n, 1000):
        old.update(q.UpdateOperation.upsert_points(points[i:i + 1000]))
    old.flush()
    old.close()
    s = EdgeStore(tmp_path / "old", dim)
    assert s.count() == n
    assert s.search(vectors[777], ([], []), limit=1)[0].payload["text"] == "text number 777"
    assert s.optimize() is True
    assert s.search(vectors[9001], ([9001], [1.0]), limit=1)[0].payload["text"] == "text number 9001"
    s.close()


def test_the_dense_weight_decides_between_the_sparse_and_the_dense_favourite(store):
    axis = np.eye(DIM, dtype=np.float32)[0]
    both_words = chunk(1, "a", "Schlüsselbund erneuert")  # the sparse ranking's first, the dense one's last
    both_words.dense = (-axis).tolist()
    one_word = chunk(2, "a", "Schlüsselbund")  # the sparse ranking's second, the dense one's first
    one_word.dense = axis.tolist()
    store.upsert([both_words, one_word] + [chunk(i, "a", f"filler {i}") for i in range(3, 9)])
    query = sparse.query_vector("Schlüsselbund erneuert")
    assert store.search(axis, query, limit=2, dense_weight=1.0)[0].payload["text"] == "Schlüsselbund"
    assert store.search(axis, query, limit=2, dense_weight=0.02)[0].payload["text"] == "Schlüsselbund erneuert"


def test_a_tie_at_the_cut_is_decided_by_id_not_by_the_engine(store):
    """Chunk r of the dense ranking and chunk r of the sparse ranking fuse to the same score, so every cut
    splits a tie; the ids the engine would keep first (here the dense side) are the larger ones, and the
    answer to a query must not depend on the engine's order of ties."""
    query = np.eye(DIM, dtype=np.float32)[0]
    near, lexical = [], []
    for r in range(30):  # dense side: nearer the query the lower r; no query term
        v = query + (0.02 + 0.03 * r) * np.eye(DIM, dtype=np.float32)[1]
        near.append(IndexedChunk(id=f"00000000-0000-0000-0001-{r:012d}", dense=(v / np.linalg.norm(v)).tolist(),
                                 sparse=sparse.document_vector(f"filler text {r}"), payload={"text": f"near {r}"}))
    for r in range(30):  # sparse side: far from the query; the term more often the lower r
        v = -query + 0.1 * np.eye(DIM, dtype=np.float32)[2 + r % 6]
        text = " ".join(["zebra"] * (40 - r) + ["grass"] * (r + 1))
        lexical.append(IndexedChunk(id=f"00000000-0000-0000-0000-{r:012d}", dense=(v / np.linalg.norm(v)).tolist(),
                                    sparse=sparse.document_vector(text), payload={"text": text}))
    store.upsert(near + lexical)
    store.flush()
    widest = MIN_PREFETCH // PREFETCH_FACTOR  # the most asked for with the same prefetch depth (same fusion)
    wide = store.search(query, sparse.query_vector("zebra"), limit=widest)
    for limit in range(1, widest):
        assert [h.id for h in store.search(query, sparse.query_vector("zebra"), limit=limit)] == \
               [h.id for h in wide[:limit]]
