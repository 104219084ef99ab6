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
import secrets
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
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from docground.errors import IdempotencyConflict, InvalidRequest, NotFound, is_out_of_space
from docground.webhooks import EVENTS, DocumentEvent

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
    # Webhooks (docground/webhooks.py): the URL told of every document that becomes ready or failed, and
    # the secret deliveries are signed with (kept as is: signing needs it; shown once, when rotated).
    callback_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret: Mapped[str | None] = mapped_column(String(64))


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


class WebhookDelivery(Base):
    """One event for one callback URL (docground/webhooks.py). `waiting`: an upload's callback, armed when
    its document next becomes ready or failed; `pending`: due at next_attempt_at (a claimed attempt moves
    it on by a lease); then `delivered` or `failed` (given up)."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kb: Mapped[str] = mapped_column(String(64), index=True)
    document_id: Mapped[str] = mapped_column(String(64), index=True)  # no foreign key: events outlive documents
    url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="waiting", index=True)
    event: Mapped[str | None] = mapped_column(String(32))
    payload: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TaskLease(Base):
    """A task a worker has in hand (a page batch, a document's fan-out or indexing), leased for a short
    time and renewed while it runs (workers/leases.py). A lease left to expire means its worker died: any
    sweeper claims it (one conditional UPDATE, so only one does) and sends the same task again. The row
    goes when the task returns, fails for good or is retried (a retry is a new message)."""

    __tablename__ = "task_leases"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the task's name and arguments
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    task: Mapped[str] = mapped_column(String(64))
    args: Mapped[str] = mapped_column(Text)  # the task's arguments, JSON
    queue: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str | None] = mapped_column(String(128))  # host:pid holding it; None: sent again, not taken yet
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    redispatches: Mapped[int] = mapped_column(Integer, default=0)
    # Times it expired while a worker held it (died, or killed at the hard time limit), not while a message sent
    # again waited in its queue: past DOCGROUND_LEASE_MAX_RESENDS its job fails instead of the task being resent.
    # Nullable: a registry made before it gains it empty (_add_missing_columns), read as 0.
    lost: Mapped[int | None] = mapped_column(Integer, default=0)


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
            jobs = select(Job.id).where(Job.document_id == document_id)
            s.execute(delete(TaskLease).where(TaskLease.job_id.in_(jobs)))
            for table in (Page, Job):
                s.execute(delete(table).where(table.document_id == document_id))
            s.execute(delete(IdempotencyKey).where(IdempotencyKey.document_id == document_id))
            s.execute(delete(WebhookDelivery).where(WebhookDelivery.document_id == document_id,
                                                    WebhookDelivery.status == "waiting"))
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
        False when the job was elsewhere (another process got there first, or it was deleted). A document
        that becomes ready or failed has its webhook events written in the same transaction."""
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
                if finished is not None:
                    _arm_webhooks(s, document_id)
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

    # ---- task leases (workers/leases.py)
    def take_lease(self, lease: TaskLease, lease_s: float) -> None:
        """Hold a task's lease (made, or taken over from a worker that died or a message sent again)."""
        lease.expires_at = _now() + timedelta(seconds=lease_s)
        values = {"owner": lease.owner, "expires_at": lease.expires_at, "queue": lease.queue}
        for _ in range(3):
            with self.session() as s, s.begin():
                if s.execute(update(TaskLease).where(TaskLease.key == lease.key).values(**values)).rowcount:
                    return
            try:
                with self.session() as s, s.begin():
                    s.add(lease)
                return
            except IntegrityError:  # another worker took it at the same moment: take it over
                continue

    def renew_leases(self, owner: str, keys: list[str], lease_s: float) -> int:
        """Move this owner's leases on; a lease another worker has taken over since stays theirs."""
        if not keys:
            return 0
        with self.session() as s, s.begin():
            return s.execute(update(TaskLease).where(TaskLease.key.in_(keys), TaskLease.owner == owner)
                             .values(expires_at=_now() + timedelta(seconds=lease_s))).rowcount

    def release_lease(self, key: str, owner: str | None) -> None:
        """The lease, if `owner` holds it (None: a claimed lease, its task not sent again)."""
        with self.session() as s, s.begin():
            s.execute(delete(TaskLease).where(TaskLease.key == key, TaskLease.owner == owner))

    def leased_keys(self, keys: list[str]) -> set[str]:
        """Which of these lease keys a lease is held under (taken, renewed or claimed for a resend)."""
        if not keys:
            return set()
        with self.session() as s:
            return set(s.scalars(select(TaskLease.key).where(TaskLease.key.in_(keys))))

    def leases(self, job_id: str | None = None) -> list[TaskLease]:
        query = select(TaskLease) if job_id is None else select(TaskLease).where(TaskLease.job_id == job_id)
        with self.session() as s:
            return list(s.scalars(query))

    def claim_expired_leases(self, hold_s: float, limit: int = 64) -> list[TaskLease]:
        """Expired leases of active jobs, each claimed by one conditional UPDATE (of two sweepers, one
        wins) and held `hold_s` for the task sent again; leases of finished or deleted jobs are dropped.
        A claimed lease's `lost` counts this expiry when a worker held it (its owner set)."""
        now = _now()
        claimed: list[TaskLease] = []
        with self.session() as s, s.begin():
            expired = list(s.scalars(select(TaskLease).where(TaskLease.expires_at < now)
                                     .order_by(TaskLease.expires_at).limit(limit)))
            if not expired:
                return claimed
            stages = dict(s.execute(select(Job.id, Job.stage).where(Job.id.in_({e.job_id for e in expired}))).all())
        for lease in expired:
            with self.session() as s, s.begin():
                if stages.get(lease.job_id) not in ACTIVE_STAGES:
                    s.execute(delete(TaskLease).where(TaskLease.key == lease.key, TaskLease.expires_at < now))
                    continue
                held = 1 if lease.owner is not None else 0
                if s.execute(update(TaskLease).where(TaskLease.key == lease.key, TaskLease.expires_at < now)
                             .values(owner=None, expires_at=now + timedelta(seconds=hold_s),
                                     redispatches=TaskLease.redispatches + 1,
                                     lost=func.coalesce(TaskLease.lost, 0) + held)).rowcount:
                    lease.lost = (lease.lost or 0) + held
                    claimed.append(lease)
        return claimed

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


    # ---- webhooks (docground/webhooks.py)
    def set_callback_url(self, kb: str, url: str | None) -> None:
        with self.session() as s, s.begin():
            if not s.execute(update(KnowledgeBase).where(KnowledgeBase.name == kb).values(callback_url=url)).rowcount:
                raise NotFound(f"knowledge base {kb!r} does not exist")

    def rotate_webhook_secret(self, kb: str) -> str:
        """A new secret for the knowledge base's webhooks; attempts from now on are signed with it."""
        secret = _new_webhook_secret()
        with self.session() as s, s.begin():
            if not s.execute(update(KnowledgeBase).where(KnowledgeBase.name == kb)
                             .values(webhook_secret=secret)).rowcount:
                raise NotFound(f"knowledge base {kb!r} does not exist")
        return secret

    def webhook_secret(self, kb: str) -> str:
        """The knowledge base's webhook secret, made when first needed."""
        with self.session() as s, s.begin():
            s.execute(update(KnowledgeBase).where(KnowledgeBase.name == kb, KnowledgeBase.webhook_secret.is_(None))
                      .values(webhook_secret=_new_webhook_secret()))
            secret = s.scalar(select(KnowledgeBase.webhook_secret).where(KnowledgeBase.name == kb))
        if secret is None:
            raise NotFound(f"knowledge base {kb!r} does not exist")
        return secret

    def subscribe(self, document_id: str, url: str) -> None:
        """Tell `url` when the document next becomes ready or failed; at once if it is ready or failed now."""
        with self.session() as s, s.begin():
            # Write first: it locks the document's row (or the database), so an advance() running now
            # either sees this subscription or has finished before the status below is read.
            s.execute(update(Document).where(Document.id == document_id).values(updated_at=_now()))
            doc = s.get(Document, document_id, populate_existing=True)
            if doc is None:
                raise NotFound(f"document {document_id!r} does not exist")
            known = s.scalar(select(WebhookDelivery.id).where(WebhookDelivery.document_id == document_id,
                                                              WebhookDelivery.status == "waiting",
                                                              WebhookDelivery.url == url))
            if known is not None:
                return
            delivery = WebhookDelivery(id=uuid.uuid4().hex, kb=doc.kb, document_id=doc.id, url=url, status="waiting")
            s.add(delivery)
            if doc.status in EVENTS:
                _arm(delivery, doc)

    def deliveries(self, document_id: str) -> list[WebhookDelivery]:
        with self.session() as s:
            return list(s.scalars(select(WebhookDelivery).where(WebhookDelivery.document_id == document_id)
                                  .order_by(WebhookDelivery.created_at)))

    def claim_delivery(self, lease_s: float) -> WebhookDelivery | None:
        """A due delivery, claimed for one attempt: its next attempt moves `lease_s` ahead (so no other
        sender takes it meanwhile, and one that dies holding it leaves it due again) and it counts it."""
        now = _now()
        with self.session() as s, s.begin():
            due = list(s.scalars(select(WebhookDelivery.id).where(
                WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
            ).order_by(WebhookDelivery.next_attempt_at).limit(8)))
            for delivery_id in due:
                if s.execute(update(WebhookDelivery).where(
                        WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending",
                        WebhookDelivery.next_attempt_at <= now,
                ).values(next_attempt_at=now + timedelta(seconds=lease_s),
                         attempts=WebhookDelivery.attempts + 1)).rowcount:
                    return s.get(WebhookDelivery, delivery_id, populate_existing=True)
        return None

    def finish_delivery(self, delivery_id: str, delivered: bool, status_code: int | None, error: str | None,
                        retry_in_s: float | None, max_attempts: int) -> None:
        """Record an attempt: delivered, due again in `retry_in_s`, or given up (None, or no attempts left)."""
        now = _now()
        with self.session() as s, s.begin():
            row = s.get(WebhookDelivery, delivery_id)
            if row is None:
                return
            row.last_status_code, row.last_error = status_code, error
            if delivered or retry_in_s is None or row.attempts >= max_attempts:
                row.status, row.finished_at = ("delivered" if delivered else "failed"), now
            else:
                row.next_attempt_at = now + timedelta(seconds=retry_in_s)

    def prune_deliveries(self, older_than_s: float) -> None:
        with self.session() as s, s.begin():
            s.execute(delete(WebhookDelivery).where(WebhookDelivery.status.in_(("delivered", "failed")),
                                                    WebhookDelivery.finished_at < stale_before(older_than_s)))


def _new_webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def _arm_webhooks(s: Session, document_id: str) -> None:
    """The document just became ready or failed: arm its uploads' callbacks and add its knowledge base's."""
    doc = s.get(Document, document_id, populate_existing=True)
    if doc is None or doc.status not in EVENTS:
        return
    waiting = list(s.scalars(select(WebhookDelivery).where(WebhookDelivery.document_id == document_id,
                                                           WebhookDelivery.status == "waiting")))
    kb_url = s.scalar(select(KnowledgeBase.callback_url).where(KnowledgeBase.name == doc.kb))
    if kb_url and kb_url not in {w.url for w in waiting}:
        waiting.append(WebhookDelivery(id=uuid.uuid4().hex, kb=doc.kb, document_id=doc.id, url=kb_url))
        s.add(waiting[-1])
    for delivery in waiting:
        _arm(delivery, doc)


def _arm(delivery: WebhookDelivery, doc: Document) -> None:
    delivery.event = EVENTS[doc.status]
    delivery.payload = DocumentEvent(
        id=delivery.id, event=delivery.event, kb=doc.kb, document_id=doc.id, filename=doc.filename,
        status=doc.status, pages=doc.pages_total, chunks=doc.chunks, error=doc.error, error_code=doc.error_code,
        timestamp=_now(),
    ).model_dump_json()
    delivery.status, delivery.next_attempt_at = "pending", _now()


def stale_before(seconds: float) -> datetime:
    return _now() - timedelta(seconds=seconds)


def is_unreachable(exc: BaseException) -> bool:
    """Whether the registry's database could not be reached or was busy (a server restarting, a dropped
    connection, SQLite locked): worth trying again, not a reason to fail a document. A full disk is not."""
    return isinstance(exc, OperationalError) and not is_out_of_space(exc)


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
