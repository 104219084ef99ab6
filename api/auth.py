"""Tenancy and limits: who may reach which knowledge base, how much, and how often.

With DOCGROUND_ADMIN_KEY set, every /v1 request carries `Authorization: Bearer <key>`: the admin key
reaches everything and creates knowledge bases; a knowledge base's own key (made when the admin creates
it) reaches only that knowledge base and its documents and jobs. Missing or unknown keys answer 401, a
knowledge base of another tenant 403, a document or job of another tenant 404 (as if it did not exist).
Without an admin key (local use) auth is off and `docground serve` binds to loopback.

`guard` is installed on the whole app, so every /v1 route is checked from its path parameters (`kb`,
`document_id`, `job_id`) whoever wrote it; a /v1 route with none of them admits only the admin unless
it is marked `@for_any_tenant` (it then filters by `caller(request)` itself).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI, Request
from sqlalchemy import select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docground.errors import (
    AlreadyExists,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
)
from docground.registry import KnowledgeBase, Registry, validate_kb_name

from .errors import declare_errors

KEY_PREFIX = "dgk_"
KEY_CACHE_S = 30.0  # how long a key's knowledge base is remembered (another process may rotate it)
TENANT_ROUTES_ATTR = "_docground_any_tenant"


@dataclass(frozen=True)
class Caller:
    admin: bool  # the admin key, or anyone while auth is off
    kb: str | None  # the one knowledge base a KB key reaches
    key_id: str  # whom rate limits count: a key's hash prefix, or the client address


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Keys:
    """Knowledge bases' API keys; only their SHA-256 is stored (KnowledgeBase.api_key_hash)."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self._cache: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def issue(self, kb: str, create: bool) -> str:
        """A new key for the knowledge base (creating it when asked); any older key stops working."""
        validate_kb_name(kb)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self.registry.session() as s, s.begin():
            row = s.get(KnowledgeBase, kb)
            if row is None and not create:
                raise NotFound(f"knowledge base {kb!r} does not exist")
            if row is not None and create:
                raise AlreadyExists(f"knowledge base {kb!r} already exists")
            if row is None:
                row = KnowledgeBase(name=kb)
                s.add(row)
            old = row.api_key_hash
            row.api_key_hash = hash_key(key)
        with self._lock:
            self._cache.pop(old or "", None)
        return key

    def kb_for(self, key: str) -> str | None:
        digest = hash_key(key)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
            if hit is not None and hit[1] > now:
                return hit[0]
        with self.registry.session() as s:
            kb = s.scalar(select(KnowledgeBase.name).where(KnowledgeBase.api_key_hash == digest))
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (kb, now + KEY_CACHE_S)
        return kb


class RateLimiter:
    """A token bucket per caller: `per_minute` requests a minute, bursts up to the same number.

    Memory stays bounded however many callers come: a bucket that has refilled is the same as no bucket
    and is dropped, oldest first, once more than `max_callers` are held; past that, the least recently
    seen callers are forgotten (they start again with a full bucket)."""

    def __init__(self, per_minute: int, max_callers: int = 10_000):
        self.per_minute = per_minute
        self.max_callers = max_callers
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, who: str) -> None:
        if self.per_minute <= 0:
            return
        rate = self.per_minute / 60.0
        now = time.monotonic()
        with self._lock:
            tokens = self._tokens(who, now, rate)
            if tokens < 1.0:
                self._keep(who, tokens, now)
                wait = (1.0 - tokens) / rate
                raise RateLimited(f"more than {self.per_minute} requests a minute; retry in {wait:.1f} s")
            self._keep(who, tokens - 1.0, now)

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, who: str, now: float, rate: float) -> float:
        tokens, at = self._buckets.get(who, (float(self.per_minute), now))
        return min(float(self.per_minute), tokens + (now - at) * rate)

    def _keep(self, who: str, tokens: float, now: float) -> None:
        self._buckets[who] = (tokens, now)
        self._buckets.move_to_end(who)
        if len(self._buckets) > self.max_callers:
            self._prune(now)

    def _prune(self, now: float) -> None:
        rate = self.per_minute / 60.0
        for who in [w for w in self._buckets if self._tokens(w, now, rate) >= self.per_minute]:
            del self._buckets[who]
        while len(self._buckets) > self.max_callers:
            self._buckets.popitem(last=False)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def caller(request: Request) -> Caller:
    """Who is asking; 401 when auth is on and the key is missing or unknown."""
    cached = getattr(request.state, "caller", None)
    if cached is not None:
        return cached
    admin_key = request.app.state.settings.admin_key
    client = request.client.host if request.client else "unknown"
    if not admin_key:
        who = Caller(admin=True, kb=None, key_id=f"client:{client}")
    else:
        token = _bearer(request)
        if token is None:
            raise Unauthorized("this server needs an API key: send 'Authorization: Bearer <key>'")
        if hmac.compare_digest(token.encode(), admin_key.encode()):
            who = Caller(admin=True, kb=None, key_id="admin")
        else:
            kb = request.app.state.keys.kb_for(token)
            if kb is None:
                raise Unauthorized("the API key is not valid")
            who = Caller(admin=False, kb=kb, key_id="key:" + hash_key(token)[:16])
    request.state.caller = who
    return who


def for_any_tenant(endpoint: Callable) -> Callable:
    """Marks a /v1 route without kb/document/job path parameters that KB keys may call: the route
    itself limits what it returns to `caller(request).kb`."""
    setattr(endpoint, TENANT_ROUTES_ATTR, True)
    return endpoint


def guarded(path: str) -> bool:
    return path.startswith("/v1/")


def guard(request: Request) -> None:
    """The app-wide dependency: authentication, rate limit and tenant scope of every /v1 route."""
    if not guarded(request.url.path):
        return
    who = caller(request)
    request.app.state.rate_limiter.check(who.key_id)
    if who.admin:
        return
    params = request.path_params
    scoped = False
    if "kb" in params:
        scoped = True
        if params["kb"] != who.kb:
            raise Forbidden(f"this API key does not grant access to knowledge base {params['kb']!r}")
    if "document_id" in params:
        scoped = True
        doc = request.app.state.service.registry.document(params["document_id"])
        if doc is None or doc.kb != who.kb:
            raise NotFound(f"document {params['document_id']!r} does not exist")
    if "job_id" in params:
        scoped = True
        job_of = getattr(request.app.state.service.registry, "job", None)
        job = job_of(params["job_id"]) if job_of else None
        if job is None or job.kb != who.kb:
            raise NotFound(f"job {params['job_id']!r} does not exist")
    route = request.scope.get("route")
    if not scoped and not getattr(getattr(route, "endpoint", None), TENANT_ROUTES_ATTR, False):
        raise Forbidden("this route needs the admin key")


BEARER = "HTTPBearer"
BEARER_SCHEME = {"type": "http", "scheme": "bearer",
                 "description": "the admin key or a knowledge base's API key (when DOCGROUND_ADMIN_KEY is set)"}
GUARD_STATUSES = (401, 403, 429)


def declare_guard(app: FastAPI) -> None:
    """The OpenAPI schema says what `guard` does, for every route whoever added it: /v1 operations need
    the bearer key and may answer 401/403/429; the others (/healthz, /metrics) are open. Applied to the
    built schema, so routes registered after this call are covered too."""
    build = app.openapi

    def openapi() -> dict:
        schema = build()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})[BEARER] = BEARER_SCHEME
        for path, operations in schema.get("paths", {}).items():
            keyed = guarded(path)
            for operation in operations.values():
                operation["security"] = [{BEARER: []}] if keyed else []
                if keyed:
                    declare_errors(schema, operation, GUARD_STATUSES)
        return schema

    app.openapi = openapi


def require_admin(request: Request) -> None:
    if not caller(request).admin:
        raise Forbidden("this route needs the admin key")


class BodySizeLimit:
    """Refuses request bodies over the limit (413) before they are read into memory, by Content-Length
    or, for chunked uploads, by counting."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.max_bytes <= 0:
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        seen, refused = 0, False

        async def counted() -> Message:
            # Past the limit the client gets its 413 now and the app sees a disconnect; what the app
            # answers to that is not sent.
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    await _too_large(send, self.max_bytes)
                    return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted, unless_refused)


def _too_large_message(max_bytes: int) -> str:
    return f"the request body is larger than the limit of {max_bytes / 2**20:.3g} MiB (DOCGROUND_MAX_UPLOAD_MB)"


async def _too_large(send: Send, max_bytes: int) -> None:
    payload = json.dumps(PayloadTooLarge(_too_large_message(max_bytes)).to_dict()).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


def is_loopback(host: str) -> bool:
    """Whether binding this interface keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
