"""The writes: runs, calls, finishes and task status events; each one idempotent."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
