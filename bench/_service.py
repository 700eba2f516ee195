"""What the service benchmarks share: a fresh PostgreSQL schema, and ``llmledger serve`` on a
free loopback port."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
EXE = str(Path(sys.executable).with_name("llmledger"))


def free_port() -> int:
    """A TCP port nothing listens on, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def pg_schema(pg: str, prefix: str) -> Iterator[str]:
    """A fresh schema on the PostgreSQL server ``pg``: yields its URL, dropped afterwards."""
    import sqlalchemy

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(pg)
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{name}"'))
    try:
        yield f"{pg}?options=-csearch_path%3D{name}"
    finally:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


@contextlib.contextmanager
def serve(db: str, workers: int = 1) -> Iterator[str]:
    """``llmledger serve`` on ``db``: yields its base URL once /healthz answers, stops it
    afterwards."""
    port = free_port()
    args = [EXE, "serve", "--port", str(port), "--workers", str(workers), "--db", db]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"serve did not start: {err}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
