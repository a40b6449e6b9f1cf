"""Exact bookkeeping when things crash: counts over every incarnation, one record per lost
message, the last events of a process that exits, and the order actors stopped in."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from actors import ActorDeadError
from runtime import Runtime
from tests.helpers import Crashy, Echo, read_events

pytestmark = pytest.mark.anyio


async def test_the_report_counts_what_killed_and_exited_incarnations_handled(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        crashy = await rt.spawn(Crashy, name="crashy")
        for _ in range(20):
            await crashy.tell("inc")
        assert await crashy.ask("get") == 20
        pid = await crashy.ask("pid")  # 22 handled by the first incarnation
        async with rt.probe() as probe:
            os.kill(pid, signal.SIGKILL)
            await probe.expect("actor.restarted", actor="crashy")
        for _ in range(5):
            await crashy.tell("inc")
        assert await crashy.ask("get") == 5  # 6 handled by the second
        async with rt.probe() as probe:
            await crashy.tell("exit")  # os._exit(3) in the handler: not handled
            await probe.expect("actor.restarted", actor="crashy")
        assert await crashy.ask("get") == 0  # 1 handled by the third
    assert rt.report.handled["crashy"] == 22 + 6 + 1
    exited = [e for e in read_events(tmp_path) if e["event"] == "actor.exited"]
    assert [(e["reason"], e["handled"]) for e in exited] == [
        ("signal:SIGKILL", 22),
        ("exit:3", 6),
        ("shutdown", 1),
    ]


async def test_asks_lost_with_a_receiver_that_exits_are_each_recorded_and_counted(
    tmp_path: Path,
) -> None:
    failed: list[BaseException] = []
    async with Runtime(log_dir=tmp_path) as rt:
        crashy = await rt.spawn(Crashy, name="crashy")
        await crashy.ask("get")  # connected
        gate = anyio.Event()

        async def ask(message: str) -> None:
            await gate.wait()
            try:
                await crashy.ask(message, timeout=30)
            except ActorDeadError as exc:
                failed.append(exc)

        async with rt.probe() as probe, anyio.create_task_group() as tg:
            for index in range(40):
                tg.start_soon(ask, "exit" if index == 0 else "get")
            gate.set()  # all 40 go in one step, "exit" first
            await probe.expect("actor.restarted", actor="crashy")
    lost = [
        e
        for e in read_events(tmp_path)
        if e["event"] == "message.dead_lettered" and e.get("ask") and e["source"] == "main"
    ]
    assert len(failed) == 40  # every asker was told
    assert len(lost) == 40  # and every message has its record
    assert {e["reason"] for e in lost} == {"in_doubt"}
    assert rt.report.in_doubt == 40


async def test_a_message_handled_just_before_a_hard_exit_has_its_handled_event(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path, trace=True) as rt:
        crashy = await rt.spawn(Crashy, name="crashy")
        await crashy.ask("get")
        async with rt.probe() as probe:
            await crashy.tell("inc")  # one step: both frames in one write, read together
            await crashy.tell("exit")
            await probe.expect("actor.restarted", actor="crashy")
    events = read_events(tmp_path)
    tells = [e for e in events if e["event"] == "message.sent" and not e["ask"]]
    inc = tells[0]["msg_id"]  # then the "exit" tell
    outcomes = [e["event"] for e in events if e.get("msg_id") == inc]
    assert "message.handled" in outcomes, outcomes
    (exited,) = [e for e in events if e["event"] == "actor.exited" and e["reason"] == "exit:3"]
    assert exited["handled"] == 2  # the first ask, and the tell just before the exit


async def test_the_report_lists_actors_in_the_order_they_stopped(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        for name in ("first", "second", "third"):
            await rt.spawn(Echo, name=name)
    assert rt.report.stopped == ["third", "second", "first"]
    (stopped,) = [e for e in read_events(tmp_path) if e["event"] == "runtime.stopped"]
    assert stopped["stopped"] == ["third", "second", "first"]


@pytest.mark.parametrize("forkserver", ["fresh", "auto"])
def test_an_actor_process_never_runs_the_script_past_where_it_enters_the_runtime(
    tmp_path: Path, forkserver: str
) -> None:
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "MARKS_DIR": str(tmp_path), "ACTORS_FORKSERVER": forkserver}
    done = subprocess.run(
        [sys.executable, str(root / "tests/scripts/swallows_everything.py")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hello"
    by_kind: dict[str, set[str]] = {}
    for p in tmp_path.glob("*.*"):
        kind, pid = p.name.split(".", 1)
        by_kind.setdefault(kind, set()).add(pid)
    script_pid = by_kind["after"]
    assert len(script_pid) == 1  # only the script itself got past the runtime
    assert by_kind["finally"] == script_pid
    assert "handler" not in by_kind  # nothing failed in the script itself
    # from a fresh forkserver the actor re-ran the top half; from a copy of the script,
    # nothing of it
    assert len(by_kind["before"] - script_pid) == (1 if forkserver == "fresh" else 0)
