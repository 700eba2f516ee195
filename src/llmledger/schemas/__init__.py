"""The JSON Schemas of llmledger's canonical documents, shipped in the package as
``llmledger/schemas/<name>.json`` and printed by ``llmledger schema NAME``.

- ``call``: a call record (:class:`~llmledger.records.CallRecord`), what the service takes in
  ``POST /v1/calls`` and a remote ledger sends
- ``run``: ``llmledger show --json`` and ``GET /v1/runs/{ref}``
- ``runs``: ``llmledger runs --json`` and ``GET /v1/runs``
- ``report``: ``llmledger daily|weekly|monthly --json`` and ``GET /v1/reports/{period}``
- ``sessions``, ``blocks``, ``tokens``: those reports' ``--json`` and ``GET /v1/reports/...``
- ``usage``: ``GET /v1/{workflows,tasks,agents}/{key}/usage``

The files are generated from the pydantic models (:func:`generate`); a test holds them equal,
and ``python -m llmledger.schemas`` writes them again after a model changed.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

__all__ = ["NAMES", "generate", "load", "text", "write"]

#: Each schema's name and the model it is generated from (module, class, JSON Schema mode).
_MODELS: dict[str, tuple[str, str, str]] = {
    "call": ("llmledger.records", "CallRecord", "validation"),
    "run": ("llmledger.api.read_models", "RunDocument", "serialization"),
    "runs": ("llmledger.api.read_models", "RunsDocument", "serialization"),
    "report": ("llmledger.api.read_models", "PeriodReport", "serialization"),
    "sessions": ("llmledger.api.read_models", "SessionsReport", "serialization"),
    "blocks": ("llmledger.api.read_models", "BlocksReport", "serialization"),
    "tokens": ("llmledger.api.read_models", "TokensReport", "serialization"),
    "usage": ("llmledger.api.read_models", "SubjectUsage", "serialization"),
}
#: The schemas' names, in the order ``llmledger schema --help`` lists them.
NAMES: tuple[str, ...] = tuple(_MODELS)

_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def generate(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the document ``name`` (one of :data:`NAMES`), from
    its pydantic model."""
    import importlib

    module, attribute, mode = _MODELS[name]
    model = getattr(importlib.import_module(module), attribute)
    schema: dict[str, Any] = model.model_json_schema(mode=mode)
    return {"$schema": _DIALECT, **schema}


def text(schema: dict[str, Any]) -> str:
    """A schema as the shipped files hold it: indented JSON, a newline at the end."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def load(name: str) -> str:
    """The shipped schema file of ``name`` (one of :data:`NAMES`), as text."""
    if name not in _MODELS:
        raise KeyError(name)
    return files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")


def write(directory: Path | None = None) -> list[Path]:
    """Write every schema to ``directory`` (default: this package's); the paths written."""
    folder = directory or Path(__file__).parent
    written = []
    for name in NAMES:
        path = folder / f"{name}.json"
        path.write_text(text(generate(name)), encoding="utf-8")
        written.append(path)
    return written
