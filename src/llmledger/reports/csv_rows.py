"""The ``--csv`` form of a report: the rows of its ``--json`` document, flattened once here
for every command (docs/reports.md, "CSV").

A header row, then one row per element of the document's row list, with the JSON keys as
column names. Flattening:

- ``expand`` names a list of objects in each row (``breakdown``): a row per item instead,
  carrying the parent's scalar columns (the period, the session) and then the item's own,
  which win over the parent's of the same name (the item's tokens, not the period's);
- a nested object becomes one column per key, named by its path (``inclusive.cost_usd``);
  where the object is null, those cells are empty;
- any list (or list of objects not expanded) that remains is JSON text in its cell.

Cells: None is an empty cell, booleans are ``true``/``false``, numbers as Python prints
them (a float keeps its full precision). The header is the union of every row's columns in
the order they first appear, so a report with no rows prints nothing.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TextIO

__all__ = ["csv_cell", "flat_rows", "write_csv"]


def csv_cell(value: object) -> str:
    """One JSON value as a CSV cell: None -> empty, booleans as JSON spells them, lists and
    objects as compact JSON text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _null_objects(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """The columns of each key that is an object in some row and null in others (a block's
    burn rate), so that a null one still fills its columns with empty cells."""
    found: dict[str, list[str]] = {}
    for row in rows:
        for key, value in row.items():
            if isinstance(value, Mapping) and key not in found:
                found[key] = list(_flatten(value, f"{key}."))
    return found


def flat_rows(
    rows: Iterable[Mapping[str, Any]], *, expand: str | None = None
) -> Iterator[dict[str, Any]]:
    """The rows of a ``--json`` document as flat mappings of column name to JSON value (not
    yet cells): a row per item of ``expand`` where rows hold such a list, nested objects as
    dotted columns."""
    rows = list(rows)
    objects = _null_objects(rows)
    for row in rows:
        items = row.get(expand) if expand is not None else None
        if isinstance(items, list) and items and all(isinstance(i, Mapping) for i in items):
            parent = {
                k: v for k, v in row.items() if k != expand and not isinstance(v, list | Mapping)
            }
            for item in items:
                merged = {k: v for k, v in parent.items() if k not in item}
                yield _flatten({**merged, **item})
            continue
        flat: dict[str, Any] = {}
        for key, value in row.items():
            if value is None and key in objects:
                flat.update(dict.fromkeys(objects[key]))
            elif isinstance(value, Mapping):
                flat.update(_flatten(value, f"{key}."))
            else:
                flat[key] = value
        yield flat


def write_csv(rows: Iterable[Mapping[str, Any]], out: TextIO, *, expand: str | None = None) -> None:
    """Write ``rows`` (a ``--json`` document's row list) to ``out`` as CSV: a header, then
    :func:`flat_rows` with each value as :func:`csv_cell`. Lines end in ``\\n``."""
    flat = list(flat_rows(rows, expand=expand))
    columns: dict[str, None] = {}
    for row in flat:
        columns.update(dict.fromkeys(row))
    if not columns:
        return
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in flat:
        writer.writerow(csv_cell(row.get(name)) for name in columns)
