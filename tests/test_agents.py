"""The agent registry: one record per agent CLI, the facts the importer, reports and runner read."""

from __future__ import annotations

import subprocess
import sys

from llmledger import agents
from llmledger.sources import FORMATS


def test_every_source_an_agent_names_is_a_format_the_parsers_read() -> None:
    for agent in agents.BY_NAME.values():
        assert set(agent.sources) <= set(FORMATS), agent.name
        assert agent.sources[0] == agents.SOURCE_OF[agent.name]


def test_the_registry_holds_the_facts_it_replaced() -> None:
    assert agents.AGENTS == ("claude", "codex", "gemini")
    assert agents.AGENT_SOURCES == {
        "claude": ("claude_code_transcript", "claude_code_stream_json", "claude_code_result"),
        "codex": ("codex_rollout", "codex_exec_json"),
        "gemini": ("gemini_cli_chat", "gemini_cli_json", "gemini_cli_stream_json"),
    }
    assert [a.agent_id for a in agents.BY_NAME.values()] == ["claude-code", "codex", "gemini-cli"]
    assert [a.roots_env for a in agents.BY_NAME.values()] == [
        "CLAUDE_CONFIG_DIR",
        "CODEX_HOME",
        "GEMINI_DATA_DIR",
    ]
    assert [a.bin_env for a in agents.BY_NAME.values()] == [
        "LLMLEDGER_CLAUDE_BIN",
        "LLMLEDGER_CODEX_BIN",
        "LLMLEDGER_GEMINI_BIN",
    ]
    assert set(agents.LIVE_SOURCES) == {
        s for a in agents.BY_NAME.values() for s in a.sources if s != a.log_source
    }


def test_the_registry_is_pure() -> None:
    # It loads nothing beyond what ``import llmledger`` loads, and the standard library's
    # dataclasses (which ``import llmledger`` no longer loads: docs/statusline.md, Speed).
    code = (
        "import sys, llmledger, dataclasses; before = set(sys.modules); import llmledger.agents; "
        "print(sorted(set(sys.modules) - before))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['llmledger.agents']"
