"""The README's main job on the sample logs in examples/: each agent's calls are imported, and
the totals are the ones the samples' references give (ccusage's own output for the Claude Code
tree, tests/fixtures/expected.json for Codex and the Gemini CLI)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BUCKETS = ("input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens")


def _main_job() -> tuple[dict[str, str], list[str]]:
    """The environment and arguments of the README's main job (its ``llmledger daily`` part)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.DOTALL)
    [line] = [b.strip() for b in blocks if "llmledger daily --tz UTC" in b]
    [part] = [p for p in line.split(" && ") if ".venv/bin/llmledger " in p]
    words = shlex.split(part)
    env: dict[str, str] = {}
    while "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words[0] == ".venv/bin/llmledger"
    return env, words[1:]


def _llmledger(args: list[str], env: dict[str, str]) -> str:
    """What ``llmledger ARGS`` prints, run from the repository's root as the README runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "llmledger", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _ccusage_totals() -> dict[str, Any]:
    """The totals of ``ccusage daily --json`` on examples/claude-home, as recorded beside it."""
    text = (EXAMPLES / "claude-home" / "ccusage-20.0.24-output.txt").read_text(encoding="utf-8")
    section = text.split("## $ ccusage daily --json --offline --timezone UTC\n", 1)[1]
    report, _ = json.JSONDecoder().raw_decode(section)
    totals: dict[str, Any] = report["totals"]
    return totals


def test_the_samples_are_the_reference_fixtures(fixtures_dir: Path) -> None:
    for path in (EXAMPLES / "claude-home" / "projects").rglob("*.jsonl"):
        reference = fixtures_dir / "claude-home" / path.relative_to(EXAMPLES / "claude-home")
        assert path.read_bytes() == reference.read_bytes()
    [codex] = (EXAMPLES / "codex-home" / "sessions").rglob("rollout-*.jsonl")
    assert codex.read_bytes() == (fixtures_dir / "codex" / "codex-rollout.jsonl").read_bytes()


def test_readme_main_job_reads_every_agent(tmp_path: Path, fixtures_dir: Path) -> None:
    env, args = _main_job()
    assert set(env) == {"CLAUDE_CONFIG_DIR", "CODEX_HOME", "GEMINI_DATA_DIR"}
    assert all(value.startswith("examples/") for value in env.values())
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LLMLEDGER_", "XDG_"))}
    run_env = {**clean, **env, "HOME": str(tmp_path / "home"), "LLMLEDGER_DB": url}
    table = _llmledger(args, run_env)
    for model in ("opus-4", "sonnet-4", "gpt-5-codex", "gemini-2.5-pro", "gemini-2.5-flash"):
        assert model in table

    report = _llmledger(["tokens", "--group-by", "agent", "--json", "--no-import"], run_env)
    rows = {row["agent"]: row for row in json.loads(report)["rows"]}
    assert set(rows) == {"claude-code", "codex", "gemini-cli"}

    claude, ccusage = rows["claude-code"], _ccusage_totals()
    assert [claude[b] for b in BUCKETS] == [
        ccusage["inputTokens"],
        ccusage["outputTokens"],
        ccusage["cacheCreationTokens"],
        ccusage["cacheReadTokens"],
    ]
    assert claude["total_tokens"] == ccusage["totalTokens"]
    assert claude["cost_usd"] == pytest.approx(ccusage["totalCost"])

    expected = json.loads((fixtures_dir / "expected.json").read_text(encoding="utf-8"))
    codex, gemini = expected["codex-rollout.jsonl"], expected["gemini-cli-json.json"]
    # The Gemini recording holds the calls of the session whose headless stats are that fixture.
    stats = json.loads((fixtures_dir / gemini["path"]).read_text(encoding="utf-8"))["stats"]
    requests = sum(m["api"]["totalRequests"] for m in stats["models"].values())
    checks = (("codex", codex, codex["api_calls"]), ("gemini-cli", gemini, requests))
    for agent, want, calls in checks:
        row = rows[agent]
        assert row["calls"] == calls
        for bucket in (*BUCKETS, "reasoning_tokens", "total_tokens"):
            assert row[bucket] == want[bucket], (agent, bucket)
