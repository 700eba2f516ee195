"""API keys on the service: no key or a bad one is 401, a key without the scope 403, a revoked
key 401; nothing is checked until a key exists, or ever with no_auth."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from llmledger.api import create_app
from llmledger.keys import create_key, revoke_key
from llmledger.store import Repository, open_repository

_RUN = {"kind": "task"}
_CALLS = {"items": [{"call": {"dedupe_key": "k", "usage": {"input_tokens": 1}}}]}


@pytest.fixture
def repo(db_url: str) -> Iterator[Repository]:
    repository = open_repository(db_url)
    yield repository
    repository.engine.dispose()


@pytest.fixture
def client(db_url: str, repo: Repository) -> Iterator[TestClient]:
    with TestClient(create_app(db_url)) as test_client:
        yield test_client


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _writes(client: TestClient, headers: dict[str, str] | None = None) -> list[int]:
    return [
        client.post("/v1/runs", json=_RUN, headers=headers).status_code,
        client.post("/v1/calls", json=_CALLS, headers=headers).status_code,
        client.post("/v1/tasks/t/status", json={"to_status": "x"}, headers=headers).status_code,
    ]


def test_nothing_is_checked_until_a_key_exists(client: TestClient, repo: Repository) -> None:
    assert _writes(client) == [201, 200, 201]
    # Whatever is sent: without an active key there is nothing to check it against.
    assert _writes(client, _bearer("llk_made_up")) == [201, 200, 200]


def test_without_a_key_is_401_with_a_bearer_challenge(client: TestClient, repo: Repository) -> None:
    create_key(repo, "ci", "ingest")  # created while the app runs: checked from now on
    response = client.post("/v1/runs", json=_RUN)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in response.json()["detail"]
    assert _writes(client) == [401, 401, 401]


@pytest.mark.parametrize(
    "header",
    ["Bearer llk_not_a_key", "Bearer ", "Basic dXNlcjpwYXNz", "llk_no_scheme", "Bearer x" * 100],
)
def test_a_bad_key_is_401(client: TestClient, repo: Repository, header: str) -> None:
    create_key(repo, "ci", "ingest")
    response = client.post("/v1/runs", json=_RUN, headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("scope", "allowed"), [("ingest", True), ("admin", True), ("read", False)])
def test_writes_need_ingest_or_admin(
    client: TestClient, repo: Repository, scope: str, allowed: bool
) -> None:
    key = create_key(repo, "k", scope)  # type: ignore[arg-type]
    codes = _writes(client, _bearer(key))
    if allowed:
        assert codes == [201, 200, 201]
    else:
        assert codes == [403, 403, 403]
        detail = client.post("/v1/runs", json=_RUN, headers=_bearer(key)).json()["detail"]
        assert "'read'" in detail
        assert "'ingest'" in detail


def test_a_revoked_key_is_401(client: TestClient, repo: Repository) -> None:
    key = create_key(repo, "laptop", "ingest")
    create_key(repo, "other", "read")  # keys stay demanded while any is active
    assert client.post("/v1/runs", json=_RUN, headers=_bearer(key)).status_code == 201
    assert revoke_key(repo, "laptop")
    response = client.post("/v1/runs", json=_RUN, headers=_bearer(key))
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_once_every_key_is_revoked_nothing_is_checked(client: TestClient, repo: Repository) -> None:
    create_key(repo, "only", "ingest")
    assert client.post("/v1/runs", json=_RUN).status_code == 401
    revoke_key(repo, "only")
    assert client.post("/v1/runs", json=_RUN).status_code == 201


def test_health_and_the_api_description_need_no_key(client: TestClient, repo: Repository) -> None:
    create_key(repo, "ci", "ingest")
    assert client.get("/healthz").status_code == 200
    schema = client.get("/openapi.json")
    assert schema.status_code == 200
    assert "HTTPBearer" in schema.json()["components"]["securitySchemes"]
    assert client.get("/docs").status_code == 200


def test_no_auth_lets_every_request_through(db_url: str, repo: Repository) -> None:
    create_key(repo, "ci", "read")
    with TestClient(create_app(db_url, no_auth=True)) as open_client:
        assert _writes(open_client) == [201, 200, 201]
