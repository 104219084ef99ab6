"""Chunk storage in Qdrant: dense + IDF-weighted sparse vectors per chunk, fused by reciprocal rank.

Embedded by default (qdrant-edge: Qdrant's engine in this process, one shard directory per knowledge
base); a Qdrant server through qdrant-client when a URL is configured. Both speak the same Store API.
An embedded shard admits one process at a time.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from docground.disk_space import require_room

DENSE = "dense"
SPARSE = "sparse"
# Rank fusion's k: small, so a chunk one search ranks first is not buried under chunks both searches rank
# in the middle (on bench/qa.py the answering chunk reached the top 5 for 108 of 158 questions at k=60,
# 129 at k=5, equal weights).
RRF_K = 5
# Fused scores tie in pairs (rank r of one ranking, rank r of the other): the engine is asked for a few
# past the cut, so the tie that straddles it is decided by id here.
TIE_SLACK = 4
PREFETCH_FACTOR = 4
MIN_PREFETCH = 24
# The sparse query keeps at most this many terms, the heaviest first: each term is a posting list the
# search walks, so a pasted paragraph must not cost a hundred of them (a question has far fewer).
MAX_SPARSE_TERMS = 32
# Embedded shards created from now on: an HNSW graph over int8 copies of the dense vectors (a quarter of
# the memory, four times fewer bytes per distance), candidates then rescored with the float vectors.
HNSW_M = 16
HNSW_EF_CONSTRUCT = 64  # Qdrant's default is 100; recall at the depths asked for stays ~0.99, builds are faster
HNSW_EF = 200  # candidates a search explores: at 96, 2 of 200 bench questions at 100k lost all 16 hits
FULL_SCAN_KB = 10_000  # a segment (or a filtered subset) smaller than this is searched exactly
QUANTILE = 0.99
OVERSAMPLING = 2.0  # quantized candidates fetched per hit, before rescoring with the float vectors
# qdrant-edge writes through memory maps, where a full disk kills the process (SIGBUS) instead of failing
# the write: an upsert starts only with this much free, plus a few times the bytes it adds (the WAL keeps
# a copy, the segment another, the quantized vectors and the indexes more).
STORE_ROOM_FLOOR = 4 << 20
STORE_ROOM_FACTOR = 4
SCROLL_PAGE = 256  # points read at once when a store is read out whole (snapshots, migrations)


def bounded(sparse: tuple[list[int], list[float]], most: int = MAX_SPARSE_TERMS) -> tuple[list[int], list[float]]:
    """The query's `most` heaviest terms (ties: first listed), in their original order."""
    ids, weights = sparse
    if len(ids) <= most:
        return sparse
    keep = sorted(sorted(range(len(ids)), key=lambda i: -weights[i])[:most])
    return [ids[i] for i in keep], [weights[i] for i in keep]


@dataclass
class IndexedChunk:
    id: str
    dense: list[float]
    sparse: tuple[list[int], list[float]]
    payload: dict


@dataclass
class Hit:
    id: str
    score: float  # fused rank score
    dense_score: float  # cosine similarity to the query
    payload: dict


class ChunkStore(Protocol):
    def upsert(self, chunks: list[IndexedChunk]) -> None: ...

    def delete_document(self, document_id: str) -> None: ...

    def delete_stale(self, document_id: str, fingerprint: str) -> None:
        """Remove the document's chunks made by any other pipeline fingerprint."""
        ...

    def delete_version(self, document_id: str, fingerprint: str) -> None:
        """Remove the document's chunks made by this pipeline fingerprint (an upsert that was cut short)."""
        ...

    def search(self, dense: np.ndarray, sparse: tuple[list[int], list[float]], limit: int,
               document_ids: list[str] | None = None, dense_weight: float = 1.0) -> list[Hit]:
        """The top chunks by reciprocal rank fusion of the dense and the sparse ranking, the dense one
        weighted by `dense_weight` (the sparse one by 1)."""
        ...

    def count(self, document_id: str | None = None) -> int: ...

    def points(self) -> Iterator[IndexedChunk]:
        """Every chunk the store holds, with its vectors and payload, as written (docground/snapshots.py)."""
        ...

    def optimize(self) -> bool:
        """Build the vector index of segments that have grown big enough (True when anything changed)."""
        ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def _in_order(hits: list[Hit], limit: int) -> list[Hit]:
    """The first `limit`, best first, equal fused scores (frequent: ranks tie) by id, so the same query
    answers the same way on every run: the engine leaves the order of ties open, and which of a tie it
    keeps at the cut too (it is asked for TIE_SLACK more)."""
    return sorted(hits, key=lambda h: (-h.score, h.id))[:limit]


def _indexed(record) -> IndexedChunk:
    """A point read back (qdrant-edge's Record or qdrant-client's: the same fields) as it was written."""
    vectors = record.vector or {}
    sparse = vectors.get(SPARSE)
    return IndexedChunk(str(record.id), list(vectors[DENSE]),
                        (list(sparse.indices), list(sparse.values)) if sparse is not None else ([], []),
                        record.payload or {})


def _scrolled(page) -> Iterator[IndexedChunk]:
    """All points, page by page: `page(offset)` gives a page's records and the next page's offset (None: done)."""
    offset = None
    while True:
        records, offset = page(offset)
        yield from map(_indexed, records)
        if offset is None:
            return


def _version_filter(models, document_id: str, fingerprint: str, same: bool):
    """A document's chunks made by this pipeline fingerprint (same) or by any other; `models` is qdrant-edge
    or qdrant_client.models, whose filter types take the same keywords."""
    of_document = [models.FieldCondition(key="document_id", match=models.MatchValue(value=document_id))]
    version = [models.FieldCondition(key="fingerprint", match=models.MatchValue(value=fingerprint))]
    return models.Filter(must=of_document + version) if same else models.Filter(must=of_document, must_not=version)


def _stored_bytes(chunk: IndexedChunk) -> int:
    return len(json.dumps(chunk.payload)) + 8 * (len(chunk.dense) + len(chunk.sparse[0]))


def _cosine(query: np.ndarray, vector) -> float:
    if vector is None:
        return 0.0
    v = np.asarray(vector, dtype=np.float32)
    n = float(np.linalg.norm(v)) or 1.0
    return float(np.dot(query, v) / n)


class EdgeStore:
    def __init__(self, path: Path, dimension: int):
        import qdrant_edge as q

        self.q = q
        self._lock = threading.RLock()
        path.mkdir(parents=True, exist_ok=True)
        # A shard keeps the configuration it was created with: one made before quantization loads and is
        # searched as before (its HNSW, if optimized, over float vectors); only new shards get this one.
        config = q.EdgeConfig(
            vectors={DENSE: q.EdgeVectorParams(
                size=dimension, distance=q.Distance.Cosine,
                quantization_config=q.ScalarQuantizationConfig(type=q.ScalarType.Int8, quantile=QUANTILE,
                                                               always_ram=True))},
            sparse_vectors={SPARSE: q.EdgeSparseVectorParams(modifier=q.Modifier.Idf)},
            hnsw_config=q.HnswIndexConfig(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=FULL_SCAN_KB),
        )
        self.path = path
        has_data = any(path.iterdir())
        self.shard = q.EdgeShard.load(str(path)) if has_data else q.EdgeShard.create(str(path), config)
        # Ignored where a segment has no HNSW graph or no quantized vectors (searched exactly there).
        self._params = q.SearchParams(hnsw_ef=HNSW_EF, quantization=q.QuantizationSearchParams(
            rescore=True, oversampling=OVERSAMPLING))

    def _doc_filter(self, document_ids: list[str] | None):
        q = self.q
        if not document_ids:
            return None
        match = q.MatchValue(document_ids[0]) if len(document_ids) == 1 else q.MatchAny(document_ids)
        return q.Filter(must=[q.FieldCondition(key="document_id", match=match)])

    def upsert(self, chunks: list[IndexedChunk]) -> None:
        q = self.q
        points = [q.Point(c.id, {DENSE: c.dense, SPARSE: q.SparseVector(*c.sparse)}, c.payload) for c in chunks]
        require_room(self.path, STORE_ROOM_FLOOR + STORE_ROOM_FACTOR * sum(map(_stored_bytes, chunks)))
        with self._lock:
            for i in range(0, len(points), 256):
                self.shard.update(q.UpdateOperation.upsert_points(points[i:i + 256]))

    def delete_document(self, document_id: str) -> None:
        with self._lock:
            self.shard.update(self.q.UpdateOperation.delete_points_by_filter(self._doc_filter([document_id])))

    def delete_stale(self, document_id: str, fingerprint: str) -> None:
        self._delete(_version_filter(self.q, document_id, fingerprint, same=False))

    def delete_version(self, document_id: str, fingerprint: str) -> None:
        self._delete(_version_filter(self.q, document_id, fingerprint, same=True))

    def _delete(self, selection) -> None:
        with self._lock:
            self.shard.update(self.q.UpdateOperation.delete_points_by_filter(selection))

    def search(self, dense, sparse, limit, document_ids=None, dense_weight=1.0) -> list[Hit]:
        q = self.q
        depth = max(limit * PREFETCH_FACTOR, MIN_PREFETCH)
        flt = self._doc_filter(document_ids)
        prefetches = [q.Prefetch(limit=depth, query=q.Query.Nearest(dense.tolist(), using=DENSE), filter=flt,
                                 params=self._params)]
        if sparse[0]:
            prefetches.append(q.Prefetch(limit=depth, query=q.Query.Nearest(q.SparseVector(*bounded(sparse)),
                                                                            using=SPARSE), filter=flt))
        weights = [dense_weight, 1.0][:len(prefetches)]
        request = q.QueryRequest(limit=limit + TIE_SLACK, prefetches=prefetches,
                                 query=q.Fusion.Rrf(k=RRF_K, weights=weights), with_payload=True, with_vector=[DENSE])
        with self._lock:
            points = self.shard.query(request)
        return _in_order([Hit(str(p.id), float(p.score), _cosine(dense, (p.vector or {}).get(DENSE)), p.payload or {})
                          for p in points], limit)

    def count(self, document_id: str | None = None) -> int:
        with self._lock:
            return int(self.shard.count(self.q.CountRequest(filter=self._doc_filter(
                [document_id] if document_id else None))))

    def points(self) -> Iterator[IndexedChunk]:
        def page(offset):
            with self._lock:
                return self.shard.scroll(self.q.ScrollRequest(offset=offset, limit=SCROLL_PAGE, with_payload=True,
                                                              with_vector=True))

        return _scrolled(page)

    def optimize(self) -> bool:
        # Holds the GIL throughout (seconds per ten thousand new points): every other thread of the process
        # waits, so only a process that answers no queries should call it.
        with self._lock:
            return bool(self.shard.optimize())

    def flush(self) -> None:
        with self._lock:
            self.shard.flush()

    def close(self) -> None:
        with self._lock:
            self.shard.close()


class ServerStore:
    """A Qdrant server (or qdrant-client's local mode, which speaks the same API)."""

    def __init__(self, client, collection: str, dimension: int, kb: str | None = None):
        from qdrant_client import models

        self.m = models
        self.client = client
        self.collection = collection
        # With kb set, searches and counts see only points whose payload names this knowledge base (every
        # chunk's payload has carried its kb from the start): a collection that older versions shared
        # between colliding names (acme.eu, acme_eu) then still shows each kb only its own chunks.
        self.kb = kb
        if not client.collection_exists(collection):
            client.create_collection(
                collection,
                vectors_config={DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE)},
                sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            )
            client.create_payload_index(collection, "document_id", models.PayloadSchemaType.KEYWORD)
        if kb is not None and "kb" not in (client.get_collection(collection).payload_schema or {}):
            client.create_payload_index(collection, "kb", models.PayloadSchemaType.KEYWORD)

    def _doc_filter(self, document_ids: list[str] | None):
        m = self.m
        must = [m.FieldCondition(key="kb", match=m.MatchValue(value=self.kb))] if self.kb is not None else []
        if document_ids:
            must.append(m.FieldCondition(key="document_id", match=m.MatchAny(any=document_ids)))
        return m.Filter(must=must) if must else None

    def upsert(self, chunks: list[IndexedChunk]) -> None:
        m = self.m
        points = [m.PointStruct(id=c.id, vector={DENSE: c.dense, SPARSE: m.SparseVector(indices=c.sparse[0],
                                                                                      values=c.sparse[1])},
                                payload=c.payload) for c in chunks]
        for i in range(0, len(points), 256):
            self.client.upsert(self.collection, points[i:i + 256], wait=True)

    def delete_document(self, document_id: str) -> None:
        self.client.delete(self.collection, self.m.FilterSelector(filter=self._doc_filter([document_id])), wait=True)

    def delete_stale(self, document_id: str, fingerprint: str) -> None:
        self._delete(_version_filter(self.m, document_id, fingerprint, same=False))

    def delete_version(self, document_id: str, fingerprint: str) -> None:
        self._delete(_version_filter(self.m, document_id, fingerprint, same=True))

    def _delete(self, selection) -> None:
        self.client.delete(self.collection, self.m.FilterSelector(filter=selection), wait=True)

    def search(self, dense, sparse, limit, document_ids=None, dense_weight=1.0) -> list[Hit]:
        m = self.m
        depth = max(limit * PREFETCH_FACTOR, MIN_PREFETCH)
        flt = self._doc_filter(document_ids)
        prefetch = [m.Prefetch(query=dense.tolist(), using=DENSE, limit=depth, filter=flt)]
        if sparse[0]:
            ids, weights = bounded(sparse)
            prefetch.append(m.Prefetch(query=m.SparseVector(indices=ids, values=weights), using=SPARSE,
                                       limit=depth, filter=flt))
        fusion = m.RrfQuery(rrf=m.Rrf(k=RRF_K, weights=[dense_weight, 1.0][:len(prefetch)]))
        result = self.client.query_points(self.collection, prefetch=prefetch, query=fusion,
                                          limit=limit + TIE_SLACK, with_payload=True, with_vectors=[DENSE])
        return _in_order([Hit(str(p.id), float(p.score), _cosine(dense, (p.vector or {}).get(DENSE)), p.payload or {})
                          for p in result.points], limit)

    def count(self, document_id: str | None = None) -> int:
        flt = self._doc_filter([document_id] if document_id else None)
        return int(self.client.count(self.collection, count_filter=flt, exact=True).count)

    def points(self) -> Iterator[IndexedChunk]:
        return _scrolled(lambda offset: self.client.scroll(self.collection, scroll_filter=self._doc_filter(None),
                                                           limit=SCROLL_PAGE, offset=offset, with_payload=True,
                                                           with_vectors=True))

    def optimize(self) -> bool:
        return False  # a server runs its own optimizers

    def flush(self) -> None:
        return None  # the server persists on write

    def close(self) -> None:
        return None  # the client is shared across knowledge bases


_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]+")


def collection_name(kb: str) -> str:
    """The Qdrant collection of a knowledge base, one-to-one: two names never share a collection.

    Names of letters, digits, '_' and '-' read as they are after `docground_`; any other name goes under
    `docground-` (a prefix no such name can produce), '_' doubled and every other character written as
    `_xx` (two hex digits) or `_uxxxxxx`, so the name can be read back and `acme.eu` never meets `acme_eu`.
    """
    if _SAFE_NAME.fullmatch(kb):
        return "docground_" + kb  # the old mapping, unchanged for these names: their existing collections stay theirs
    escaped = "".join(c if c.isascii() and (c.isalnum() or c == "-") else "__" if c == "_"
                      else f"_{ord(c):02x}" if ord(c) < 0x100 else f"_u{ord(c):06x}" for c in kb)
    return "docground-" + escaped
