"""The reads: each returns exactly the JSON the CLI prints with ``--json`` for the same
question."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
