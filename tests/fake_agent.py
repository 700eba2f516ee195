"""A fake agent CLI for the runner and plan tests: prints recorded outputs, on cue.

It accepts the command lines llmledger builds for real agents (``claude -p PROMPT
--output-format json``, ``... stream-json --verbose``, ``codex exec --json PROMPT``,
``gemini -p PROMPT --output-format json``) and these cues, given as options or inside the
prompt after ``fake:`` (e.g. ``-p "fix it fake: --fail-times 1 --counter /tmp/c"``):

--emit KIND        claude-json | claude-error | claude-stream | claude-verbose | codex | gemini |
                   text (default from the command line: exec -> codex, stream-json ->
                   claude-stream, else claude-json)
--exit N           exit with N after printing
--fail-times N     with --counter FILE: the first N invocations print --fail-emit (default
                   claude-error) and exit 1
--hang-after N     print the first N lines of the output, then block until killed
--die SIG          print the output, then kill itself with signal SIG
--stderr TEXT      write TEXT to stderr first
--echo-stdin       copy stdin to stdout before the output
--tag TAG          the id suffix (default: random per invocation)
--meet FIFO:r|w    open the named pipe for reading or writing first: two invocations meet
                   only when they run at the same time (a rendezvous with no sleeping)

Outputs are the files in tests/fixtures, read in place. Every invocation rewrites the
message, session and thread ids with a fresh suffix: a real agent's attempts have new ids, and
the ledger's dedupe would otherwise fold a retry's calls into the first attempt's.
Codex: there is no recorded ``codex exec --json`` sample, so its events are built from the
recorded rollout (its final ``total_token_usage`` on one ``turn.completed``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import sys
import threading
import uuid
from pathlib import Path

FIXTURES = Path(__file__).resolve().with_name("fixtures")
_ID_KEYS = re.compile(rb'("(?:id|session_id|uuid|thread_id)"\s*:\s*")([^"]*)(")')


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-p", "--prompt", default="")
    p.add_argument("--output-format", default="json")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--model", "-m")
    p.add_argument("--emit")
    p.add_argument("--exit", type=int, default=0)
    p.add_argument("--fail-times", type=int, default=0)
    p.add_argument("--fail-emit", default="claude-error")
    p.add_argument("--counter")
    p.add_argument("--hang-after", type=int)
    p.add_argument("--die")
    p.add_argument("--stderr")
    p.add_argument("--echo-stdin", action="store_true")
    p.add_argument("--tag")
    p.add_argument("--meet")
    return p


def _fixture(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()


def _codex() -> bytes:
    thread = info = message = None
    for line in _fixture("codex/codex-rollout.jsonl").splitlines():
        record = json.loads(line)
        payload = record.get("payload") or {}
        if record["type"] == "session_meta":
            thread = payload["id"]
        elif payload.get("type") == "token_count" and payload.get("info"):
            info = payload["info"]["total_token_usage"]
        elif payload.get("type") == "agent_message":
            message = payload["message"]
    assert thread
    assert info
    usage = {
        "input_tokens": info["input_tokens"],
        "cached_input_tokens": info["cached_input_tokens"],
        "output_tokens": info["output_tokens"],
        "reasoning_output_tokens": info["reasoning_output_tokens"],
    }
    events = [
        {"type": "thread.started", "thread_id": thread},
        {"type": "turn.started"},
        {
            "type": "item.completed",
            "item": {"id": "item_0", "type": "agent_message", "text": message},
        },
        {"type": "turn.completed", "usage": usage},
    ]
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def _output(kind: str) -> bytes:
    if kind == "claude-json":
        return _fixture("claude-code/claude-json-success.json")
    if kind == "claude-error":
        return _fixture("claude-code/claude-json-error-max-turns.json")
    if kind == "claude-stream":
        return _fixture("claude-code/claude-stream-json.jsonl")
    if kind == "claude-verbose":
        lines = _fixture("claude-code/claude-stream-json.jsonl").splitlines()
        return json.dumps([json.loads(x) for x in lines if x.strip()]).encode() + b"\n"
    if kind == "codex":
        return _codex()
    if kind == "gemini":
        return _fixture("gemini-cli/gemini-cli-json.json")
    if kind == "text":
        return b"no usage here, just text\n"
    raise SystemExit(f"fake_agent: unknown --emit {kind}")


def _count(counter: str | None) -> int:
    """This invocation's number (1, 2, ...), kept in the counter file across invocations."""
    if counter is None:
        return 1
    path = Path(counter)
    n = int(path.read_text() or 0) + 1 if path.exists() else 1
    path.write_text(str(n))
    return n


def main(argv: list[str]) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    cue = next((t for t in [args.prompt, *rest] if "fake:" in t), None)
    if cue is not None:
        args, _ = parser.parse_known_args(argv + shlex.split(cue.split("fake:", 1)[1]), args)
    kind = args.emit
    if kind is None:
        if "exec" in rest:
            kind = "codex"
        elif args.output_format == "stream-json":
            kind = "claude-stream"
        else:
            kind = "claude-json"
    exit_code = args.exit
    if args.fail_times and _count(args.counter) <= args.fail_times:
        kind, exit_code = args.fail_emit, 1
    if args.meet:
        fifo, role = args.meet.rsplit(":", 1)
        with open(fifo, "rb" if role == "r" else "wb"):
            pass  # open() of a FIFO blocks until the other end is opened too
    tag = (args.tag or uuid.uuid4().hex[:8]).encode()
    data = _ID_KEYS.sub(lambda m: m.group(1) + m.group(2) + b"-" + tag + m.group(3), _output(kind))
    out = sys.stdout.buffer
    if args.stderr:
        sys.stderr.write(args.stderr)
        sys.stderr.flush()
    if args.echo_stdin:
        out.write(sys.stdin.buffer.read())
    if args.hang_after is not None:
        lines = data.splitlines(keepends=True)
        out.write(b"".join(lines[: args.hang_after]))
        out.flush()
        threading.Event().wait()  # blocks until the runner's timeout kills us
    out.write(data)
    out.flush()
    if args.die:
        os.kill(os.getpid(), getattr(signal, args.die) if not args.die.isdigit() else int(args.die))
    return exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
