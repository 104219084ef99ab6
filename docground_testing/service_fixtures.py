"""Module-scoped pytest fixtures for a test module that ingests once and then asks many times, through the
service (what the CLI calls) and through HTTP."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from docground.api.app import create_app
from docground.service import Docground
from docground.settings import Settings


def module_service_and_client(home_name: str, **settings_fields):
    """The fixtures `service` (a Docground in a fresh home, `<tmp>/<home_name>N/home`) and `client` (FastAPI's
    TestClient on the app over that service, its lifespan run once). A test module assigns both:
    `service, client = module_service_and_client("office", rate_limit_per_minute=0)`."""

    @pytest.fixture(scope="module")
    def service(tmp_path_factory, embedder):
        svc = Docground(Settings(home=tmp_path_factory.mktemp(home_name) / "home", **settings_fields))
        svc._embedder = embedder  # the session's model: one load for every test
        yield svc
        svc.close()

    @pytest.fixture(scope="module")
    def client(service):
        with TestClient(create_app(service.settings, service)) as c:
            yield c

    return service, client
