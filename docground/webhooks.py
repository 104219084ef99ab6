"""Signed webhooks: a callback URL (a knowledge base's, or an upload's) is POSTed when a document becomes
`ready` or `failed`.

Outbox. The event is written to the registry (`webhook_deliveries`) in the transaction that makes the
document ready or failed (registry.py: Registry.advance), whichever process does that (a thread of the
API, a Celery worker), so no event is lost to a crash. `WebhookSender` threads (in `docground serve`)
claim due deliveries, each with one conditional UPDATE (so two processes never send one attempt), POST
them and record the outcome; a failed attempt is retried with exponential backoff, up to
DOCGROUND_WEBHOOK_MAX_ATTEMPTS. A restarted server resumes what was pending, and ingestion never waits
on a receiver. Delivery is at least once: receivers deduplicate by the event's `id`.

Signature. `X-Docground-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of f"{t}." + body>`, keyed with
the knowledge base's webhook secret (README: "Webhooks" shows how to check it). Every attempt is signed
when it is sent, with the secret current then.

Addresses. Only http(s) URLs. Hosts that are, or resolve to, anything but public unicast addresses
(private, loopback, link-local, shared, reserved, multicast) are refused when the URL is set and again
before every attempt, and the attempt connects to the address just checked, so a DNS server cannot
answer a second lookup differently (DNS rebinding). DOCGROUND_WEBHOOK_ALLOW_PRIVATE turns this off.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import random
import re
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, Field

from . import __version__
from .errors import InvalidCallbackUrl

if TYPE_CHECKING:
    from .registry import Registry, WebhookDelivery
    from .settings import Settings

log = logging.getLogger("docground.webhooks")

SIGNATURE_HEADER = "X-Docground-Signature"
EVENT_HEADER = "X-Docground-Event"
DELIVERY_HEADER = "X-Docground-Delivery"
EVENTS = {"ready": "document.ready", "failed": "document.failed"}
MAX_URL_CHARS = 2048
# What the schema declares and check_callback_url enforces first: http(s), a host, no spaces, no user:pass@.
CALLBACK_URL_PATTERN = r"^https?://[^\s/?#@]+(?:[/?#]\S*)?$"
_CALLBACK_URL = re.compile(CALLBACK_URL_PATTERN)
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
SENDER_THREADS = 2
POLL_S = 0.5
KEEP_DELIVERIES_S = 30 * 24 * 3600  # delivered or given-up deliveries are pruned after this


class DocumentEvent(BaseModel):
    """The body of a webhook: what happened to which document. The same bytes on every attempt."""

    id: str = Field(description="the delivery's id, the same on every attempt: deduplicate by it")
    event: Literal["document.ready", "document.failed"]
    kb: str
    document_id: str
    filename: str
    status: Literal["ready", "failed"]
    pages: int
    chunks: int
    error: str | None = Field(None, description="why the document failed")
    error_code: str | None = Field(None, description="the error's stable code (README: \"Error codes\")")
    timestamp: datetime = Field(description="when the document became ready or failed (UTC)")


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The X-Docground-Signature value of a body sent at `timestamp` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A global unicast address; IPv6 forms that carry an IPv4 address (mapped, 6to4, Teredo) are judged by it."""
    if isinstance(ip, ipaddress.IPv6Address):
        carried = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if carried is not None and not is_public(carried):
            return False
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> list[str]:
    """The addresses a host resolves to (an IP literal: itself); OSError when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:
        raise OSError(str(exc)) from exc
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))


def refused_address(addresses: list[str]) -> str | None:
    """The first address a callback may not reach, if any (all must be public: a rebinding DNS server may
    answer a public address first and a private one second)."""
    return next((a for a in addresses if not is_public(ipaddress.ip_address(a))), None)


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii").rstrip(".")
    except UnicodeError:
        return False
    return 0 < len(ascii_host) <= 253 and all(_LABEL.match(label) for label in ascii_host.split("."))


def check_callback_url(url: str, allow_private: bool) -> str:
    """The URL if a callback may go there; InvalidCallbackUrl (422) saying why not."""
    if len(url) > MAX_URL_CHARS or not _CALLBACK_URL.match(url):
        raise InvalidCallbackUrl(
            f"callback_url must be an http:// or https:// URL with a host, at most {MAX_URL_CHARS} characters, "
            f"without spaces or user:password@ (got {url[:100]!r})")
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InvalidCallbackUrl(f"callback_url has an invalid port: {url[:100]!r}") from None
    host = parts.hostname or ""
    if not _valid_host(host):
        raise InvalidCallbackUrl(f"callback_url has an invalid host name: {host[:100]!r}")
    if allow_private:
        return url
    try:
        addresses = resolve(host, port)
    except OSError as exc:
        raise InvalidCallbackUrl(f"callback_url host {host!r} does not resolve ({exc})") from None
    bad = refused_address(addresses)
    if bad is not None:
        raise InvalidCallbackUrl(
            f"callback_url host {host!r} is or resolves to {bad}, a private, loopback, link-local or reserved "
            "address: callbacks go only to public addresses (the operator may allow others with "
            "DOCGROUND_WEBHOOK_ALLOW_PRIVATE=true)")
    return url


@dataclass(frozen=True)
class Attempt:
    """What one attempt came to: delivered, to be retried, or given up at once (`final`)."""

    delivered: bool
    status_code: int | None = None
    error: str | None = None
    final: bool = False


class WebhookSender:
    """Threads that send due deliveries from the registry; any number of processes may run them."""

    def __init__(self, registry: Registry, settings: Settings, threads: int = SENDER_THREADS):
        self.registry = registry
        self.settings = settings
        self.stop = threading.Event()
        # No kept-alive connections: a connection made for one host name must not carry another's request
        # (attempts connect to checked addresses, and two hosts may share one).
        self.http = httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False, trust_env=False,
                                 limits=httpx.Limits(max_keepalive_connections=0))
        self._threads = [threading.Thread(target=self._loop, name=f"docground-webhooks-{i}", daemon=True)
                         for i in range(threads)]
        self._next_prune = 0.0

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop after the attempts in hand; what is still due is sent by the next process that runs senders."""
        self.stop.set()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            if t.is_alive():
                t.join(max(0.0, deadline - time.monotonic()))
        self.http.close()

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                if not self.send_one():
                    self._prune()
                    self.stop.wait(POLL_S)
            except Exception:  # a registry hiccup: try again after a pause
                log.exception("webhook sender")
                self.stop.wait(POLL_S * 4)

    def send_one(self) -> bool:
        """Claim one due delivery, attempt it and record the outcome; False when none is due."""
        lease_s = self.settings.webhook_timeout_s + 60.0
        delivery = self.registry.claim_delivery(lease_s)
        if delivery is None:
            return False
        outcome = self.attempt(delivery)
        retry_in = None if outcome.delivered or outcome.final else self.backoff(delivery.attempts)
        if not outcome.delivered:
            log.warning("webhook %s to %s, attempt %d: %s", delivery.id, delivery.url, delivery.attempts,
                        outcome.error)
        self.registry.finish_delivery(delivery.id, outcome.delivered, outcome.status_code, outcome.error, retry_in,
                                      self.settings.webhook_max_attempts)
        return True

    def backoff(self, attempts: int) -> float:
        """Seconds before the next attempt after `attempts` failed ones: doubling, capped, ±10 % jitter."""
        s = self.settings
        return min(s.webhook_backoff_s * 2 ** max(0, attempts - 1), s.webhook_backoff_max_s) * random.uniform(0.9, 1.1)

    def attempt(self, delivery: WebhookDelivery) -> Attempt:
        body = delivery.payload.encode()
        url = httpx.URL(delivery.url)
        headers = {"Content-Type": "application/json", "User-Agent": f"docground/{__version__}",
                   EVENT_HEADER: delivery.event, DELIVERY_HEADER: delivery.id}
        extensions: dict = {}
        if not self.settings.webhook_allow_private:
            host = url.host
            try:
                addresses = resolve(host, url.port or (443 if url.scheme == "https" else 80))
            except OSError as exc:
                return Attempt(False, error=f"{host} does not resolve ({exc})")
            bad = refused_address(addresses)
            if bad is not None:
                return Attempt(False, error=f"refused: {host} resolves to {bad}, not a public address", final=True)
            # Connect to the address just checked; the request still names the host (Host header, TLS SNI
            # and certificate check).
            headers["Host"] = url.netloc.decode("ascii")
            if url.scheme == "https":
                extensions["sni_hostname"] = host
            url = url.copy_with(host=addresses[0])
        headers[SIGNATURE_HEADER] = sign(self.registry.webhook_secret(delivery.kb), body, int(time.time()))
        try:
            r = self.http.post(url, content=body, headers=headers, extensions=extensions)
        except httpx.HTTPError as exc:
            return Attempt(False, error=f"{type(exc).__name__}: {exc}"[:500])
        if r.is_success:
            return Attempt(True, r.status_code)
        return Attempt(False, r.status_code, f"HTTP {r.status_code} {r.text[:200]}")

    def _prune(self) -> None:
        now = time.monotonic()
        if now >= self._next_prune:
            self._next_prune = now + 3600.0
            self.registry.prune_deliveries(KEEP_DELIVERIES_S)
