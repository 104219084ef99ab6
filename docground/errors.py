"""Errors people see: each has a stable machine-readable code and a human message."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager


class DocgroundError(Exception):
    code = "error"
    http_status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class UnsupportedFileType(DocgroundError):
    code = "unsupported_file_type"
    http_status = 415


class EmptyFile(DocgroundError):
    code = "empty_file"


class CorruptFile(DocgroundError):
    code = "corrupt_file"
    http_status = 422


class EncryptedFile(DocgroundError):
    code = "encrypted_file"
    http_status = 422


class TooManyPages(DocgroundError):
    code = "too_many_pages"
    http_status = 413


class ImageTooLarge(DocgroundError):
    code = "image_too_large"
    http_status = 413


class UnpackedTooLarge(DocgroundError):
    """An Office package (a ZIP: DOCX, XLSX, ODT, ...) that unpacks to more than the limit: a ZIP bomb."""

    code = "unpacked_too_large"
    http_status = 413


class ConversionFailed(DocgroundError):
    """LibreOffice could not make a PDF of a document within its time and memory limits."""

    code = "conversion_failed"
    http_status = 422


class ConverterUnavailable(DocgroundError):
    """Office, web and text documents need LibreOffice (or the module of it for this kind), not installed here."""

    code = "converter_unavailable"
    http_status = 503


class NotFound(DocgroundError):
    code = "not_found"
    http_status = 404


class InvalidRequest(DocgroundError):
    code = "invalid_request"
    http_status = 422


class InvalidCallbackUrl(DocgroundError):
    """A webhook callback URL that is not http(s), or that is or resolves to a non-public address."""

    code = "invalid_callback_url"
    http_status = 422


class PageTimeout(DocgroundError):
    code = "page_timeout"
    http_status = 422


class TaskGivenUp(DocgroundError):
    """A task whose worker went silent (died, or passed the hard time limit) more often than
    DOCGROUND_LEASE_MAX_RESENDS allows: its document fails rather than being resent forever."""
    code = "task_given_up"
    http_status = 500


class PageUnreadable(DocgroundError):
    code = "page_unreadable"
    http_status = 422


class NoReadablePages(DocgroundError):
    code = "no_readable_pages"
    http_status = 422


class StoreBusy(DocgroundError):
    code = "store_busy"
    http_status = 409


class PipelineMismatch(DocgroundError):
    code = "pipeline_mismatch"
    http_status = 500


class DocumentNotReady(DocgroundError):
    code = "document_not_ready"
    http_status = 409


class OcrUnavailable(DocgroundError):
    """The configured DeepSeek-OCR-2 backend cannot run here (a missing package, model directory or GPU)."""

    code = "ocr_unavailable"
    http_status = 503


class LLMNotConfigured(DocgroundError):
    code = "llm_not_configured"
    http_status = 400


class LLMUnavailable(DocgroundError):
    code = "llm_unavailable"
    http_status = 502


class IdempotencyConflict(DocgroundError):
    code = "idempotency_conflict"
    http_status = 409


class Unauthorized(DocgroundError):
    code = "unauthorized"
    http_status = 401


class Forbidden(DocgroundError):
    code = "forbidden"
    http_status = 403


class RateLimited(DocgroundError):
    code = "rate_limited"
    http_status = 429


class PayloadTooLarge(DocgroundError):
    code = "payload_too_large"
    http_status = 413


class AlreadyExists(DocgroundError):
    code = "already_exists"
    http_status = 409


class InvalidSnapshot(DocgroundError):
    """A file given to `docground snapshot restore` that is not a snapshot docground wrote (docground/snapshots.py)."""

    code = "invalid_snapshot"
    http_status = 422


class SnapshotMismatch(DocgroundError):
    """A snapshot whose vectors or chunks were made by another embedding model or pipeline than this home's."""

    code = "snapshot_mismatch"
    http_status = 409


class NoSpace(DocgroundError):
    """The data directory's filesystem is full (ENOSPC) or its quota is spent (EDQUOT)."""

    code = "no_space"
    http_status = 507

    def __init__(self, message: str = "no space left on the data directory's disk (DOCGROUND_HOME): free some "
                                      "space there and try again"):
        super().__init__(message)


NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
SQLITE_FULL = 13  # SQLite's "database or disk is full": how ENOSPC reaches the registry's writes


def is_out_of_space(exc: BaseException) -> bool:
    """Whether the error, or one it was raised from (SQLAlchemy wraps sqlite3's), is a full disk or quota."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, NoSpace) or (isinstance(seen, OSError) and seen.errno in NO_SPACE_ERRNOS):
            return True
        if getattr(seen, "sqlite_errorcode", None) == SQLITE_FULL:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextmanager
def no_space_as_error() -> Iterator[None]:
    """Writes to the data directory within: running out of space there raises NoSpace (507), not an internal error."""
    try:
        yield
    except NoSpace:
        raise
    except Exception as exc:
        if is_out_of_space(exc):
            raise NoSpace() from exc
        raise
