"""The webhook docground sends, declared in the OpenAPI schema's `webhooks` (OpenAPI 3.1), so generated
clients get the event's type: what a receiver of a `callback_url` is POSTed (docground/webhooks.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Header

from docground.webhooks import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER

from ..models import DocumentEvent


def declare(app: FastAPI) -> None:
    @app.webhooks.post("document-event", operation_id="document_event")
    def document_event(
        event: DocumentEvent,
        signature: Annotated[str, Header(alias=SIGNATURE_HEADER, description=(
            "t=<unix seconds>,v1=<hex HMAC-SHA256 of f\"{t}.\" + the raw body, keyed with the knowledge "
            "base's webhook secret>; refuse a t far from now (replays)"))],
        event_name: Annotated[str, Header(alias=EVENT_HEADER, description="document.ready or document.failed")],
        delivery: Annotated[str, Header(alias=DELIVERY_HEADER, description="the event's id, as in the body")],
    ) -> None:
        """POSTed to a callback URL when a document becomes ready or failed. Answer 2xx within
        DOCGROUND_WEBHOOK_TIMEOUT_S; anything else (or no answer) is retried with exponential backoff.
        Delivery is at least once: deduplicate by `id`."""
