"""Knowledge bases whose names differ only in characters a collection name cannot hold stay apart."""

import re

import numpy as np
from qdrant_client import QdrantClient

from docground.registry import validate_kb_name
from docground.retrieval import sparse
from docground.retrieval.store import IndexedChunk, ServerStore, collection_name
from docground_testing.pdfgen import two_column_pdf

# Names an "anything else becomes '_'" mapping folds together, and their neighbours.
COLLIDING = ["acme.eu", "acme_eu", "acme-eu", "acme__eu", "acme._eu", "acme_.eu", "acme..eu", "acme_2eeu",
             "acme__2eeu", "docground_acme_eu", "a.b_c", "a_b.c", "a_b_c", "a.b.c", "A.b", "a.B", "0", "0.", "_0",
             "acme eu", "acme/eu", "acme\\eu", "acmé.eu", "acme_e9.eu", "acme.世界", "acme_u004e16.eu", ""]


def decode(name: str) -> str:
    """Reads a collection name back into the knowledge base's name (the inverse the mapping promises)."""
    if name.startswith("docground_"):
        return name[len("docground_"):]
    assert name.startswith("docground-"), name
    body, out, i = name[len("docground-"):], [], 0
    while i < len(body):
        if body[i] != "_":
            out.append(body[i])
            i += 1
        elif body[i + 1] == "_":
            out.append("_")
            i += 2
        elif body[i + 1] == "u":
            out.append(chr(int(body[i + 2:i + 8], 16)))
            i += 8
        else:
            out.append(chr(int(body[i + 1:i + 3], 16)))
            i += 3
    return "".join(out)


def test_collection_names_are_one_to_one_and_valid():
    names = {kb: collection_name(kb) for kb in COLLIDING}
    assert len(set(names.values())) == len(COLLIDING), names
    for kb, name in names.items():
        assert decode(name) == kb
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,255}", name), name
    assert names["acme.eu"] != names["acme_eu"]


def test_plain_names_keep_the_collection_they_always_had():
    for kb in ["acme_eu", "reports", "Team-1", "kb_2024-q1", "x"]:
        assert collection_name(kb) == "docground_" + kb


def test_the_longest_valid_names_still_fit_a_collection_name():
    for kb in ["a" + "." * 63, "a" + "_" * 63, "a" * 64, "a" + "._" * 31 + "."]:
        assert validate_kb_name(kb) == kb
        assert len(collection_name(kb)) <= 255


def test_colliding_knowledge_bases_never_see_each_others_chunks_on_the_qdrant_server_path(settings, embedder):
    from docground.service import Docground

    settings.qdrant_url = ":memory:"  # qdrant-client's local mode: the server path, with the server's API
    svc = Docground(settings)
    svc._embedder = embedder
    try:
        docs = {"acme.eu": two_column_pdf(seed=21), "acme_eu": two_column_pdf(seed=22)}
        ids = {}
        for kb, (data, _) in docs.items():
            result = svc.ingest(kb, f"{kb}.pdf", data)
            assert result.status == "ready" and result.chunks > 0
            ids[kb] = result.document_id
            assert isinstance(svc.store(kb), ServerStore)

        # One collection each, holding only its own knowledge base's chunks.
        client = svc._qdrant_client
        collections = {c.name for c in client.get_collections().collections}
        assert {collection_name("acme.eu"), collection_name("acme_eu")} <= collections
        for kb, doc_id in ids.items():
            points, _ = client.scroll(collection_name(kb), limit=1000, with_payload=True)
            assert points and {p.payload["document_id"] for p in points} == {doc_id}
            assert {p.payload["kb"] for p in points} == {kb}

        # Every question, including one quoting the other knowledge base's document word for word.
        for kb in docs:
            for other, (_, lines) in docs.items():
                for line in (lines[3]["text"], lines[20]["text"]):
                    response = svc.query(kb, line, top_k=10)
                    assert response.chunks
                    assert {c.document_id for c in response.chunks} == {ids[kb]}, (kb, other, line)
                    assert {c.document_id for c in response.citations} <= {ids[kb]}
    finally:
        svc.close()


DIM = 8


def _chunk(i: int, kb: str, text: str) -> IndexedChunk:
    v = np.random.default_rng(i).normal(size=DIM).astype(np.float32)
    return IndexedChunk(id=f"00000000-0000-0000-0000-{i:012d}", dense=(v / np.linalg.norm(v)).tolist(),
                        sparse=sparse.document_vector(text),
                        payload={"document_id": f"{kb}-doc", "kb": kb, "text": text, "fingerprint": "fp"})


def test_a_collection_older_versions_shared_still_shows_each_kb_only_its_own_chunks():
    # Before the one-to-one mapping, acme.eu and acme_eu both wrote into docground_acme_eu.
    client = QdrantClient(location=":memory:")
    legacy = ServerStore(client, "docground_acme_eu", DIM)
    legacy.upsert([_chunk(1, "acme.eu", "zebra migration in kenya"), _chunk(2, "acme.eu", "zebra herds"),
                   _chunk(3, "acme_eu", "quarterly revenue grew"), _chunk(4, "acme_eu", "revenue policy")])
    assert legacy.count() == 4
    store = ServerStore(client, collection_name("acme_eu"), DIM, kb="acme_eu")
    assert store.count() == 2
    for query in ("zebra", "revenue", "kenya herds"):
        hits = store.search(np.asarray(_chunk(1, "x", "").dense, dtype=np.float32), sparse.query_vector(query),
                            limit=10)
        assert hits and {h.payload["kb"] for h in hits} == {"acme_eu"}
    hits = store.search(np.asarray(_chunk(1, "x", "").dense, dtype=np.float32), ([], []), limit=10,
                        document_ids=["acme.eu-doc", "acme_eu-doc"])
    assert {h.payload["document_id"] for h in hits} == {"acme_eu-doc"}
