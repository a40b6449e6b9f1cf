"""Hardening: shapes that overflow, huge messages, a full /dev/shm, a paused runtime, and
unpickling that tries to exit: each costs at most its own call or message."""

from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import numpy as np
import pytest

from actors import (
    Actor,
    InvalidSharedArrayError,
    MessageTooLargeError,
    RemoteActorError,
    SharedMemoryFullError,
)
from runtime import Runtime
from runtime.driver import watchdog
from runtime.observe.account import Liveness
from runtime.wire import codec
from tests.helpers import Echo, read_events

pytestmark = pytest.mark.anyio


def _exits_when_unpickled(code: int) -> Any:
    """An object whose unpickling calls ``sys.exit(code)``."""

    class ExitsWhenUnpickled:
        def __reduce__(self) -> tuple[Any, tuple[int]]:
            return (sys.exit, (code,))

    return ExitsWhenUnpickled()


class Sums(Actor):
    """Answers with the sum of an array, to check it arrived whole."""

    async def receive(self, message: Any) -> Any:
        if isinstance(message, np.ndarray):
            return float(message.sum())
        return message


@pytest.mark.parametrize("shape", [(2**32, 2**32), (2**70,), 2**62])
async def test_a_shape_whose_bytes_overflow_is_refused_at_the_call(
    tmp_path: Path, shape: Any
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        with pytest.raises(InvalidSharedArrayError, match="bytes, more than an array can hold"):
            await rt.shared_array(shape, "int64")
        # and nothing was made: the run can still make a small one
        assert (await rt.shared_array(4, "int64")).shape == (4,)


async def test_a_message_past_the_limit_stops_pickling_there(tmp_path: Path) -> None:
    payload = b"x" * (64 << 20)
    async with Runtime(log_dir=tmp_path, max_message_size=1 << 20) as rt:
        echo = await rt.spawn(Echo)
        tracemalloc.start()
        try:
            with pytest.raises(MessageTooLargeError, match="pickling stopped there") as info:
                await echo.tell(("blob", payload))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert info.value.stopped
        assert peak < 16 << 20  # no copy of the 64 MiB payload was made
        assert await echo.ask("still here") == "still here"


async def test_a_full_dev_shm_sends_large_arrays_through_the_socket_and_says_so_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(name: str, data: memoryview) -> None:
        raise SharedMemoryFullError(data.nbytes, 0, "/dev/shm")

    array = np.arange(512 * 1024, dtype=np.float64)  # 4 MiB: above shm_threshold
    async with Runtime(log_dir=tmp_path) as rt:
        sums = await rt.spawn(Sums)
        await sums.ask("connected")
        # the script's sends find /dev/shm full (no lendable segment from the pool either)
        monkeypatch.setattr(codec, "write_segment", full)
        monkeypatch.setattr(rt._router.shipper.pool, "lend", lambda raw, pid: None)
        for _ in range(2):
            assert await sums.ask(array) == float(array.sum())
    warnings = [e for e in read_events(tmp_path) if e["event"] == "segment.fallback"]
    assert len(warnings) == 1
    assert warnings[0]["nbytes"] == array.nbytes


async def test_unpickling_that_exits_fails_that_message_and_the_actor_lives_on(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        echo = await rt.spawn(Echo, name="echo")
        assert await echo.ask("first") == "first"
        with pytest.raises(RemoteActorError, match="unpickling the message raised SystemExit"):
            await echo.ask(_exits_when_unpickled(3))
        await echo.tell(_exits_when_unpickled(4))
        assert await echo.ask("still here") == "still here"
    failed = [e for e in read_events(tmp_path) if e["event"] == "message.failed"]
    assert [e["error_type"] for e in failed] == ["RemoteActorError", "RemoteActorError"]
    assert rt.report.restarts["echo"] == 0


class _PausableClock:
    """``time`` for the watchdog: real time, plus the seconds its process was "paused"."""

    def __init__(self) -> None:
        self.paused = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.paused


async def test_the_watchdog_does_not_judge_in_the_round_right_after_its_process_was_paused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _PausableClock()
    pause_at_next_wake = anyio.Event()
    paused = anyio.Event()

    read_after_pause = anyio.Event()

    async def sleep(seconds: float) -> None:
        await anyio.sleep(seconds)
        if pause_at_next_wake.is_set() and not paused.is_set():
            # the process stood still for 5 s while the watchdog slept: it wakes to find
            # the heartbeats of that time still unread (they are read right after)
            clock.paused += 5.0
            paused.set()
        elif paused.is_set():
            # a later round: by then the heartbeats were read, however busy the machine
            await read_after_pause.wait()

    monkeypatch.setattr(watchdog, "time", clock)
    monkeypatch.setattr(watchdog, "anyio", SimpleNamespace(sleep=sleep))
    rec = SimpleNamespace(options=SimpleNamespace(message_deadline=None))
    life = SimpleNamespace(
        running=anyio.Event(),
        exited=anyio.Event(),
        stop_requested=None,
        beats=True,
        last_beat=clock.monotonic(),
        handling_since=0.0,
    )
    life.running.set()
    killed: list[str] = []
    beating = True

    async def kill_hung(_rec: object, _life: object, why: str) -> None:
        killed.append(why)
        life.exited.set()

    async def beat() -> None:  # the actor's heartbeats, read as they come
        while not life.exited.is_set():
            if beating:
                life.last_beat = clock.monotonic()
                if paused.is_set():
                    read_after_pause.set()
            await anyio.sleep(0.002)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(beat)
            tg.start_soon(watchdog.HangWatch(tg).watch, rec, life, 0.01, 0.5, kill_hung)
            await anyio.sleep(0.05)  # a few rounds of a healthy actor
            pause_at_next_wake.set()
            await paused.wait()
            await anyio.sleep(0.05)  # a few more rounds, heartbeats read again
            assert killed == []  # the pause was not held against the actor
            beating = False  # now it really hangs
            await life.exited.wait()
    assert len(killed) == 1
    assert "no heartbeat" in killed[0]


async def _watch_signs(
    signs: list[Liveness], *, hang_timeout: float | None, deadline: float | None
) -> list[str]:
    """Run the account watch over an actor whose account reads ``signs`` in turn (the
    last one from then on); return why it was killed, if it was."""
    rec = SimpleNamespace(options=SimpleNamespace(message_deadline=deadline))
    life = SimpleNamespace(
        exited=anyio.Event(),
        stop_requested=None,
        beats=False,
        hosted=SimpleNamespace(liveness=lambda: signs.pop(0) if len(signs) > 1 else signs[0]),
    )
    killed: list[str] = []

    async def kill_hung(_rec: object, _life: object, why: str) -> None:
        killed.append(why)
        life.exited.set()

    async with anyio.create_task_group() as tg:
        hangs = watchdog.HangWatch(tg)
        with anyio.move_on_after(0.5):  # rounds of 0.01 s: fifty of them
            await hangs.watch(rec, life, 0.01, hang_timeout, kill_hung)  # type: ignore[arg-type]
        tg.cancel_scope.cancel()
    return killed


async def test_an_actor_whose_loop_waits_for_work_is_never_judged_hung_however_long() -> None:
    idle = Liveness(waiting=True, turns=7, handling=0)
    assert await _watch_signs([idle], hang_timeout=0.05, deadline=None) == []


async def test_a_loop_that_makes_no_turn_past_the_hang_timeout_is_judged_hung() -> None:
    moving = [Liveness(False, turns, 0) for turns in range(5)]
    stuck = Liveness(waiting=False, turns=5, handling=0)
    killed = await _watch_signs([*moving, stuck], hang_timeout=0.1, deadline=None)
    assert len(killed) == 1
    assert "no heartbeat" in killed[0]


async def test_one_message_handled_past_its_deadline_is_judged_hung_while_the_loop_turns() -> None:
    # the handler awaits (the loop turns) but never finishes message 3
    turning = [Liveness(False, turns, 3) for turns in range(1000)]
    killed = await _watch_signs(turning, hang_timeout=None, deadline=0.1)
    assert len(killed) == 1
    assert "one message handled for" in killed[0]


async def test_a_run_directory_removed_under_the_runtime_fails_new_connections_and_spawns_clearly(
    tmp_path: Path,
) -> None:
    import shutil

    from actors import ActorDeadError, ActorStartError
    from tests.helpers import Forwarder

    async with Runtime(log_dir=tmp_path) as rt:
        # the ask it makes fails: it answers with that error and serves on
        forwarder = await rt.spawn(Forwarder, name="forwarder", on_error="resume")
        echo = await rt.spawn(Echo, name="echo")
        assert await forwarder.ask("pid")
        # as systemd-logind does to a user's files in /dev/shm at their last logout
        shutil.rmtree(rt._rundir.path)
        assert await echo.ask("connected before") == "connected before"
        with pytest.raises(ActorDeadError) as caught:
            await forwarder.ask(("ask", echo, "hi"), timeout=30)  # a new connection
        assert caught.value.reason == "unreachable"
        assert "was removed while the runtime ran" in str(caught.value)
        assert "loginctl enable-linger" in str(caught.value)
        for _ in range(2):
            with pytest.raises(ActorStartError) as failed:
                await rt.spawn(Echo)
            assert failed.value.error_type == "RunDirectoryRemoved"
    assert rt.report.stopped == ["echo", "forwarder"]
    removed = [e for e in read_events(tmp_path) if e["event"] == "runtime.run_dir_removed"]
    assert len(removed) == 1
