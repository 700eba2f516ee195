"""API keys of the ledger service (``llmledger serve``): create, list, revoke, verify.

A key is ``llk_`` followed by 43 URL-safe characters (32 random bytes). The ledger stores only
the SHA-256 of the whole key (hex) with the key's name and scope; the key itself is shown once,
when it is created, and is held nowhere else. A presented key is hashed, looked up by its hash
and compared in constant time (:func:`hmac.compare_digest`).

Scopes: ``ingest`` may write (runs, calls, status events), ``read`` may read (runs, reports),
``admin`` may do both (:func:`grants`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from llmledger.errors import UsageError
from llmledger.store.engine import READ_ONLY, is_read_only
from llmledger.store.repository import Repository
from llmledger.store.schema import api_keys

__all__ = [
    "KEY_PREFIX",
    "SCOPES",
    "KeyInfo",
    "Scope",
    "create_key",
    "grants",
    "has_active_keys",
    "hash_key",
    "list_keys",
    "revoke_key",
    "verify_key",
]

_log = logging.getLogger(__name__)

#: What a key does: ``ingest`` writes, ``read`` reads, ``admin`` both.
Scope = Literal["ingest", "read", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
#: Every key starts with this, so that a leaked one is recognisable (secret scanners).
KEY_PREFIX = "llk_"
#: Random bytes in a key.
_KEY_BYTES = 32
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
#: ``last_used_at`` is written at most this often per key: not a write per request.
_TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key as the ledger knows it: never the key itself, only its name, scope and times."""

    name: str
    scope: Scope
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def active(self) -> bool:
        """Whether the key is accepted (not revoked)."""
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``keys list --json`` (times as ISO 8601, unknown as null)."""
        return {
            "name": self.name,
            "scope": self.scope,
            "active": self.active,
            "created_at": _iso(self.created_at),
            "revoked_at": _iso(self.revoked_at),
            "last_used_at": _iso(self.last_used_at),
        }


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def hash_key(key: str) -> str:
    """The SHA-256 (hex) of a key: what the ledger stores in its place."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def grants(have: Scope, need: Scope) -> bool:
    """Whether a key of scope ``have`` may do what needs ``need`` (admin may do everything)."""
    return have == "admin" or have == need


def _check_scope(scope: str) -> Scope:
    if scope not in SCOPES:
        raise UsageError("scope", f"unknown scope {scope!r}; one of {', '.join(SCOPES)}")
    return scope


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise UsageError(
            "name",
            f"{name!r} is not a key name: 1 to 64 letters, digits, '_', '.', '@' or '-', "
            "starting with a letter or digit",
        )
    return name


def create_key(repo: Repository, name: str, scope: Scope) -> str:
    """Create a key named ``name`` with ``scope`` and return it: the only time it is seen.

    Raises :class:`UsageError` (field ``name`` or ``scope``) for a bad name or scope, or when
    an active key has that name. A revoked key's name may be used again: the new key takes
    its place (the revoked key stays invalid)."""
    _check_name(name)
    _check_scope(scope)
    key = KEY_PREFIX + secrets.token_urlsafe(_KEY_BYTES)
    try:
        with repo.engine.begin() as conn:
            conn.execute(
                delete(api_keys).where(api_keys.c.name == name, api_keys.c.revoked_at.is_not(None))
            )
            conn.execute(
                insert(api_keys).values(
                    name=name, scope=scope, key_hash=hash_key(key), created_at=_now()
                )
            )
    except IntegrityError:
        raise UsageError(
            "name", f"a key named {name!r} exists; revoke it first or choose another name"
        ) from None
    return key


def list_keys(repo: Repository) -> list[KeyInfo]:
    """Every key of the ledger, active and revoked, by name (never the keys themselves)."""
    query = select(
        api_keys.c.name,
        api_keys.c.scope,
        api_keys.c.created_at,
        api_keys.c.revoked_at,
        api_keys.c.last_used_at,
    ).order_by(api_keys.c.name)
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        return [KeyInfo(*row) for row in conn.execute(query)]


def revoke_key(repo: Repository, name: str) -> bool:
    """Revoke the key named ``name``: from now on it is refused. Returns False when no key has
    that name; revoking a revoked key again changes nothing (and returns True)."""
    with repo.engine.begin() as conn:
        conn.execute(
            update(api_keys)
            .where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=_now())
        )
        found = conn.execute(select(api_keys.c.name).where(api_keys.c.name == name)).first()
    return found is not None


def verify_key(repo: Repository, token: str) -> KeyInfo | None:
    """The active key ``token`` is, or None (unknown, malformed or revoked).

    The token is hashed and looked up by its hash; the stored hash is compared with
    :func:`hmac.compare_digest`. A key's ``last_used_at`` is brought up to date at most once a
    minute (a best effort: a ledger it cannot write, such as a read-only SQLite file, still
    verifies keys)."""
    if not token.startswith(KEY_PREFIX) or len(token) > 256:
        return None
    digest = hash_key(token)
    query = select(
        api_keys.c.key_hash,
        api_keys.c.name,
        api_keys.c.scope,
        api_keys.c.created_at,
        api_keys.c.revoked_at,
        api_keys.c.last_used_at,
    ).where(api_keys.c.key_hash == digest)
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        row = conn.execute(query).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest) or row.revoked_at is not None:
        return None
    info = KeyInfo(row.name, row.scope, row.created_at, row.revoked_at, row.last_used_at)
    now = _now()
    if info.last_used_at is None or now - info.last_used_at >= _TOUCH_EVERY:
        _touch(repo, info.name, now)
    return info


def _touch(repo: Repository, name: str, now: datetime) -> None:

    if is_read_only(repo.engine):
        return
    try:
        with repo.engine.begin() as conn:
            conn.execute(update(api_keys).where(api_keys.c.name == name).values(last_used_at=now))
    except SQLAlchemyError as exc:  # when a key was last used is not worth refusing it
        _log.warning("could not note the use of key %r: %s", name, exc)


def has_active_keys(repo: Repository) -> bool:
    """Whether the ledger holds a key that is not revoked (the service then demands keys)."""
    query = select(api_keys.c.name).where(api_keys.c.revoked_at.is_(None)).limit(1)
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        return conn.execute(query).first() is not None


def _now() -> datetime:
    return datetime.now(UTC)
