"""A recorded call survives SIGKILL of the process that recorded it; the run it belonged to is
found stale and marked interrupted with its calls kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from typer.testing import CliRunner

from llmledger.cli import app
from llmledger.cli._app import _register_commands
from llmledger.store import open_repository

CHILD = textwrap.dedent(
    """
    import sys
    from llmledger import Usage
    from llmledger.ledger import Ledger

    ledger = Ledger(sys.argv[1])
    with ledger.run("task", "doomed"):
        for i in range(50):
            ledger.record(Usage(input_tokens=i, output_tokens=1), model="m")
        print("recorded", flush=True)
        sys.stdin.read()  # wait here until killed
    """
)


def test_sigkill_mid_run_keeps_every_recorded_call(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "recorded"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    repo = open_repository(url)
    assert repo.counts()["calls"] == 50
    [run_id] = [r for r in _running(repo)]
    assert repo.get_run(run_id)["status"] == "running"  # type: ignore[index]
    repo.engine.dispose()

    _register_commands()
    result = CliRunner().invoke(app, ["db", "repair", "--db", url])
    assert result.exit_code == 0, result.output
    assert "1 stale run" in result.output

    repo = open_repository(url)
    row = repo.get_run(run_id)
    assert row is not None
    assert row["status"] == "interrupted"
    assert row["call_count"] == 50
    assert row["input_tokens"] == sum(range(50))
    repo.engine.dispose()


def _running(repo: object) -> list[str]:
    from sqlalchemy import select

    from llmledger.store.schema import runs

    with repo.engine.connect() as conn:  # type: ignore[attr-defined]
        return list(conn.execute(select(runs.c.id).where(runs.c.status == "running")).scalars())
