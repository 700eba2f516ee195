"""API keys: created once and shown once, stored only as their hash, verified, revoked; the
``llmledger keys`` commands. On SQLite and the real PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import orjson
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from llmledger.cli import app
from llmledger.cli._app import _register_commands
from llmledger.errors import UsageError
from llmledger.keys import (
    create_key,
    grants,
    has_active_keys,
    list_keys,
    revoke_key,
    verify_key,
)
from llmledger.store import Repository, open_repository

runner = CliRunner()


@pytest.fixture
def repo(db_url: str) -> Iterator[Repository]:
    repo = open_repository(db_url)
    yield repo
    repo.engine.dispose()


def _stored_text(repo: Repository) -> str:
    """Everything the api_keys table holds, as text."""
    with repo.engine.connect() as conn:
        return repr(list(conn.execute(sa.text("SELECT * FROM api_keys"))))


def test_a_key_is_random_prefixed_and_stored_only_as_its_hash(repo: Repository) -> None:
    key = create_key(repo, "ci", "ingest")
    other = create_key(repo, "ci2", "ingest")
    assert key.startswith("llk_")
    assert other.startswith("llk_")
    assert key != other
    # 32 random bytes are 43 URL-safe base64 characters.
    assert len(key) == 4 + 43
    stored = _stored_text(repo)
    assert key not in stored
    assert key[4:] not in stored
    assert hashlib.sha256(key.encode()).hexdigest() in stored


def test_verify_accepts_the_key_and_refuses_others(repo: Repository) -> None:
    assert not has_active_keys(repo)
    key = create_key(repo, "reader", "read")
    assert has_active_keys(repo)
    info = verify_key(repo, key)
    assert info is not None
    assert (info.name, info.scope, info.active) == ("reader", "read", True)
    for wrong in ("", key[:-1], key + "x", "llk_" + "A" * 43, key.replace("llk_", "xyz_")):
        assert verify_key(repo, wrong) is None, wrong


def test_a_revoked_key_is_refused_and_its_name_reusable(repo: Repository) -> None:
    old = create_key(repo, "laptop", "ingest")
    assert revoke_key(repo, "laptop")
    assert verify_key(repo, old) is None
    assert not has_active_keys(repo)
    assert revoke_key(repo, "laptop")  # again: still known, nothing changes
    assert not revoke_key(repo, "nobody")
    new = create_key(repo, "laptop", "admin")
    assert verify_key(repo, old) is None
    info = verify_key(repo, new)
    assert info is not None
    assert info.scope == "admin"
    assert [k.name for k in list_keys(repo)] == ["laptop"]


def test_an_active_name_is_not_taken_twice(repo: Repository) -> None:
    create_key(repo, "ci", "ingest")
    with pytest.raises(UsageError) as caught:
        create_key(repo, "ci", "read")
    assert caught.value.field == "name"
    assert [(k.name, k.scope) for k in list_keys(repo)] == [("ci", "ingest")]


@pytest.mark.parametrize(("name", "scope"), [("", "read"), ("a b", "read"), ("ok", "root")])
def test_bad_names_and_scopes_name_the_field(repo: Repository, name: str, scope: str) -> None:
    with pytest.raises(UsageError) as caught:
        create_key(repo, name, scope)  # type: ignore[arg-type]
    assert caught.value.field == ("scope" if name == "ok" else "name")
    assert list_keys(repo) == []


def test_verify_notes_when_a_key_was_last_used(repo: Repository) -> None:
    key = create_key(repo, "ci", "ingest")
    assert list_keys(repo)[0].last_used_at is None
    verify_key(repo, key)
    first = list_keys(repo)[0].last_used_at
    assert first is not None
    verify_key(repo, key)  # within the minute: no write per request
    assert list_keys(repo)[0].last_used_at == first


def test_admin_grants_every_scope_and_the_others_only_their_own() -> None:
    assert grants("admin", "ingest")
    assert grants("admin", "read")
    assert grants("admin", "admin")
    assert grants("ingest", "ingest")
    assert grants("read", "read")
    assert not grants("ingest", "read")
    assert not grants("read", "ingest")
    assert not grants("ingest", "admin")
    assert not grants("read", "admin")


# -- the command line ------------------------------------------------------------------------


def _keys(*args: str) -> tuple[int, str, str]:
    _register_commands(["keys"])
    result = runner.invoke(app, ["keys", *args])
    return result.exit_code, result.stdout, result.stderr


def test_keys_create_prints_the_key_once_and_list_never_shows_it(db_url: str) -> None:
    code, out, err = _keys("create", "ci", "--scope", "ingest", "--db", db_url)
    assert code == 0, err
    key = out.strip()
    assert key.startswith("llk_")
    assert out == key + "\n"
    assert "cannot be shown again" in err
    code, out, err = _keys("list", "--db", db_url)
    assert code == 0
    assert "ci" in out
    assert "ingest" in out
    assert key not in out + err
    code, out, _ = _keys("list", "--json", "--db", db_url)
    assert code == 0
    assert key not in out
    (listed,) = orjson.loads(out)["keys"]
    assert listed["name"] == "ci"
    assert listed["scope"] == "ingest"
    assert listed["active"]
    assert listed["revoked_at"] is None
    assert listed["created_at"].endswith("+00:00")
    repo = open_repository(db_url)
    try:
        assert verify_key(repo, key) is not None
    finally:
        repo.engine.dispose()


def test_keys_revoke_and_unknown_names(db_url: str) -> None:
    assert _keys("create", "ci", "--scope", "admin", "--db", db_url)[0] == 0
    code, out, _ = _keys("revoke", "ci", "--db", db_url)
    assert code == 0
    assert "revoked" in out
    code, out, _ = _keys("list", "--json", "--db", db_url)
    (listed,) = orjson.loads(out)["keys"]
    assert not listed["active"]
    assert listed["revoked_at"] is not None
    code, out, err = _keys("revoke", "nobody", "--db", db_url)
    assert code == 1
    assert "no key named 'nobody'" in err


def test_keys_create_refuses_a_bad_scope_or_a_taken_name(db_url: str) -> None:
    code, _, err = _keys("create", "ci", "--scope", "root", "--db", db_url)
    assert code == 2
    assert "--scope" in err
    assert _keys("create", "ci", "--scope", "read", "--db", db_url)[0] == 0
    code, out, err = _keys("create", "ci", "--scope", "read", "--db", db_url)
    assert code == 2
    assert out == ""
    assert "exists" in err
