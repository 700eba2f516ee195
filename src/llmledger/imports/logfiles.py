"""Where coding agents write their logs, and what each file says about its session.

Claude Code (as ccusage derives them): every ``*.jsonl`` under ``<root>/projects/``; the
project is the first path segment under ``projects/`` (the encoded cwd, ``-home-dev-alpha``);
the session is the file stem for ``projects/<project>/<session>.jsonl`` and the session
directory for ``projects/<project>/<session>/…/*.jsonl`` (sub-agent files), and the session
the lines name for a legacy ``projects/<project>/agent-<id>.jsonl`` (a subagent's transcript
beside its parent's, before Claude Code 2.1.2). A subagent's type is in the
``agent-<id>.meta.json`` beside its transcript (:func:`subagent_type`). Codex: rollout
files under ``sessions/`` and ``archived_sessions/``. Gemini CLI: JSON files under
``~/.gemini/tmp``.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmledger.agents import CLAUDE, CODEX, GEMINI

__all__ = [
    "LogFile",
    "claude_roots",
    "codex_roots",
    "discover",
    "file_subagent",
    "forget_subagent_types",
    "gemini_roots",
    "subagent_type",
]


@dataclass(frozen=True, slots=True)
class LogFile:
    """One log file to import: its agent, and the session and project its path names."""

    path: str
    agent: str
    session_id: str | None = None
    project: str | None = None


def _split_env(value: str | None) -> list[Path]:
    if not value:
        return []
    return [Path(p.strip()).expanduser() for p in value.split(",") if p.strip()]


def claude_roots(env: Mapping[str, str] | None = None, home: Path | None = None) -> list[Path]:
    """The ``projects/`` directories Claude Code writes to.

    ``$CLAUDE_CONFIG_DIR`` (comma-separated; each entry a config dir or its ``projects/``)
    replaces the defaults ``$XDG_CONFIG_HOME/claude`` (else ``~/.config/claude``) and
    ``~/.claude``. Only directories that exist are returned, each once.
    """
    env = os.environ if env is None else env
    home = home or Path.home()
    configured = _split_env(env.get(CLAUDE.roots_env))
    if not configured:
        xdg_default, dot_claude = CLAUDE.default_roots
        xdg = env.get("XDG_CONFIG_HOME")
        configured = [Path(xdg) / "claude" if xdg else home / xdg_default]
        configured.append(home / dot_claude)
    out: list[Path] = []
    for root in configured:
        projects = root if root.name == "projects" else root / "projects"
        if projects.is_dir() and projects.resolve() not in {p.resolve() for p in out}:
            out.append(projects)
    return out


def codex_roots(env: Mapping[str, str] | None = None, home: Path | None = None) -> list[Path]:
    """``sessions/`` and ``archived_sessions/`` of ``$CODEX_HOME`` (comma-separated) or
    ``~/.codex``; only those that exist."""
    env = os.environ if env is None else env
    homes = _split_env(env.get(CODEX.roots_env)) or [
        (home or Path.home()) / root for root in CODEX.default_roots
    ]
    return [
        h / sub for h in homes for sub in ("sessions", "archived_sessions") if (h / sub).is_dir()
    ]


def gemini_roots(env: Mapping[str, str] | None = None, home: Path | None = None) -> list[Path]:
    """``$GEMINI_DATA_DIR`` (comma-separated) or ``~/.gemini/tmp``; only those that exist."""
    env = os.environ if env is None else env
    roots = _split_env(env.get(GEMINI.roots_env)) or [
        (home or Path.home()) / root for root in GEMINI.default_roots
    ]
    return [r for r in roots if r.is_dir()]


def _walk(root: Path, suffixes: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """``(path, real path)`` of the files under ``root`` whose names end in ``suffixes`` (or
    ``root`` itself when it is not a directory). Symbolic links to directories are not
    followed. Files that are not regular files (named pipes, sockets, devices) are yielded
    too: the read names them and skips them unopened.

    A year of logs is thousands of files: resolving each path would stat every component, so
    only ``root`` and symbolic links are resolved."""
    top = str(root)
    if os.path.lexists(top) and not os.path.isdir(top):
        yield top, os.path.realpath(top)
        return
    real_top = os.path.realpath(top)
    stack = [top]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                link = entry.is_symlink()
                if entry.is_dir():
                    if not link:
                        stack.append(entry.path)
                elif entry.name.endswith(suffixes):
                    real = (
                        os.path.realpath(entry.path) if link else real_top + entry.path[len(top) :]
                    )
                    yield entry.path, real


def _claude_file(path: str) -> LogFile:
    parts = path.split(os.sep)
    stem = os.path.splitext(parts[-1])[0]
    if "projects" in parts[:-1]:
        at = len(parts) - 1 - parts[::-1].index("projects")
        below = parts[at + 1 :]
        project = below[0] if len(below) > 1 else None
        session: str | None = stem if len(below) <= 2 else below[1]
        if len(below) == 2 and stem.startswith(_AGENT_PREFIX):
            session = None  # a legacy subagent file: its lines name the parent session
    else:
        project, session = (parts[-2] if len(parts) > 1 else "") or None, stem
    return LogFile(path, "claude", session, project)


_AGENT_PREFIX = "agent-"
#: The longest subagent id and type stored (the calls columns' length).
_NAME_MAX = 128
_META_MAX_BYTES = 65_536


@functools.lru_cache(maxsize=4096)
def file_subagent(path: str) -> str | None:
    """The subagent id a Claude Code ``agent-<id>.jsonl`` file's name gives (None for
    another file): what its lines are filed under when they name no ``agentId``."""
    name = os.path.basename(path)
    if not name.startswith(_AGENT_PREFIX) or not name.endswith(".jsonl"):
        return None
    return name[len(_AGENT_PREFIX) : -len(".jsonl")][:_NAME_MAX] or None


_TYPES: dict[tuple[str, str], str | None] = {}


def forget_subagent_types() -> None:
    """Forget the subagent types read so far (a meta file may be written after its
    transcript: each file read looks again)."""
    _TYPES.clear()


def subagent_type(path: str, agent_id: str) -> str | None:
    """The ``agentType`` of subagent ``agent_id`` as Claude Code records it in
    ``agent-<id>.meta.json``: beside the transcript at ``path`` (a subagent's own file), or in
    ``<session>/subagents/`` beside a parent transcript ``<session>.jsonl``. None when there
    is no such file or it names no type."""
    folder, name = os.path.split(path)
    key = (path, agent_id)
    if key in _TYPES:
        return _TYPES[key]
    found = None
    if agent_id not in (".", "..") and os.sep not in agent_id and "\x00" not in agent_id:
        meta = f"{_AGENT_PREFIX}{agent_id}.meta.json"
        stem = os.path.splitext(name)[0]
        for candidate in (
            os.path.join(folder, meta),
            os.path.join(folder, stem, "subagents", meta),
        ):
            found = _meta_type(candidate)
            if found is not None:
                break
    if len(_TYPES) > 10_000:
        _TYPES.clear()
    _TYPES[key] = found
    return found


def _meta_type(path: str) -> str | None:
    if not os.path.isfile(path):  # none, or a named pipe a read would wait on
        return None
    try:
        with open(path, "rb") as fh:
            data = fh.read(_META_MAX_BYTES)
        meta = json.loads(data)
    except (OSError, ValueError):
        return None
    kind = meta.get("agentType") if type(meta) is dict else None
    return kind[:_NAME_MAX] if type(kind) is str and kind else None


def _files(agent: str, roots: Sequence[Path]) -> list[tuple[LogFile, str]]:
    """The log files of ``agent`` under ``roots``, each with its real path."""
    out: list[tuple[LogFile, str]] = []
    for root in roots:
        if agent == "claude":
            out.extend((_claude_file(p), real) for p, real in _walk(root, (".jsonl",)))
        elif agent == "codex":
            out.extend((LogFile(p, "codex"), real) for p, real in _walk(root, (".jsonl",)))
        else:
            # Chat recordings live in <project>/chats/; the other files there (logs.json,
            # checkpoints) hold no usage.
            out.extend(
                (LogFile(p, "gemini"), real)
                for p, real in _walk(root, (".json", ".jsonl"))
                if os.path.basename(os.path.dirname(p)) == "chats"
            )
    return out


def _guess_agent(path: Path) -> str:
    if path.name.startswith("rollout-"):
        return "codex"
    if path.suffix == ".json":
        return "gemini"
    return "claude"


def discover(
    agents: Iterable[str],
    paths: Sequence[str | Path] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> list[LogFile]:
    """The log files of ``agents`` (names from :data:`llmledger.agents.AGENTS`), each path once.

    With ``paths``, only those files and directories are read (a Claude config dir or its
    ``projects/``, a directory of logs, or single files); with several agents, a file's agent
    is guessed from its name (``rollout-*`` is Codex, ``*.json`` Gemini CLI, else Claude Code).
    """
    wanted = list(dict.fromkeys(agents))
    found: list[tuple[LogFile, str]] = []
    if paths:
        for raw in paths:
            path = Path(raw).expanduser()
            if len(wanted) == 1:
                root = path
                if wanted[0] == "claude" and (path / "projects").is_dir():
                    root = path / "projects"
                found.extend(_files(wanted[0], [root]))
                continue
            for item, _ in _walk(path, (".jsonl", ".json")):
                agent = _guess_agent(Path(item))
                if agent in wanted:
                    found.extend(_files(agent, [Path(item)]))
    else:
        for agent in wanted:
            if agent == "claude":
                roots = claude_roots(env, home)
            elif agent == "codex":
                roots = codex_roots(env, home)
            else:
                roots = gemini_roots(env, home)
            found.extend(_files(agent, roots))
    unique: dict[str, LogFile] = {}
    for file, real in found:
        unique.setdefault(real, file)
    return list(unique.values())
