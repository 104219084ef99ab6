"""docker/ and configs/ cannot run here (no Docker): check that they agree with the code. Every command
they run parses as the `docground` CLI parses it, every variable they set is a setting, every profile
loads, and the packaging ships every package the images import."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import typer
import yaml

from docground.api.cli import app as cli_app
from docground.settings import Settings
from docground.workers.celery_app import make_celery

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker" / "compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
PROFILES = sorted((ROOT / "configs").glob("*.env"))


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def assert_docground_command(argv: list[str]) -> None:
    """Parse (not run) a `docground ...` command line exactly as the CLI would."""
    assert argv[0] == "docground", argv
    group = typer.main.get_command(cli_app)
    ctx = group.make_context("docground", list(argv[1:2]), resilient_parsing=True)
    command = group.get_command(ctx, argv[1])
    assert command is not None, f"no such command: {argv}"
    command.make_context(argv[1], list(argv[2:]), parent=ctx)  # raises on an unknown option or bad value


def test_compose_has_the_production_topology():
    services = compose()["services"]
    assert {"redis", "postgres", "qdrant", "vllm", "api", "cpu-worker", "gpu-worker"} <= set(services)
    assert "--appendonly" in services["redis"]["command"]  # queues survive a Redis restart
    assert services["vllm"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_every_command_parses_as_the_cli_parses_it():
    commands = [s["command"] for s in compose()["services"].values()
                if isinstance(s.get("command"), list) and s["command"][0] == "docground"]
    commands += [json.loads(m) for m in re.findall(r"^CMD (\[.*\])$", DOCKERFILE.read_text(), re.M)]
    assert len(commands) >= 7
    for argv in commands:
        assert_docground_command(argv)
    queues = {argv[argv.index("--queues") + 1] for argv in commands if "--queues" in argv}
    assert queues == {"cpu", "gpu"}


def test_every_variable_is_a_setting_and_every_profile_loads(monkeypatch):
    fields = set(Settings.model_fields)
    for profile in PROFILES:
        for key in env_file(profile):
            assert key.startswith("DOCGROUND_") and key[10:].lower() in fields, f"{profile.name}: {key}"
    for service in compose()["services"].values():
        for key in (service.get("environment") or {}):
            assert not key.startswith("DOCGROUND_") or key[10:].lower() in fields, key
    production = env_file(ROOT / "configs" / "production.env")
    for extra in [None, "gpu-worker.env", "gpu-inprocess.env"]:
        env = {**production, **(env_file(ROOT / "configs" / extra) if extra else {})}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        assert settings.broker_url and settings.qdrant_url and settings.database_url.startswith("postgresql")
        make_celery(settings)  # the visibility timeout outlasts the longest task and backoff


def test_compose_files_and_targets_exist():
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE.read_text(), re.M))
    for name, service in compose()["services"].items():
        build = service.get("build")
        if build:
            assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
            assert build["target"] in targets, name
        for path in service.get("env_file") or []:
            assert (COMPOSE.parent / path).is_file(), path
    for source in re.findall(r"^COPY (?!--from)(\S+) ", DOCKERFILE.read_text(), re.M):
        assert (ROOT / source).exists(), source


def test_the_wheel_lists_every_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    roots = config["package-dir"]
    found = set()
    for package, folder in roots.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((package, *relative)))
    assert found <= listed, sorted(found - listed)


def test_a_wrong_command_is_caught():
    with pytest.raises(Exception, match="No such option: --queue"):
        assert_docground_command(["docground", "worker", "--queue", "cpu"])
    with pytest.raises(AssertionError):
        assert_docground_command(["docground", "wrker"])
