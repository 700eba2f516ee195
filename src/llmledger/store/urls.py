"""Where the ledger is: the embedded default and the URL forms llmledger accepts.

Free of SQLAlchemy, so that the reports' fast path can resolve the URL cheaply.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["check_url", "default_url", "missing_sqlite_file", "resolve_url", "sqlite_path"]


def default_url() -> str:
    """The embedded default: ``ledger.db`` in the user's data directory."""
    import platformdirs  # here: a ledger named by URL (the status line's too) needs none

    data_dir = Path(platformdirs.user_data_dir("llmledger", appauthor=False))
    return f"sqlite:///{data_dir / 'ledger.db'}"


def resolve_url(url: str | None = None) -> str:
    """The URL to use: the argument, else ``LLMLEDGER_DB``, else :func:`default_url`.

    A bare filesystem path is taken as a SQLite file; ``postgresql://`` is routed to psycopg 3.
    """
    url = url or os.environ.get("LLMLEDGER_DB") or default_url()
    if "://" not in url:
        url = f"sqlite:///{Path(url).expanduser().resolve()}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///PATH`` URL (already resolved), or None for anything else
    (another database, an in-memory or ``file:`` URI database, URL query options)."""
    for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(prefix):
            path = url[len(prefix) :]
            if not path or path == ":memory:" or path.startswith("file:") or "?" in path:
                return None
            return path
    return None


def missing_sqlite_file(url: str | None = None) -> bool:
    """Whether the ledger at ``url`` (see :func:`resolve_url`) is a SQLite file that does not
    exist yet (so it holds nothing: no calls, no import state)."""
    path = sqlite_path(resolve_url(url))
    return path is not None and not os.path.exists(path)


def _hide_password(url: str) -> str:
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def check_url(url: str | None = None) -> None:
    """Raise ValueError, saying what to write instead, when the ledger URL (see
    :func:`resolve_url`) names a server with a port that is not a number from 1 to 65535 or a
    host that cannot be read (an unclosed ``[`` of an IPv6 address). The rest (the kind of
    database, reaching it) is found out when it is opened."""
    resolved = resolve_url(url)
    if resolved.startswith("sqlite"):
        return
    try:
        port = urlsplit(resolved).port
    except ValueError as exc:  # "Port could not be cast ...", "Invalid IPv6 URL"
        reason = (
            "the port must be a number from 1 to 65535"
            if "Port" in str(exc)
            else "an IPv6 host needs both brackets, as in [::1]"
            if "IPv6" in str(exc)
            else str(exc)
        )
    else:
        if port is None or port > 0:
            return
        reason = "the port must be a number from 1 to 65535"
    raise ValueError(
        f"--db {_hide_password(resolved)}: {reason} (e.g. postgresql+psycopg://USER@HOST:5432/DB)"
    )
