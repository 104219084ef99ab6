"""Errors people see: each has a stable machine-readable code and a human message."""

from __future__ import annotations


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
