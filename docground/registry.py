"""The durable registry: knowledge bases, documents, their pages and ingestion jobs, with status and reasons.

SQLite under the data directory by default, PostgreSQL (or any SQLAlchemy URL) when configured.

The registry, not the task queue, is the source of truth for ingestion: every parsed page is stored here
(its layout included) in the same transaction that marks it done, and a job's stage says what is left.
A lost or repeated task message can therefore only repeat work, never lose or duplicate it: page
results are first-writer-wins, and every state change is one atomic conditional UPDATE (no
read-modify-write races between worker processes, on SQLite or PostgreSQL).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    delete,
    event,
    func,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from docground.errors import IdempotencyConflict, InvalidRequest

KB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validate_kb_name(name: str) -> str:
    if not KB_NAME.match(name or ""):
        raise InvalidRequest(
            "knowledge base names are 1-64 characters: letters, digits, '_', '-', '.', starting with a letter or digit"
        )
    return name


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class KnowledgeBase(Base):
    __tablename__ = "knowledge_bases"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_key_hash: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Document(Base):
    __tablename__ = "documents"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kb: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.name"), index=True)
    filename: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="")
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    pages_total: Mapped[int] = mapped_column(Integer, default=0)
    pages_done: Mapped[int] = mapped_column(Integer, default=0)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    fingerprint: Mapped[str] = mapped_column(String(32), default="")
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)


class Page(Base):
    __tablename__ = "pages"
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    page: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    engine: Mapped[str | None] = mapped_column(String(32))
    engine_version: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    blocks: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    # The pipeline fingerprint the page was parsed for, and the page's layout (PageLayout JSON): a job
    # resumes from the pages already parsed for its fingerprint.
    fingerprint: Mapped[str | None] = mapped_column(String(32))
    layout: Mapped[str | None] = mapped_column(Text, deferred=True)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)


# A job's stages, in order. "indexable": chunks are embedded and wait for the process that owns an
# embedded store to write them (see docground/service.py: Docground.finalize).
JOB_STAGES = ("queued", "parsing", "indexing", "indexable", "done", "failed")
ACTIVE_STAGES = ("queued", "parsing", "indexing", "indexable")
DOCUMENT_STATUS = {"queued": "queued", "parsing": "processing", "indexing": "processing",
                   "indexable": "processing", "done": "ready", "failed": "failed"}


class Job(Base):
    """One ingestion run of a document for one pipeline fingerprint."""

    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    kb: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(32))
    stage: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    dispatches: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdempotencyKey(Base):
    """An upload's Idempotency-Key within its knowledge base, and the document it created."""

    __tablename__ = "idempotency_keys"
    kb: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    document_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Registration:
    """What registering an upload found or made: the document, and the job to run (None: nothing to do)."""

    def __init__(self, document: Document, job: Job | None, created: bool):
        self.document = document
        self.job = job
        self.created = created  # a new job was made (False: an active job or a ready document was found)


class Registry:
    def __init__(self, url: str):
        connect_args = {"check_same_thread": False, "timeout": 30} if url.startswith("sqlite") else {}
        self.engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        _add_missing_columns(self.engine)
        _drop_retired_columns(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        return self.sessions()

    def ensure_kb(self, name: str) -> KnowledgeBase:
        validate_kb_name(name)
        with self.session() as s, s.begin():
            kb = s.get(KnowledgeBase, name)
            if kb is None:
                kb = KnowledgeBase(name=name)
                s.add(kb)
            return kb

    def get_kb(self, name: str) -> KnowledgeBase | None:
        with self.session() as s:
            return s.get(KnowledgeBase, name)

    def document(self, document_id: str) -> Document | None:
        with self.session() as s:
            return s.get(Document, document_id)

    def documents(self, kb: str) -> list[Document]:
        with self.session() as s:
            return list(s.scalars(select(Document).where(Document.kb == kb).order_by(Document.created_at)))

    def pages(self, document_id: str) -> list[Page]:
        with self.session() as s:
            return list(s.scalars(select(Page).where(Page.document_id == document_id).order_by(Page.page)))

    def upsert_document(self, doc: Document) -> Document:
        with self.session() as s, s.begin():
            return s.merge(doc)

    def save_pages(self, pages: list[Page]) -> None:
        with self.session() as s, s.begin():
            for p in pages:
                s.merge(p)

    def delete_document(self, document_id: str) -> None:
        with self.session() as s, s.begin():
            for table in (Page, Job):
                s.execute(delete(table).where(table.document_id == document_id))
            s.execute(delete(IdempotencyKey).where(IdempotencyKey.document_id == document_id))
            s.execute(delete(Document).where(Document.id == document_id))

    # ---- jobs: one ingestion run of a document
    def register(self, doc: Document, fingerprint: str) -> Registration:
        """Register an upload: a ready document of this fingerprint or its active job is returned as
        is (so concurrent uploads of one file share one job); otherwise a new job starts, keeping the
        pages already parsed for this fingerprint and dropping those of any other."""
        for attempt in range(3):
            try:
                return self._register(doc, fingerprint)
            except IntegrityError:  # a concurrent upload of the same file inserted it first
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _register(self, doc: Document, fingerprint: str) -> Registration:
        with self.session() as s, s.begin():
            # Write first: it locks the document's row (PostgreSQL) or the database (SQLite) before the
            # reads, so two registrations of one file never both start a job.
            s.execute(update(Document).where(Document.id == doc.id).values(updated_at=_now()))
            existing = s.get(Document, doc.id, populate_existing=True)
            if existing is not None and existing.status == "ready" and existing.fingerprint == fingerprint:
                return Registration(existing, None, False)
            active = s.scalars(select(Job).where(Job.document_id == doc.id, Job.fingerprint == fingerprint,
                                                 Job.stage.in_(ACTIVE_STAGES))
                               .order_by(Job.created_at.desc())).first()
            if existing is not None and active is not None:
                return Registration(existing, active, False)
            s.execute(update(Job).where(Job.document_id == doc.id, Job.stage.in_(ACTIVE_STAGES))
                      .values(stage="failed", error="superseded by a job for another pipeline", finished_at=_now()))
            s.execute(delete(Page).where(Page.document_id == doc.id,
                                         or_(Page.fingerprint.is_(None), Page.fingerprint != fingerprint)))
            done = s.scalar(select(func.count()).select_from(Page).where(
                Page.document_id == doc.id, Page.status == "done", Page.fingerprint == fingerprint)) or 0
            if existing is None:
                doc.status, doc.pages_done, doc.chunks = "queued", done, 0
                s.add(doc)
                s.flush()
            else:
                for key in ("filename", "kind", "size_bytes", "pages_total"):
                    setattr(existing, key, getattr(doc, key))
                existing.status, existing.pages_done, existing.error, existing.error_code = "queued", done, None, None
                doc = existing
            job = Job(id=uuid.uuid4().hex, document_id=doc.id, kb=doc.kb, fingerprint=fingerprint, stage="queued")
            s.add(job)
            return Registration(doc, job, True)

    def job(self, job_id: str) -> Job | None:
        with self.session() as s:
            return s.get(Job, job_id)

    def latest_job(self, document_id: str) -> Job | None:
        with self.session() as s:
            return s.scalars(select(Job).where(Job.document_id == document_id)
                             .order_by(Job.created_at.desc())).first()

    def jobs(self, stages: tuple[str, ...], heartbeat_before: datetime | None = None) -> list[Job]:
        """Jobs in these stages (optionally only those silent since a moment), oldest first."""
        query = select(Job).where(Job.stage.in_(stages))
        if heartbeat_before is not None:
            query = query.where(Job.heartbeat_at < heartbeat_before)
        with self.session() as s:
            return list(s.scalars(query.order_by(Job.created_at)))

    def advance(self, job_id: str, to: str, from_stages: tuple[str, ...] | None = None, **document_fields) -> bool:
        """Move a job to a stage (only from the given ones) and its document to the matching status;
        False when the job was elsewhere (another process got there first, or it was deleted)."""
        from_stages = from_stages or tuple(st for st in ACTIVE_STAGES if st != to)
        finished = _now() if to in ("done", "failed") else None
        with self.session() as s, s.begin():
            moved = s.execute(update(Job).where(Job.id == job_id, Job.stage.in_(from_stages))
                              .values(stage=to, heartbeat_at=_now(), finished_at=finished,
                                      error=document_fields.get("error"))).rowcount
            if moved:
                document_id = s.scalar(select(Job.document_id).where(Job.id == job_id))
                s.execute(update(Document).where(Document.id == document_id)
                          .values(status=DOCUMENT_STATUS[to], **document_fields))
            return bool(moved)

    def heartbeat(self, job_id: str, dispatched: bool = False) -> None:
        values = {"heartbeat_at": _now()}
        if dispatched:
            values["dispatches"] = Job.dispatches + 1
        with self.session() as s, s.begin():
            s.execute(update(Job).where(Job.id == job_id).values(**values))

    # ---- pages of a job
    def pending_pages(self, document_id: str, fingerprint: str, pages_total: int) -> list[int]:
        with self.session() as s:
            done = set(s.scalars(select(Page.page).where(Page.document_id == document_id, Page.status == "done",
                                                         Page.fingerprint == fingerprint)))
        return [n for n in range(1, pages_total + 1) if n not in done]

    def complete_pages(self, document_id: str, fingerprint: str, pages: list[Page]) -> int:
        """Store parsed pages (first writer wins: a page already done stays as it is) and return how
        many of the document's pages are done. The count runs in its own transaction after the
        write commits, so of two workers finishing the last pages at once, the later one sees all."""
        with self.session() as s, s.begin():
            numbers = [p.page for p in pages]
            done = set(s.scalars(select(Page.page).where(Page.document_id == document_id, Page.page.in_(numbers),
                                                         Page.status == "done", Page.fingerprint == fingerprint)))
            for p in pages:
                if p.page not in done:
                    p.document_id, p.fingerprint, p.status = document_id, fingerprint, "done"
                    s.merge(p)
        with self.session() as s, s.begin():
            count = select(func.count()).select_from(Page).where(
                Page.document_id == document_id, Page.status == "done", Page.fingerprint == fingerprint
            ).scalar_subquery()
            s.execute(update(Document).where(Document.id == document_id)
                      .values(pages_done=func.max(Document.pages_done, count) if _is_sqlite(s) else
                              func.greatest(Document.pages_done, count)))
            return s.scalar(select(func.count()).select_from(Page).where(
                Page.document_id == document_id, Page.status == "done", Page.fingerprint == fingerprint)) or 0

    def page_layouts(self, document_id: str, fingerprint: str) -> list[str]:
        """The stored layouts (PageLayout JSON) of the document's pages done for this fingerprint, in order."""
        with self.session() as s:
            return list(s.scalars(select(Page.layout).where(
                Page.document_id == document_id, Page.status == "done", Page.fingerprint == fingerprint,
            ).order_by(Page.page)))

    # ---- idempotency keys
    def idempotent_document(self, kb: str, key: str, sha256: str) -> str | None:
        """The document an earlier upload with this key created; the same key with other content is an error."""
        with self.session() as s:
            row = s.get(IdempotencyKey, (kb, key))
        if row is None:
            return None
        if row.sha256 != sha256:
            raise IdempotencyConflict(f"the Idempotency-Key {key!r} was used for a different file in {kb!r}")
        return row.document_id

    def remember_idempotency_key(self, kb: str, key: str, sha256: str, document_id: str) -> None:
        try:
            with self.session() as s, s.begin():
                if s.get(IdempotencyKey, (kb, key)) is None:
                    s.add(IdempotencyKey(kb=kb, key=key, sha256=sha256, document_id=document_id))
        except IntegrityError:  # a concurrent request with the same key stored it first
            self.idempotent_document(kb, key, sha256)


def stale_before(seconds: float) -> datetime:
    return _now() - timedelta(seconds=seconds)


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _add_missing_columns(engine) -> None:
    """Registries made by an older docground lack newer columns: add them (all are nullable or defaulted)."""
    inspector = inspect(engine)
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present:
                    kind = column.type.compile(dialect=engine.dialect)
                    conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))


# Columns older registries have and nothing writes any more: pages.attempts (NOT NULL, so new rows would
# fail to insert) and pages.meta were never used; they are dropped when such a registry is opened.
RETIRED_COLUMNS = {"pages": ("attempts", "meta")}


def _drop_retired_columns(engine) -> None:
    inspector = inspect(engine)
    with engine.begin() as conn:
        for table, columns in RETIRED_COLUMNS.items():
            present = {c["name"] for c in inspector.get_columns(table)}
            for column in columns:
                if column in present:
                    conn.execute(text(f'ALTER TABLE {table} DROP COLUMN "{column}"'))


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
