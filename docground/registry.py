"""The durable registry: knowledge bases, documents and their pages, with status and reasons.

SQLite under the data directory by default, PostgreSQL (or any SQLAlchemy URL) when configured.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, create_engine, event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from .errors import InvalidRequest

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
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict | None] = mapped_column(JSON)


class Registry:
    def __init__(self, url: str):
        connect_args = {"check_same_thread": False, "timeout": 30} if url.startswith("sqlite") else {}
        self.engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
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

    def update_document(self, document_id: str, **fields) -> Document:
        with self.session() as s, s.begin():
            doc = s.get(Document, document_id)
            for k, v in fields.items():
                setattr(doc, k, v)
            return doc

    def upsert_document(self, doc: Document) -> Document:
        with self.session() as s, s.begin():
            return s.merge(doc)

    def save_pages(self, pages: list[Page]) -> None:
        with self.session() as s, s.begin():
            for p in pages:
                s.merge(p)

    def delete_document(self, document_id: str) -> None:
        with self.session() as s, s.begin():
            for p in s.scalars(select(Page).where(Page.document_id == document_id)):
                s.delete(p)
            doc = s.get(Document, document_id)
            if doc is not None:
                s.delete(doc)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
