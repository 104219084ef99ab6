"""A typo in an enumerated setting fails at start, naming the variable and the values it accepts."""

import enum
import re
import typing

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from docground.api.cli import app
from docground.settings import Settings, describe_error


def allowed_values(annotation) -> list[str] | None:
    if typing.get_origin(annotation) is typing.Literal:
        return [str(v) for v in typing.get_args(annotation)]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(m.value) for m in annotation]
    return None


ENUMERATED = {name: allowed_values(f.annotation) for name, f in Settings.model_fields.items()
              if allowed_values(f.annotation)}


def env_name(field: str) -> str:
    return f"DOCGROUND_{field.upper()}"


def test_the_enumerated_settings_are_typed_as_such():
    assert ENUMERATED["ocr_backend"] == ["auto", "endpoint", "vllm", "transformers", "cpu", "none"]
    # A plain-text setting documented as a list of choices is an enumeration that lost its type.
    for name, f in Settings.model_fields.items():
        if name not in ENUMERATED:
            assert not re.fullmatch(r"\w+( \| \w+)+", f.description or ""), name


@pytest.mark.parametrize("field", sorted(ENUMERATED))
def test_a_typo_in_an_enumerated_variable_fails_with_the_allowed_values(field, monkeypatch, tmp_path):
    allowed = ENUMERATED[field]
    typo = allowed[-1] + "x"
    monkeypatch.setenv(env_name(field), typo)
    with pytest.raises(ValidationError) as caught:
        Settings(home=tmp_path)
    message = describe_error(caught.value)
    assert env_name(field) in message and repr(typo) in message
    for value in allowed:
        assert f"'{value}'" in message
    assert f"'{value}'" in str(caught.value)  # pydantic's own message lists them too


@pytest.mark.parametrize("field", sorted(ENUMERATED))
def test_every_allowed_value_loads_from_the_environment(field, monkeypatch, tmp_path):
    for value in ENUMERATED[field]:
        monkeypatch.setenv(env_name(field), value)
        assert str(getattr(Settings(home=tmp_path), field)) == value


def test_case_or_spelling_variants_are_not_silently_accepted(monkeypatch, tmp_path):
    for typo in ("CPU", "tesseract", "vLLM", " cpu", ""):
        monkeypatch.setenv("DOCGROUND_OCR_BACKEND", typo)
        with pytest.raises(ValidationError):
            Settings(home=tmp_path)


@pytest.mark.parametrize("args", [["query", "anything", "--kb", "kb"], ["ingest", "missing.pdf", "--kb", "kb"],
                                  ["optimize", "--kb", "kb"], ["worker", "-Q", "cpu"], ["openapi"],
                                  ["serve", "--port", "1"]])
def test_the_cli_says_which_setting_is_wrong_and_stops(args, tmp_path):
    result = CliRunner().invoke(app, args, env={"DOCGROUND_HOME": str(tmp_path),
                                                "DOCGROUND_OCR_BACKEND": "tesseract",
                                                "DOCGROUND_BROKER_URL": "redis://127.0.0.1:6379/15"})
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    text = " ".join(result.output.split())
    assert "DOCGROUND_OCR_BACKEND='tesseract'" in text
    assert "'auto', 'endpoint', 'vllm', 'transformers', 'cpu' or 'none'" in text
    assert not (tmp_path / "registry.sqlite3").exists()  # stopped before opening anything
