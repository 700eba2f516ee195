"""A real llmledger service for tests: ``uvicorn --factory llmledger.api.app:app_from_env`` in a
subprocess on a free 127.0.0.1 port, on the ledger a test names.

    with ServerProcess(db_url) as server:     # started; /healthz answered
        Ledger(server.url) ...
        server.kill()                          # SIGKILL: an outage (or server.stop())
        server.start()                         # up again, same port, same ledger

Used by the remote-writer tests and free for any other test that needs a live server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

__all__ = ["ServerProcess", "free_port"]

_STARTUP_S = 60.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """The service on ``db`` (a store URL), on ``port`` (default: a free one), without
    authentication unless ``auth``. ``log`` collects the server's output (read it when a
    test fails)."""

    def __init__(
        self,
        db: str,
        *,
        port: int | None = None,
        auth: bool = False,
        workers: int = 1,
        log: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.db = db
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.auth = auth
        self.workers = workers
        self.log = log
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the server (again) and wait until ``/healthz`` answers 200."""
        if self.running:
            return
        env = {**os.environ, **self.env, "LLMLEDGER_DB": self.db}
        env.pop("LLMLEDGER_NO_AUTH", None)
        if not self.auth:
            env["LLMLEDGER_NO_AUTH"] = "1"
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "llmledger.api.app:app_from_env",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        output = open(self.log, "ab") if self.log is not None else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            if self.log is not None and not isinstance(output, int):
                output.close()
        self.starts += 1
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + _STARTUP_S
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"the server exited with {self.returncode()}{self._tail()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the server did not answer /healthz in {_STARTUP_S:.0f}s{self._tail()}")

    def returncode(self) -> int | None:
        """The exit code of the last server process (None while it runs)."""
        return None if self.process is None else self.process.poll()

    def kill(self) -> None:
        """SIGKILL the server (and its workers): an outage with no goodbye."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL after 10 s."""
        self._signal(signal.SIGTERM)

    def _signal(self, sig: signal.Signals) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)  # its own session: the workers go too
        except ProcessLookupError:
            return
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def _tail(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n" + self.log.read_text(errors="replace")[-3000:]
