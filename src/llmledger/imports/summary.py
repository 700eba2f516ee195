"""What an import did: :class:`ImportSummary`, the one value every import returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_ERRORS", "ImportSummary"]

#: How many skipped lines and refused calls a summary names in ``errors``.
MAX_ERRORS = 10


@dataclass(slots=True)
class ImportSummary:
    """What an import did: files seen and read, lines read, calls added, copies skipped, and
    lines skipped by reason with the first few as ``file:line: message``."""

    files: int = 0
    files_read: int = 0
    files_skipped_unchanged: int = 0
    files_reread: int = 0
    bytes_read: int = 0
    lines: int = 0
    calls_seen: int = 0
    calls_added: int = 0
    calls_updated: int = 0
    duplicates: int = 0
    sessions_added: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def lines_skipped(self) -> int:
        """How many lines were skipped, over every reason."""
        return sum(self.skipped.values())

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-ready values."""
        return {
            "files": self.files,
            "files_read": self.files_read,
            "files_skipped_unchanged": self.files_skipped_unchanged,
            "files_reread": self.files_reread,
            "bytes_read": self.bytes_read,
            "lines": self.lines,
            "calls_seen": self.calls_seen,
            "calls_added": self.calls_added,
            "calls_updated": self.calls_updated,
            "duplicates": self.duplicates,
            "sessions_added": self.sessions_added,
            "lines_skipped": self.lines_skipped,
            "skipped": dict(self.skipped),
            "errors": list(self.errors),
        }
