"""Debian's Prometheus for tests: find ``promtool`` / ``prometheus`` (skip with the reason when
they are missing, fail under ``CI=true``, where ``.ci/run`` installs them), and run a real
Prometheus on a free 127.0.0.1 port with a temporary configuration and data directory.

    with PrometheusProcess(tmp_path, target="127.0.0.1:8000") as prom:
        prom.wait_for_scrapes(3)
        prom.query("sum(llmledger_calls_total)")
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest

from server import free_port

__all__ = ["PrometheusProcess", "prometheus_binary"]

_STARTUP_S = 20.0


def prometheus_binary(name: str) -> str:
    """The path of ``name`` (``promtool`` or ``prometheus``); skips the test when it is not
    installed, or fails it under ``CI=true``."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: apt-get install prometheus)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message + "; CI must run the Prometheus tests (.ci/run installs it)")
        pytest.skip(message)
    return path


class PrometheusProcess:
    """A Prometheus scraping ``target`` (host:port, path /metrics) every second, its
    configuration and data under ``workdir``."""

    def __init__(self, workdir: Path, *, target: str) -> None:
        self.binary = prometheus_binary("prometheus")
        self.workdir = workdir
        self.target = target
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "prometheus.log"

    def __enter__(self) -> PrometheusProcess:
        config = self.workdir / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: llmledger\n"
            "    static_configs:\n"
            f"      - targets: ['{self.target}']\n"
        )
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def query(self, expr: str) -> dict[str, Any]:
        """The JSON answer of ``/api/v1/query`` for ``expr`` at the current time, whatever its
        status (a query that does not parse answers 400 with ``status: error``)."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        answer: dict[str, Any] = response.json()
        return answer

    def wait_for_scrapes(self, count: int, deadline_s: float = 20.0) -> None:
        """Wait until the target has been scraped successfully ``count`` times."""
        expr = (
            f'count_over_time(up{{job="llmledger"}}[1m]) >= {count} and up{{job="llmledger"}} == 1'
        )
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.query(expr)["data"]["result"]:
                return
            time.sleep(0.2)  # polling a condition with a deadline
        raise AssertionError(
            f"Prometheus did not scrape {self.target} {count} times in {deadline_s} s: "
            f"{self.query('up')}\n{self.log.read_text()[-2000:]}"
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _STARTUP_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)  # polling a condition with a deadline
        raise AssertionError(
            f"prometheus not ready in {_STARTUP_S} s: {self.log.read_text()[-2000:]}"
        )

    def _stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
