"""The OpenAPI schema is the contract frontends and SDKs are generated from: schemathesis sends requests
generated from it to the app with keys on, every check enabled, and the service must answer only what
the schema declares (statuses, bodies, content types) and accept every request the schema calls valid.

CI runs a bounded, derandomized number of examples; DOCGROUND_CONTRACT_EXAMPLES raises it (the issue's
10x run: DOCGROUND_CONTRACT_EXAMPLES=100). Uploads are small generated PDFs: the schema cannot say "a
well-formed PDF", so the test supplies files that are.
"""

from __future__ import annotations

import inspect
import os
import typing

import pymupdf
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.transport.serialization import Binary

from docground.api import client as client_module
from docground.api.app import create_app
from docground.api.client import _Calls
from docground.api.models import UPLOAD_MEDIA_TYPES
from docground.errors import DocgroundError
from docground.service import Docground
from docground.settings import Settings
from docground_testing.live_server import Borrowed
from docground_testing.llm_standin import StandIn
from docground_testing.pdfgen import WORDS

ADMIN = "contract-admin-key"
EXAMPLES = int(os.environ.get("DOCGROUND_CONTRACT_EXAMPLES", "10"))  # per operation
STATEFUL_EXAMPLES = max(2, EXAMPLES // 2)


def small_pdf(words: list[str]) -> bytes:
    doc = pymupdf.open()
    page = doc.new_page(width=300, height=200)
    page.insert_text((20, 40), " ".join(words), fontsize=9)
    data = doc.tobytes()
    doc.close()
    return data


# The one binary field of the schema is the upload: well-formed PDFs, small enough to ingest quickly.
schemathesis.openapi.format("binary", st.lists(st.sampled_from(WORDS), min_size=1, max_size=12).map(small_pdf)
                            .map(Binary))
# The one URI field is a webhook's callback_url. The schema cannot say "a host on a public address", which the
# service also requires (tests/test_webhooks.py checks the refusals): the test supplies URLs of a local port
# nothing listens on, and the service allows private addresses.
CALLBACK_URLS = ("http://127.0.0.1:9/hooks/docground", "https://localhost:9/callback?kb=papers")
schemathesis.openapi.format("uri", st.sampled_from(CALLBACK_URLS))


class CountingApp:
    """The app as schemathesis reaches it: counts the HTTP requests it was sent, and keeps schemathesis'
    own test clients from starting the app's lifespan again (the test's TestClient runs it once)."""

    def __init__(self, app):
        self.app, self.requests = app, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] == "http":
            self.requests += 1
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def api(tmp_path_factory, embedder):
    with StandIn(lambda request: "The sources describe it [1].") as llm:
        settings = Settings(home=tmp_path_factory.mktemp("contract") / "home", admin_key=ADMIN,
                            rate_limit_per_minute=0, llm_endpoint=llm.endpoint, llm_model="standin",
                            webhook_allow_private=True)
        service = Docground(settings)
        service._embedder = embedder
        app = create_app(settings, Borrowed(service))
        with TestClient(app) as client:  # runs the lifespan (service, runner) for every request below
            auth = {"Authorization": f"Bearer {ADMIN}"}
            assert client.post("/v1/knowledge-bases", json={"name": "papers"}, headers=auth).status_code == 201
            r = client.post("/v1/knowledge-bases/papers/documents", headers=auth,
                            files={"file": ("seed.pdf", small_pdf(list(WORDS)), "application/pdf")})
            assert r.status_code == 202
            counted = CountingApp(app)
            yield counted, client
            print(f"\nschemathesis: {counted.requests} requests generated")
        service.close()


class AdminKey:
    """Every generated request carries the admin key, and schemathesis knows it is the credential (its
    auth checks then send requests without it, or with a wrong one, and expect 401)."""

    def get(self, case, context):
        return ADMIN

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture(scope="module")
def api_schema(api):
    counted, _ = api
    schema = schemathesis.openapi.from_asgi("/openapi.json", counted)
    schema.auth()(AdminKey)  # registers the provider (schema.auth(AdminKey) would only decorate a test)
    schema.config.generation.update(max_examples=EXAMPLES, deterministic=True)
    # Literals from the app's source would reach the upload field as file content, past the PDF strategy.
    schema.config.analysis.constants.enabled = False
    return schema


SETTINGS = hypothesis_settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                               suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])


def as_form_text(value):
    """A file as the schema sees it (a string), empty or not; schemathesis wraps bytes in `Binary`."""
    data = getattr(value, "data", value)
    return "x" * bool(len(data)) if isinstance(data, bytes) else value


def still_valid(operation, case) -> bool:
    r"""A "negative" form body the schema still accepts: schemathesis breaks a form field's pattern by
    appending a character, and the callback URL's pattern ends in `\S*`, which takes it; the service then
    rightly accepts the request."""
    if not isinstance(case.body, dict):
        return False
    form = {name: as_form_text(value) for name, value in case.body.items()}
    return any(body.media_type == case.media_type and body.is_valid(form) for body in operation.body)


def test_every_operation_keeps_the_contract(api_schema):
    """Each operation, with data the schema calls valid and data it calls invalid, all checks."""
    failures, operations = [], 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @SETTINGS
            @given(case=operation.as_strategy(generation_mode=mode, auth_storage=api_schema.auth))
            def run(case):
                assume(mode is GenerationMode.POSITIVE or not still_valid(operation, case))
                case.call_and_validate()

            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (no parameters, or only unconstrained ids)
                assert mode is GenerationMode.NEGATIVE, operation.label
            except BaseException as exc:  # noqa: BLE001 - every operation runs; all failures are reported together
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert operations >= 16
    assert not failures, "\n\n".join(failures)


def test_linked_sequences_keep_the_contract(api_schema):
    """create a knowledge base -> upload -> status, pages, content, chunks, events -> query -> delete,
    following the schema's links with the values the service returned."""
    machine = api_schema.as_state_machine()
    machine.run(settings=hypothesis_settings(max_examples=STATEFUL_EXAMPLES, stateful_step_count=8,
                                             derandomize=True, deadline=None, database=None,
                                             suppress_health_check=list(HealthCheck)))


def test_every_error_code_is_in_the_readme_table():
    """README's "Error codes" table lists every code the service answers, with its HTTP status."""
    create_app(Settings(home="/nonexistent"))  # imports every route module and what it raises
    readme = (os.path.dirname(__file__) + "/../README.md")
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    classes, seen = [DocgroundError], set()
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        if cls is not DocgroundError and cls.__module__.startswith("docground"):
            seen.add((cls.code, cls.http_status))
    missing = [f"| `{code}` | {status} |" for code, status in sorted(seen) if f"| `{code}` | {status} |" not in text]
    assert not missing, missing
    assert "| `internal_error` | 500 |" in text


def test_the_python_client_reads_what_the_schema_declares():
    """Each client call goes to an operation of the schema and parses its success body into the model the
    schema declares for it (the client and the server share api/models.py; this checks the pairing)."""
    spec = create_app(Settings(home="/nonexistent")).openapi()
    placeholders = {"kb": "{kb}", "document_id": "{document_id}", "page": "{page}", "name": "x", "question": "q",
                    "top_k": 5, "mode": "auto", "file": b"x", "filename": None, "idempotency_key": None,
                    "dpi": 110, "boxes": None, "stream": False, "content_format": "json", "block_id": "{block_id}",
                    "callback_url": None}
    checked = 0
    for name, fn in vars(_Calls).items():
        if not isinstance(fn, staticmethod) or name == "health":
            continue
        fn = fn.__func__
        call = fn(**{p: placeholders[p] for p in inspect.signature(fn).parameters})
        operation = spec["paths"].get(call.path, {}).get(call.method.lower())
        assert operation is not None, (name, call.method, call.path)
        success = next(r for status, r in operation["responses"].items() if status.startswith("2"))
        declared = success.get("content", {}).get("application/json", {}).get("schema", {})
        parsed = typing.get_args(typing.get_type_hints(fn, vars(client_module))["return"])[0]
        if "$ref" in declared:
            model = declared["$ref"].rsplit("/", 1)[1]
            if typing.get_origin(parsed) is list:  # the client unwraps a listing: the schema wraps that model
                inner = f"#/components/schemas/{typing.get_args(parsed)[0].__name__}"
                assert inner in str(spec["components"]["schemas"][model]), (name, parsed, model)
            else:  # markdown or the layout: the JSON one must be the declared model
                names = {getattr(t, "__name__", None) for t in (typing.get_args(parsed) or (parsed,))}
                assert model in names, (name, parsed)
            checked += 1
    assert checked >= 8


def test_uploads_declare_the_accepted_types():
    spec = create_app(Settings(home="/nonexistent")).openapi()
    body = spec["paths"]["/v1/knowledge-bases/{kb}/documents"]["post"]["requestBody"]["content"]
    declared = body["multipart/form-data"]["encoding"]["file"]["contentType"]
    assert [t.strip() for t in declared.split(",")] == list(UPLOAD_MEDIA_TYPES)
