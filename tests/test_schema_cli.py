"""``llmledger schema NAME`` and the schemas shipped in the package: they are what the models
generate, and the documents the CLI prints validate against them (so the service's OpenAPI,
built from the same models, tells the truth)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from typer.testing import CliRunner

from llmledger import Usage
from llmledger.api import read_models
from llmledger.call import Call
from llmledger.cli import app
from llmledger.cli._app import _register_commands
from llmledger.ledger import Ledger
from llmledger.records import CallRecord, record_of_call
from llmledger.reports.groups import DIMENSIONS
from llmledger.schemas import NAMES, generate, load, text
from llmledger.totals import JSON_FIELDS, RUN_FIELDS

_register_commands()
runner = CliRunner()


@pytest.mark.parametrize("name", NAMES)
def test_the_shipped_schema_is_what_the_model_generates(name: str) -> None:
    # After changing a model: python -m llmledger.schemas writes the files again.
    assert load(name) == text(generate(name))
    Draft202012Validator.check_schema(json.loads(load(name)))


@pytest.mark.parametrize("name", ["call", "run", "report"])
def test_schema_prints_the_shipped_schema(name: str) -> None:
    result = runner.invoke(app, ["schema", name])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == generate(name)


def test_an_unknown_schema_names_the_known_ones() -> None:
    result = runner.invoke(app, ["schema", "invoice"])
    assert result.exit_code == 2
    assert "call, run, runs, report" in result.output


def test_the_models_list_the_fields_the_documents_carry_in_order() -> None:
    assert tuple(read_models.ReportTotals.model_fields) == JSON_FIELDS
    assert tuple(read_models.RunTotals.model_fields) == RUN_FIELDS
    assert set(DIMENSIONS) <= set(read_models.TokensRow.model_fields)


def _validate(name: str, document: Any) -> None:
    Draft202012Validator(json.loads(load(name))).validate(document)


def test_the_cli_documents_validate_against_their_schemas(sqlite_url: str) -> None:
    at = datetime.now(UTC) - timedelta(minutes=30)
    with Ledger(sqlite_url) as ledger, ledger.run("task", "Fix", key="1.1") as task:
        with task.attempt():
            ledger.record(Usage(input_tokens=10, output_tokens=2), model="m", started_at=at)
        ledger.record(
            Call(
                usage=Usage(input_tokens=5, cache_write_tokens=3),
                source="claude_code_transcript",
                model="claude-sonnet-4-20250514",
                session_id="s",
                project="p",
                started_at=at + timedelta(minutes=1),
            )
        )

    def cli(*args: str) -> Any:
        result = runner.invoke(app, [*args, "--db", sqlite_url, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    report = ("--no-import", "--tz", "UTC")
    _validate("run", cli("show", "1.1"))
    _validate("runs", cli("runs"))
    for period in ("daily", "weekly", "monthly"):
        _validate("report", cli(period, *report))
    _validate("sessions", cli("sessions", *report))
    blocks = cli("blocks", *report)
    assert blocks["blocks"][0]["burn_rate"] is not None  # the active block's fields too
    _validate("blocks", blocks)
    _validate("tokens", cli("tokens", *report, "-g", ",".join(DIMENSIONS)))
    # A call record as record_of_call writes it and as CallRecord reads it.
    call = Call(usage=Usage(input_tokens=1, reasoning_tokens=None), source="api", model="m")
    _validate("call", record_of_call(call))
    CallRecord.model_validate(record_of_call(call))
