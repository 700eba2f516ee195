"""Generate a realistic Claude Code log tree for the import benchmark.

Writes ``OUT/projects/<project>/<session-uuid>.jsonl`` the way Claude Code does: compact JSON
lines; each user turn is followed by an API message written as 2-3 assistant lines (one per
content block, sharing ``message.id`` and ``requestId`` and repeating the usage; the first may
be a streaming snapshot with a smaller ``output_tokens``). A share of the sessions are resumed:
they start with a copy of a prefix of an earlier session of the same project, as Claude Code
writes them, so the same message ids appear in two files. Deterministic for a given seed.

    .venv/bin/python bench/gen_claude_tree.py OUT [--files 1500] [--lines 600000] [--seed 7]
"""

from __future__ import annotations

import argparse
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

MODELS = (
    ("claude-sonnet-4-5-20250929", 6),
    ("claude-opus-4-1-20250805", 1),
    ("claude-haiku-4-5-20251001", 2),
    ("claude-sonnet-4-20250514", 1),
)
_TEXT = (
    "read the file, then update the parser and run the tests; the failing case is the empty "
    "input where the loop never ends because the offset is not advanced past the newline"
)
_WORDS = _TEXT.split(" ")
_START = datetime(2026, 3, 1, tzinfo=UTC)


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class _Session:
    def __init__(self, rng: random.Random, project: str, cwd: str, start: datetime) -> None:
        self.rng = rng
        self.id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.project = project
        self.cwd = cwd
        self.clock = start
        self.parent: str | None = None
        self.lines: list[bytes] = []

    def _base(self, kind: str) -> dict[str, Any]:
        self.clock += timedelta(seconds=self.rng.randint(2, 90))
        line_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        base = {
            "parentUuid": self.parent,
            "isSidechain": False,
            "userType": "external",
            "cwd": self.cwd,
            "sessionId": self.id,
            "version": "2.0.14",
            "gitBranch": "main",
            "type": kind,
            "uuid": line_id,
            "timestamp": _iso(self.clock),
        }
        self.parent = line_id
        return base

    def user(self) -> None:
        line = self._base("user")
        rng = self.rng
        if rng.random() < 0.5:
            line["message"] = {"role": "user", "content": _text(rng, rng.randint(6, 30))}
        else:
            line["message"] = {
                "role": "user",
                "content": [
                    {
                        "tool_use_id": f"toolu_{rng.getrandbits(64):016x}",
                        "type": "tool_result",
                        "content": _text(rng, rng.randint(15, 90)),
                    }
                ],
            }
        self.lines.append(orjson.dumps(line))

    def assistant(self, copies: int) -> None:
        rng = self.rng
        model = rng.choices([m for m, _ in MODELS], weights=[w for _, w in MODELS])[0]
        msg_id = f"msg_{rng.getrandbits(96):024x}"
        request_id = f"req_{rng.getrandbits(96):024x}"
        written_1h = rng.choice((0, 0, rng.randint(100, 4000)))
        written_5m = rng.randint(0, 3000)
        final_output = rng.randint(20, 2500)
        usage = {
            "input_tokens": rng.randint(1, 40),
            "cache_creation_input_tokens": written_5m + written_1h,
            "cache_read_input_tokens": rng.randint(5000, 120000),
            "cache_creation": {
                "ephemeral_5m_input_tokens": written_5m,
                "ephemeral_1h_input_tokens": written_1h,
            },
            "output_tokens": final_output,
            "service_tier": "standard",
        }
        blocks: list[dict[str, Any]] = [{"type": "text", "text": _text(rng, rng.randint(3, 40))}]
        for _ in range(copies - 1):
            blocks.append(
                {
                    "type": "tool_use",
                    "id": f"toolu_{rng.getrandbits(64):016x}",
                    "name": rng.choice(("Read", "Edit", "Bash", "Grep")),
                    "input": {"command": _text(rng, rng.randint(3, 12))},
                }
            )
        for index, block in enumerate(blocks):
            line = self._base("assistant")
            # The first copy of a message is often a streaming snapshot: partial output.
            output = final_output if index else max(1, final_output // rng.randint(1, 4))
            line["message"] = {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [block],
                "stop_reason": None if index < len(blocks) - 1 else "tool_use",
                "stop_sequence": None,
                "usage": {**usage, "output_tokens": output},
            }
            line["requestId"] = request_id
            self.lines.append(orjson.dumps(line))

    def fill(self, target: int) -> None:
        while len(self.lines) < target:
            self.user()
            self.assistant(self.rng.choice((2, 2, 3)))


def generate(
    out: Path, files: int, lines: int, seed: int, *, start: datetime = _START, days: int = 60
) -> dict[str, int]:
    """Write the tree and return its figures (files, lines, bytes); sessions start within
    ``days`` days from ``start``."""
    rng = random.Random(seed)
    per_file = max(4, lines // files)
    projects = [f"-home-dev-project{n:02d}" for n in range(max(1, files // 50))]
    earlier: dict[str, list[_Session]] = {}
    total_lines = total_bytes = 0
    for index in range(files):
        project = rng.choice(projects)
        cwd = "/" + project[1:].replace("-", "/")
        opened = start + timedelta(minutes=rng.randint(0, days * 24 * 60))
        session = _Session(rng, project, cwd, opened)
        previous = earlier.get(project)
        if previous and rng.random() < 0.1:
            # A resumed session: starts with a copy of an earlier session's opening lines.
            source = rng.choice(previous)
            session.lines.extend(source.lines[: rng.randint(4, per_file // 4)])
            session.clock = source.clock
        session.fill(per_file)
        directory = out / "projects" / project
        directory.mkdir(parents=True, exist_ok=True)
        data = b"\n".join(session.lines) + b"\n"
        (directory / f"{session.id}.jsonl").write_bytes(data)
        total_lines += len(session.lines)
        total_bytes += len(data)
        # Keep only the opening lines of earlier sessions: enough to resume from.
        session.lines = session.lines[: per_file // 4]
        earlier.setdefault(project, []).append(session)
        del index
    return {"files": files, "lines": total_lines, "bytes": total_bytes}


def main() -> None:
    """Command-line entry: generate the tree and print its size."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--files", type=int, default=1500)
    parser.add_argument("--lines", type=int, default=600_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    figures = generate(args.out, args.files, args.lines, args.seed)
    print(
        f"wrote {figures['files']:,} files, {figures['lines']:,} lines, "
        f"{figures['bytes'] / 1e6:.0f} MB under {args.out}"
    )


if __name__ == "__main__":
    main()
