"""The stack dump of a hung actor: its threads (faulthandler) and its asyncio tasks.

A handler that awaits forever leaves the event loop idle: its thread shows only the
selector, so the dump must walk the tasks' awaits to reach the user's line. A handler
blocked in sync code must still show in the threads' dump, which faulthandler writes
even when no Python code can run.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import io
import json
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from rich.console import Console

from actors import Actor
from runtime import Runtime
from runtime.actor.stacks import task_stacks
from runtime.trace import load_run, render

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve()
#: a message payload that must never reach the logs, whatever the dump holds
SECRET = "payload-that-must-not-be-logged-4711"


def _line(marker: str) -> int:
    """The line of this file that ends with ``# marker``."""
    lines = HERE.read_text().splitlines()
    (number,) = [n for n, text in enumerate(lines, 1) if text.endswith(f"# {marker}")]
    return number


class Stuck(Actor):
    """Hangs on request: awaiting an event nobody sets, sleeping, or blocked in C code."""

    async def receive(self, message: Any) -> Any:
        match message:
            case ("await", str() as payload):
                never = anyio.Event()
                await self.wait_for(never, payload)  # await-call
            case ("sleep", str()):
                time.sleep(60)  # sync-hang
            case ("in-c", str()):
                # relocking a normal mutex waits forever, in C: no Python handler runs
                libc, mutex = ctypes.CDLL(None), ctypes.create_string_buffer(64)
                libc.pthread_mutex_lock(mutex)
                libc.pthread_mutex_lock(mutex)  # c-hang
        return None

    async def wait_for(self, event: anyio.Event, payload: str) -> None:
        await event.wait()  # await-hang


async def _hang(log_dir: Path, how: str, *, uvloop: bool = False) -> dict[str, Any]:
    """Have an actor hang ``how``; return the ``actor.hung`` event once it was killed."""
    async with Runtime(log_dir=log_dir, heartbeat_interval=0.1, uvloop=uvloop) as rt:
        stuck = await rt.spawn(Stuck, name="stuck", message_deadline=0.5)
        async with rt.probe() as probe:
            await stuck.tell((how, SECRET))
            hung = await probe.expect("actor.hung", actor="stuck")
            await probe.expect("actor.exited", actor="stuck", reason="hung")
    return hung


def _viewer(log_dir: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "runtime.trace", str(log_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _frame(marker: str, function: str) -> str:
    return f'File "{HERE}", line {_line(marker)} in {function}'


@pytest.mark.parametrize("uvloop", [False, True], ids=["asyncio", "uvloop"])
async def test_a_handler_awaiting_forever_is_dumped_down_to_the_users_awaiting_line(
    tmp_path: Path, uvloop: bool
) -> None:
    hung = await _hang(tmp_path, "await", uvloop=uvloop)
    assert "one message handled for" in hung["why"]
    threads, _, tasks = hung["stack"].partition("Asyncio tasks (most recent call last):")
    assert "Thread" in threads  # faulthandler's dump is still there
    assert HERE.name not in threads  # the idle loop's thread shows no user frame
    ours = re.findall(rf'File "{re.escape(str(HERE))}", line (\d+) in (\w+)', tasks)
    assert ours == [
        (str(_line("await-call")), "receive"),
        (str(_line("await-hang")), "wait_for"),
    ]
    assert SECRET not in hung["stack"]  # frames only: no locals, so no payloads
    (dump,) = tmp_path.glob("stuck.*.tasks.json")
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    assert SECRET not in dump.read_text()


async def test_the_viewer_shows_where_a_handler_awaiting_forever_was(tmp_path: Path) -> None:
    await _hang(tmp_path, "await")
    out = _viewer(tmp_path)
    assert "✗ stuck incarnation 1 ended: hung" in out
    assert "hung: one message handled for" in out
    assert f"tests/{HERE.name}:{_line('await-hang')} in wait_for" in out
    assert re.search(rf"tests/{HERE.name}:\d+ in receive", out)
    assert "→ in wait (anyio/" in out  # what the user's line awaits


async def test_a_handler_blocked_in_sync_code_shows_in_the_threads_dump_and_the_viewer(
    tmp_path: Path,
) -> None:
    hung = await _hang(tmp_path, "sleep")
    threads, _, tasks = hung["stack"].partition("Asyncio tasks")
    assert _frame("sync-hang", "receive") in threads  # faulthandler's, as before
    assert _frame("sync-hang", "receive") in tasks  # the running task, read from its thread
    assert f"tests/{HERE.name}:{_line('sync-hang')} in receive" in _viewer(tmp_path)


async def test_a_handler_stuck_in_c_code_is_dumped_from_its_thread_alone_and_killed(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    hung = await _hang(tmp_path, "in-c")
    # no Python code runs until the C call returns: the tasks' dump never comes, and the
    # driver does not wait for it past its bound
    assert "Asyncio tasks" not in hung["stack"], hung["stack"]
    assert _frame("c-hang", "receive") in hung["stack"]
    assert time.monotonic() - started < 15
    assert f"tests/{HERE.name}:{_line('c-hang')} in receive" in _viewer(tmp_path)


async def test_a_tasks_stack_follows_its_awaits_down_to_the_innermost_coroutine() -> None:
    reached, never = asyncio.Event(), asyncio.Event()

    async def inner() -> None:
        reached.set()  # it runs on to its await before the test is woken
        await never.wait()  # inner-await

    async def outer() -> None:
        await inner()  # outer-await

    task = asyncio.create_task(outer(), name="the-task")
    await reached.wait()
    try:
        (found,) = [t for t in task_stacks(asyncio.get_running_loop()) if t["task"] == "the-task"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    ours = [(f["line"], f["function"]) for f in found["frames"] if f["file"] == str(HERE)]
    assert ours == [(_line("outer-await"), "outer"), (_line("inner-await"), "inner")]
    assert found["frames"][-1]["function"] == "wait"  # asyncio's, innermost
    assert found["awaiting"] == "Future"
    assert set(found["frames"][0]) == {"file", "line", "function"}


def test_the_viewer_takes_the_tasks_from_the_events_coroutines_key_when_it_has_one(
    tmp_path: Path,
) -> None:
    user = {"file": str(HERE), "line": 7, "function": "handle"}
    library = {"file": "/venv/lib/python3.11/site-packages/anyio/x.py", "line": 9, "function": "f"}
    keys = {"actor": "a", "actor_id": "a1", "pid": 42, "incarnation": 1}
    events = [
        {"event": "runtime.started", "trace": False},
        {
            "event": "actor.hung",
            **keys,
            "why": "no heartbeat for 2.0 s",
            "stack": "Asyncio tasks (most recent call last):\n\nTask 'stale':\n",
            "coroutines": [{"task": "handler", "frames": [user, library]}],
        },
        {"event": "actor.exited", **keys, "reason": "hung", "exit_code": -9},
    ]
    with (tmp_path / "main.1.jsonl").open("w") as f:
        for n, event in enumerate(events):
            line = {**event, "timestamp": f"2026-01-01T00:00:0{n}Z", "run_id": "1-x", "seq": n}
            f.write(json.dumps(line) + "\n")
    out = io.StringIO()
    render(load_run(tmp_path), Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    assert "task handler" in text
    assert "stale" not in text
    assert f"tests/{HERE.name}:7 in handle" in text
    assert "→ in f (anyio/x.py:9)" in text
