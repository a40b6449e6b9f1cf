"""Leaving the runtime, killing it, and Ctrl-C: everything stops, nothing is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomultiprocess.core
import anyio
import psutil
import pytest

from runtime import Runtime
from runtime.driver.process_host import _NoManager
from tests.helpers import (
    Echo,
    Forwarder,
    Gate,
    IgnoresTerm,
    Latch,
    LeavesWorkBehind,
    Parent,
    Recorder,
    StopRecorder,
    block,
    read_events,
    script_job,
    wait_ended,
)

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


async def test_leaving_the_runtime_stops_actors_newest_first(backend: str, tmp_path: Path) -> None:
    order_file = tmp_path / "stopped.txt"
    async with Runtime(log_dir=tmp_path, backend=backend) as rt:
        for name in ("first", "second", "third"):
            await rt.spawn(StopRecorder, str(order_file), name=name)
    assert order_file.read_text().split() == ["third", "second", "first"]
    events = read_events(tmp_path)
    # each finished (stopped, its tells taken) before the next older one began to stop;
    # the processes' exits may overlap
    finished = [e["actor"] for e in events if e["event"] == "actor.stopped"]
    assert finished == ["third", "second", "first"]
    exits = {
        e["actor"]: (e["reason"], e["exit_code"]) for e in events if e["event"] == "actor.exited"
    }
    assert exits == {name: ("shutdown", 0) for name in ("first", "second", "third")}
    assert rt.report.stopped == ["third", "second", "first"]


async def test_an_actor_stops_after_its_children_stopped_newest_first_and_exited(
    backend: str, tmp_path: Path
) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend) as rt:
        parent = await rt.spawn(Parent, name="parent")
        assert len(await parent.ask("children")) == 2
        await rt.stop(parent)
    events = read_events(tmp_path)
    # each child finished before the older one began to stop (their exits may overlap),
    # and both had exited before their owner began to stop: it may watch them
    stops = [
        (e["event"], e["actor"])
        for e in events
        if e["event"] in ("actor.stopping", "actor.stopped")
    ]
    assert stops == [
        ("actor.stopping", "parent.child-1"),
        ("actor.stopped", "parent.child-1"),
        ("actor.stopping", "parent.child-0"),
        ("actor.stopped", "parent.child-0"),
        ("actor.stopping", "parent"),
        ("actor.stopped", "parent"),
    ]
    exited = [e["actor"] for e in events if e["event"] == "actor.exited"]
    stopping = [(e["event"], e.get("actor")) for e in events].index(("actor.stopping", "parent"))
    before = [e["actor"] for e in events[:stopping] if e["event"] == "actor.exited"]
    assert sorted(before) == ["parent.child-0", "parent.child-1"]
    assert exited[-1] == "parent"


async def test_a_sender_stopped_right_after_telling_leaves_nothing_in_doubt(
    backend: str,
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend) as rt:
        recorder = await rt.spawn(Recorder)
        sender = await rt.spawn(Forwarder, name="sender")
        assert await sender.ask(("send-to", recorder, 300, "t"), timeout=10) == 300
        await rt.stop(sender)
        assert await recorder.ask("count") == 300
    events = read_events(tmp_path)
    assert [e for e in events if e["event"] == "message.dead_lettered"] == []
    stopped = [e for e in events if e["event"] == "actor.stopped" and e["actor"] == "sender"]
    assert [e["in_doubt"] for e in stopped] == [0]
    assert rt.report.in_doubt == 0


async def test_a_sender_whose_receiver_hangs_still_stops_in_time_and_records_its_doubts(
    backend: str,
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend, stop_timeout=1.0) as rt:
        latch = await rt.spawn(Latch)
        gate = await rt.spawn(Gate, latch, name="gate")
        sender = await rt.spawn(Forwarder, name="sender")
        await block(gate, latch)  # stuck in its handler for good: it takes nothing more
        assert await sender.ask(("send-to", gate, 5, "t"), timeout=10) == 5
        # the sender waits for the gate's acknowledgement only within its stop deadline,
        # then records the five in doubt
        await rt.stop(sender)
    events = read_events(tmp_path)
    # no actor overran its deadline: not the sender, and not the gate, whose stop ends
    # its handler and gives up the five, from a sender that is gone
    assert not [e for e in events if e["event"] == "actor.stop_timeout"]
    dead = [e for e in events if e["event"] == "message.dead_lettered"]
    five = {e["msg_id"] for e in dead if e["source"] == "sender" and e["reason"] == "in_doubt"}
    assert len(five) == 5
    # and the gate, which never handled them, says so too, as well as for the handler
    # its stop interrupted
    assert {e["msg_id"] for e in dead if e["source"] == "gate" and e["reason"] == "stopped"} == five
    assert [e["reason"] for e in dead if e["source"] == "gate" and e["msg_id"] not in five] == [
        "shutdown"
    ]
    stopped = [e for e in events if e["event"] == "actor.stopped" and e["actor"] == "sender"]
    assert [e["in_doubt"] for e in stopped] == [5]


async def test_an_actor_that_leaves_a_task_and_a_thread_behind_ends_them_in_order(
    tmp_path: Path,
) -> None:
    # the process's end must still cancel the task (its finally runs) and wait for the
    # non-daemon thread: only an actor that leaves nothing behind may skip that teardown
    async with Runtime(log_dir=tmp_path / "logs") as rt:
        ref = await rt.spawn(LeavesWorkBehind)
        assert await ref.ask(str(tmp_path)) == "left"
    assert rt.report.stopped == [ref.name]
    assert (tmp_path / "task.ended").read_text() == "cancelled"
    assert (tmp_path / "thread.ended").read_text() == "joined"


@pytest.mark.local_only("Ray has no SIGTERM step: an actor that overruns stop_timeout is killed")
async def test_an_actor_that_ignores_stop_and_sigterm_is_killed_after_the_deadline(
    backend: str,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    async with Runtime(log_dir=tmp_path, backend=backend, stop_timeout=0.5) as rt:
        stubborn = await rt.spawn(IgnoresTerm, name="stubborn")
        pid = await stubborn.ask("pid", timeout=5)
        await stubborn.tell("hang")
    assert time.monotonic() - started < 6
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    (exited,) = [e for e in read_events(tmp_path) if e["event"] == "actor.exited"]
    assert exited["killed"] is True
    assert exited["reason"] == "shutdown_timeout"  # F6: OTP's sup_stop_timeout
    assert exited["exit_code"] == -signal.SIGKILL
    assert rt.report.killed == ["stubborn"]
    assert rt.report.stopped == []


@pytest.mark.local_only("about aiomultiprocess, which hosts local actor processes only")
async def test_no_hidden_manager_process_is_started(backend: str, tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend) as rt:
        echo = await rt.spawn(Echo)
        await echo.ask("x", timeout=5)
        assert isinstance(aiomultiprocess.core._manager, _NoManager)
        names = [" ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)]
        assert not [n for n in names if "Manager" in n or "manager" in n]


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


async def test_when_the_runtime_alone_is_killed_its_actors_exit_and_leave_no_file(
    tmp_path: Path, private_runs: Path
) -> None:
    job = script_job(
        "tests.scripts.hold_runtime", "--blocked", env={"ACTORS_LOG_DIR": str(tmp_path)}
    )
    with job as (proc, info):
        *actors, blocked_pid = info["actors"]
        survivors = [psutil.Process(pid) for pid in [*actors, info["forkserver"]]]
        # its handler blocks its event loop, which never runs again: only the lifeline
        # thread can end it, and it must not wait for that loop
        blocked = psutil.Process(blocked_pid)
        tracker = psutil.Process(info["tracker"])
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        killed_at = time.monotonic()
        alive = await wait_ended(survivors, timeout=3)
        assert not alive, f"still running after the runtime was killed: {alive}"
        assert time.monotonic() - killed_at < 1.5
        assert not await wait_ended([blocked], timeout=5), "the blocked actor outlived it"
        # the lifeline gives an orderly stop 0.9 s, then ends the process
        assert time.monotonic() - killed_at < 3
        # the tracker ends once every actor has: it removed what the run had made
        assert not await wait_ended([tracker], timeout=5)
    assert not Path(info["run_dir"]).exists()
    assert not Path(info["forkserver_dir"]).exists()


async def test_a_hang_up_that_kills_the_script_leaves_no_file_behind(
    tmp_path: Path, private_runs: Path
) -> None:
    job = script_job(
        "tests.scripts.hold_runtime", "--no-signals", env={"ACTORS_LOG_DIR": str(tmp_path)}
    )
    with job as (proc, info):
        rest = [psutil.Process(p) for p in [*info["actors"], info["forkserver"], info["tracker"]]]
        os.killpg(proc.pid, signal.SIGHUP)  # the script's whole group, as a terminal does
        assert proc.wait(5) == -signal.SIGHUP  # the runtime left it the default action
        # the tracker ignores hang-ups: it ends last, and removes what the run had made
        assert not await wait_ended(rest, timeout=5)
    assert not Path(info["run_dir"]).exists()
    assert not Path(info["forkserver_dir"]).exists()


# A terminal starts its foreground job with Ctrl-C (SIGINT) at its default action. A suite
# started in the background by a non-interactive shell (`nohup make test &`) runs with
# SIGINT ignored, which every child inherits and keeps across exec: the demo would then
# rightly ignore the Ctrl-C below. So the demo is started as a terminal starts it.
_AS_A_TERMINAL_STARTS_IT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


async def test_ctrl_c_stops_the_demo_cleanly_without_child_tracebacks(tmp_path: Path) -> None:
    demo = ["-m", "demos.counter", "--count", "400000000", "--log-dir", str(tmp_path)]
    proc = subprocess.Popen(
        [sys.executable, "-c", _AS_A_TERMINAL_STARTS_IT, *demo],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # workers are counting once progress is reported
        assert first.startswith("worker-"), first
        family = _descendants(proc.pid)
        assert len(family) >= 4
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        interrupted_at = time.monotonic()
        _out, err = proc.communicate(timeout=20)
        assert time.monotonic() - interrupted_at < 3
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "KeyboardInterrupt" not in err
    assert not await wait_ended(family, timeout=3)
    exits = [e for e in read_events(tmp_path) if e["event"] == "actor.exited"]
    assert len(exits) == 4
    assert all(e["exit_code"] == 0 and e["reason"] == "interrupted" for e in exits)


@pytest.mark.local_only("about the Unix sockets of local actors; on Ray, Ray carries the messages")
async def test_runtime_dir_is_private_and_foreign_processes_are_refused(
    backend: str, tmp_path: Path
) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend) as rt:
        echo = await rt.spawn(Echo, name="echo")
        run_dir = Path(echo.address).parent
        assert run_dir.stat().st_mode & 0o777 == 0o700
        assert run_dir.parent.stat().st_mode & 0o777 == 0o700
        # a process that is not part of this run connects and says hello
        # (the actor may close before the hello is written: refused, the same outcome)
        probe = (
            "import socket, struct, sys\n"
            "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
            "s.settimeout(5)\n"
            "try:\n"
            "    s.sendall(struct.pack('<IBQ', 2, 1, 0) + b'{}')\n"
            "    print(repr(s.recv(100)))\n"
            "except (ConnectionResetError, BrokenPipeError): print('reset')\n"
        )
        result = await anyio.run_process([sys.executable, "-c", probe, echo.address])
        assert result.stdout.decode().strip() in ("b''", "reset")  # closed, no answer
        assert await echo.ask("still serving", timeout=5) == "still serving"
    rejected = [e for e in read_events(tmp_path) if e["event"] == "connection.rejected"]
    assert len(rejected) == 1
    assert rejected[0]["reason"] == "not a process of this run"
