"""The exceptions llmledger raises, each naming what was wrong and where."""

from __future__ import annotations

from pathlib import Path


class LedgerError(Exception):
    """Base class of every error llmledger raises on purpose."""


class UsageError(LedgerError, ValueError):
    """A usage record or call is invalid; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class ConflictError(UsageError):
    """A write contradicts what the ledger holds (a run that ended with another status);
    ``field`` names the field. The HTTP service answers it with 409."""


class ParseError(LedgerError, ValueError):
    """A payload could not be read as the format it claims to be.

    The message names the source format, the field (when one is at fault) and, for files,
    the path and 1-based line number.
    """

    def __init__(
        self,
        source: str,
        message: str,
        *,
        field: str | None = None,
        path: str | Path | None = None,
        line: int | None = None,
    ) -> None:
        self.source = source
        self.field = field
        self.path = str(path) if path is not None else None
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        elif line is not None:
            where = f"line {line}: "
        what = f" (field {field!r})" if field else ""
        #: The message without the path and line (for lists that name them already).
        self.detail = f"{source}{what}: {message}"
        super().__init__(f"{where}{self.detail}")


class StoreError(LedgerError):
    """The ledger store could not be opened, migrated or written."""
