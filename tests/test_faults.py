"""Hangs, overflow, SIGTERM, death watch and timers, with real processes (design notes 7.6)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from actors import ActorDeadError, MailboxFullError
from runtime import Runtime
from runtime.trace import load_run
from tests.helpers import Crashy, Gate, Latch, Ticker, Watcher, read_events, script_job

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


def _events(log_dir: Path, name: str, **match: Any) -> list[dict[str, Any]]:
    return [
        e
        for e in read_events(log_dir)
        if e["event"] == name and all(e.get(k) == v for k, v in match.items())
    ]


async def test_f5_a_blocked_event_loop_is_dumped_killed_and_restarted(
    backend: str, tmp_path: Path
) -> None:
    async with Runtime(
        log_dir=tmp_path, backend=backend, hang_timeout=1.0, heartbeat_interval=0.1
    ) as rt:
        stuck = await rt.spawn(Crashy, name="stuck")
        pid = await stuck.ask("pid")
        started = time.monotonic()
        async with rt.probe() as probe:
            await stuck.tell("hang")  # time.sleep(60) in the handler
            hung = await probe.expect("actor.hung", actor="stuck")
            await probe.expect("actor.restarted", actor="stuck")
        elapsed = time.monotonic() - started
        assert await stuck.ask("pid") != pid
    assert elapsed < 1.0 + 1.0 + 2.0  # hang_timeout + dump and kill + a respawn
    assert "no heartbeat" in hung["why"]
    assert "time.sleep" in hung["stack"] or "in receive" in hung["stack"]
    assert "in receive" in Path(hung["stack_file"]).read_text()  # the faulthandler dump
    (exited, _) = _events(tmp_path, "actor.exited", actor="stuck")
    assert exited["reason"] == "hung"


async def test_f5_a_message_over_its_deadline_fails_its_ask_and_restarts_the_actor(
    backend: str,
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend, heartbeat_interval=0.1) as rt:
        latch = await rt.spawn(Latch)
        slow = await rt.spawn(Crashy, name="slow", message_deadline=0.5)
        await slow.tell("inc")
        started = time.monotonic()
        with pytest.raises(ActorDeadError, match="died"):
            await slow.ask(("hang-async", latch), timeout=30)  # the loop runs; the message hangs
        assert time.monotonic() - started < 3.0
        assert await slow.ask("get") == 0  # a fresh incarnation
    (hung,) = _events(tmp_path, "actor.hung", actor="slow")
    assert "deadline 0.5 s" in hung["why"]


async def test_f7_a_full_mailbox_suspends_tell_and_refuses_tell_nowait_logging_once(
    backend: str,
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend) as rt:
        latch = await rt.spawn(Latch)
        gate = await rt.spawn(Gate, latch, mailbox_size=4)
        await gate.tell("block")
        # locally the handled message left the mailbox; on Ray, a sender's credit covers
        # its messages until they are finished, the one in the handler too
        room = 4 if backend == "local" else 3
        for i in range(room):
            await gate.tell(("item", i))
        for _ in range(50):
            with pytest.raises(MailboxFullError, match="capacity 4"):
                gate.tell_nowait(("refused", 0))
        done = anyio.Event()

        async def producer() -> None:
            await gate.tell(("item", room))  # no room: suspends
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(producer)
            with anyio.move_on_after(0.3):
                await done.wait()
            assert not done.is_set()  # still suspended: backpressure, not loss
            await latch.tell("open")  # the gate drains its mailbox
            await done.wait()
        assert await gate.ask("log") == [("item", i) for i in range(room + 1)]
    assert len(_events(tmp_path, "mailbox.full", receiver=gate.name)) == 1  # rate-limited


def _ignores_sighup(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        mask = next(line for line in f if line.startswith("SigIgn:")).split()[1]
    return bool(int(mask, 16) & (1 << (signal.SIGHUP - 1)))


def _signal_held_actors(
    tmp_path: Path, *, ignore_sighup: bool, signals: list[signal.Signals]
) -> tuple[int, dict[str, Any]]:
    """Run ``hold_for_sigterm``, check that its actors took the script's SIGHUP
    disposition, send its process group ``signals``; return its exit status once ended,
    and what it printed first."""
    order = str(tmp_path / "order.txt")
    job = script_job(
        "tests.scripts.hold_for_sigterm", order, str(tmp_path), ignore_sighup=ignore_sighup
    )
    with job as (proc, info):
        assert all(_ignores_sighup(pid) == ignore_sighup for pid in info["actors"])
        for signum in signals:
            os.killpg(proc.pid, signum)
        _out, err = proc.communicate(timeout=20)
    assert b"Traceback" not in err
    return proc.returncode, info


@pytest.mark.parametrize(
    ("signum", "reason"), [(signal.SIGTERM, "sigterm"), (signal.SIGHUP, "sighup")]
)
async def test_f12_sigterm_or_a_hang_up_stops_every_actor_in_reverse_order(
    tmp_path: Path, signum: signal.Signals, reason: str
) -> None:
    # to the script's whole process group, as `systemctl stop`, `pkill -f` or a closing
    # terminal send it: the forkserver and the tracker ignore it
    code, info = _signal_held_actors(tmp_path, ignore_sighup=False, signals=[signum])
    assert code == 128 + signum  # 143, 129: as the signal would have, by shell convention
    assert (tmp_path / "order.txt").read_text().split() == ["third", "second", "first"]
    (stopped,) = _events(tmp_path, "runtime.stopped")
    assert stopped["reason"] == reason
    assert stopped["stopped"] == ["third", "second", "first"]  # the order they stopped in
    # the forkserver reported each actor's clean exit, and the viewer sees no crash
    assert [e["exit_code"] for e in _events(tmp_path, "actor.exited")] == [0, 0, 0]
    assert load_run(tmp_path).crashes() == []
    assert not any(os.path.exists(f"/proc/{pid}") for pid in info["actors"])


async def test_a_script_that_ignores_hang_ups_runs_on_through_one(tmp_path: Path) -> None:
    # the hang-up is discarded when sent; the SIGTERM after it stops the run
    code, _info = _signal_held_actors(
        tmp_path, ignore_sighup=True, signals=[signal.SIGHUP, signal.SIGTERM]
    )
    assert code == 128 + signal.SIGTERM
    (stopped,) = _events(tmp_path, "runtime.stopped")
    assert stopped["reason"] == "sigterm"


async def test_a_watcher_is_told_when_a_watched_actor_ends_but_not_when_it_restarts(
    backend: str,
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend) as rt:
        watcher = await rt.spawn(Watcher)
        temporary = await rt.spawn(Crashy, name="temporary", restart="temporary")
        permanent = await rt.spawn(Crashy, name="permanent")
        stopped = await rt.spawn(Crashy, name="stopped")
        for ref in (temporary, permanent, stopped):
            await watcher.ask(("watch", ref))
        async with rt.probe() as probe:
            os.kill(await permanent.ask("pid"), signal.SIGKILL)
            await probe.expect("actor.restarted", actor="permanent")
        os.kill(await temporary.ask("pid"), signal.SIGKILL)
        await rt.stop(stopped)
        seen = await watcher.ask(("wait", 2))
        # Ray does not tell how a worker died, only that it did
        killed = "signal:SIGKILL" if backend == "local" else "died"
        assert sorted(seen) == [("stopped", "stopped"), ("temporary", killed)]
        await watcher.ask(("watch", stopped))  # already gone: told at once
        assert (await watcher.ask(("wait", 3)))[-1] == ("stopped", "stopped")


async def test_timers_send_once_and_periodically_and_stop_with_the_actor(
    backend: str, tmp_path: Path
) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend) as rt:
        ticker = await rt.spawn(Ticker)
        await ticker.tell(("after", 0.05))
        await ticker.tell(("every", 0.02))
        assert await ticker.ask(("wait", 5)) >= 5
        ticks = await ticker.ask("cancel")
        assert await ticker.ask("counts") >= (ticks, 1)
        await ticker.tell(("every", 0.01))
        assert await ticker.ask(("wait", ticks + 3)) >= ticks + 3
        await rt.stop(ticker)  # its timers end with it: no error, nothing left
    assert not _events(tmp_path, "message.failed")
