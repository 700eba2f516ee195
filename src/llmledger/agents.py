"""The agent CLIs llmledger knows (Claude Code, Codex, Gemini CLI), one record each.

A record says where the agent writes its logs (and the environment variable that moves
them), the ``calls.source`` of the calls imported from those logs and of those ``llmledger
run`` records from the agent's own output, the agent id its calls carry, and the
environment variable that names its executable. The importer, the reports, the runner and
the plan orchestrator read these facts here. Pure: no store, no CLI.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AGENTS",
    "AGENT_SOURCES",
    "BY_NAME",
    "CLAUDE",
    "CODEX",
    "GEMINI",
    "LIVE_SOURCES",
    "SOURCE_OF",
    "Agent",
    "log_source_of",
]


@dataclass(frozen=True, slots=True)
class Agent:
    """One agent CLI."""

    #: Its name on the command line (``llmledger import claude``, a plan's ``agent``), and
    #: the executable's default name.
    name: str
    #: The ``agent_id`` of its calls and session runs.
    agent_id: str
    #: The environment variable listing where its logs are (comma-separated), which replaces
    #: ``default_roots``.
    roots_env: str
    #: Where it writes its logs by default, relative to the home directory.
    default_roots: tuple[str, ...]
    #: The ``calls.source`` (and the format) of the calls imported from its logs.
    log_source: str
    #: The sources ``llmledger run`` records from the agent's own output: the same API calls
    #: its logs hold.
    live_sources: tuple[str, ...]
    #: The environment variable naming its executable (a path, or a command line).
    bin_env: str

    @property
    def sources(self) -> tuple[str, ...]:
        """Every source its calls can come from: its logs first, then its output."""
        return (self.log_source, *self.live_sources)


CLAUDE = Agent(
    name="claude",
    agent_id="claude-code",
    roots_env="CLAUDE_CONFIG_DIR",
    # $XDG_CONFIG_HOME/claude replaces .config/claude when XDG_CONFIG_HOME is set.
    default_roots=(".config/claude", ".claude"),
    log_source="claude_code_transcript",
    live_sources=("claude_code_stream_json", "claude_code_result"),
    bin_env="LLMLEDGER_CLAUDE_BIN",
)
CODEX = Agent(
    name="codex",
    agent_id="codex",
    roots_env="CODEX_HOME",
    default_roots=(".codex",),
    log_source="codex_rollout",
    live_sources=("codex_exec_json",),
    bin_env="LLMLEDGER_CODEX_BIN",
)
GEMINI = Agent(
    name="gemini",
    agent_id="gemini-cli",
    roots_env="GEMINI_DATA_DIR",
    default_roots=(".gemini/tmp",),
    log_source="gemini_cli_chat",
    live_sources=("gemini_cli_json", "gemini_cli_stream_json"),
    bin_env="LLMLEDGER_GEMINI_BIN",
)

#: Every agent, by name.
BY_NAME: dict[str, Agent] = {agent.name: agent for agent in (CLAUDE, CODEX, GEMINI)}
#: The agents' names, in order.
AGENTS: tuple[str, ...] = tuple(BY_NAME)
#: Per agent: the ``calls.source`` of the calls imported from its logs.
SOURCE_OF: dict[str, str] = {name: agent.log_source for name, agent in BY_NAME.items()}
#: Per agent: every source its calls can come from, its logs first. The same call can reach
#: the ledger both ways.
AGENT_SOURCES: dict[str, tuple[str, ...]] = {name: agent.sources for name, agent in BY_NAME.items()}
#: Every source that ``llmledger run`` records from an agent's own output.
LIVE_SOURCES: tuple[str, ...] = tuple(s for agent in BY_NAME.values() for s in agent.live_sources)


def log_source_of(live_source: str) -> str | None:
    """The log source of the agent whose own output ``live_source`` is (the same calls reach
    the ledger both ways), or None for a source no agent log also holds."""
    return next((a.log_source for a in BY_NAME.values() if live_source in a.live_sources), None)
