"""Bugs found in the refactoring's review, each pinned by a test that failed before its fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from actors import (
    Actor,
    ActorRef,
    EscalationError,
    InvalidConfigError,
    MailboxFullError,
    RuntimeAlreadyRunningError,
    UnsupportedBackendError,
)
from runtime import Runtime
from tests.helpers import Crashy, Echo, Gate, Latch, block

pytestmark = pytest.mark.anyio


class GateParent(Actor):
    """Spawns a Gate of its own through its context, on the latch it is sent."""

    async def receive(self, message: Any) -> Any:
        match message:
            case ("spawn-gate", ActorRef() as latch, str(name)):
                return await self.context.spawn(Gate, latch, name=name)
        return None


async def test_a_child_spawned_by_an_actor_gets_the_runtimes_mailbox_size(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path, mailbox_size=2, stop_timeout=1.0) as rt:
        assert rt.config.mailbox_size == 2
        latch = await rt.spawn(Latch)
        parent = await rt.spawn(GateParent, name="parent")
        gate = await parent.ask(("spawn-gate", latch, "parent.gate"), timeout=10)
        await block(gate, latch)
        await gate.tell(0)
        await gate.tell(1)  # fills a mailbox of 2
        with pytest.raises(MailboxFullError, match=r"actor parent\.gate is full") as info:
            gate.tell_nowait(99)
        assert info.value.capacity == 2
        await latch.tell("open")
        assert await gate.ask("log", timeout=10) == [0, 1]  # 99 was not sent


async def test_the_root_supervisors_restart_intensity_comes_from_the_config(
    tmp_path: Path,
) -> None:
    rt = Runtime(log_dir=tmp_path, max_restarts=1, period=60)
    assert (rt.config.max_restarts, rt.config.period) == (1, 60)

    async def script() -> None:
        async with rt:
            crashy = await rt.spawn(Crashy, name="crashy")
            first_pid = await crashy.ask("pid", timeout=5)
            async with rt.probe() as probe:
                await crashy.tell("crash")
                await probe.expect("actor.restarted", actor="crashy")
            assert await crashy.ask("pid", timeout=5) != first_pid  # restarted once
            await crashy.tell("crash")  # a second failure within 60 s: more than allowed
            await anyio.sleep_forever()  # the escalation cancels the script's body

    with anyio.fail_after(30), pytest.raises(EscalationError) as info:
        await script()
    assert info.value.supervisor == "root"
    assert info.value.actor == "crashy"
    assert info.value.period == 60
    assert rt.report.escalated == "root"


async def test_bad_restart_intensity_or_mailbox_size_is_refused_as_invalid_config(
    tmp_path: Path,
) -> None:
    with pytest.raises(InvalidConfigError, match="max_restarts"):
        Runtime(log_dir=tmp_path, max_restarts=-1)
    with pytest.raises(InvalidConfigError, match="mailbox_size") as info:
        Runtime(log_dir=tmp_path, mailbox_size=0)
    assert isinstance(info.value, ValueError)
    assert Runtime(log_dir=tmp_path, max_restarts=0).config.max_restarts == 0


async def test_a_runtime_entered_inside_a_running_one_is_refused_and_the_outer_keeps_working(
    tmp_path: Path, private_runs: Path
) -> None:
    async with Runtime(log_dir=tmp_path / "outer") as outer:
        echo = await outer.spawn(Echo, name="echo")
        runs = set(private_runs.glob("run-*"))
        assert len(runs) == 1
        with pytest.raises(RuntimeAlreadyRunningError, match="already running"):
            async with Runtime(log_dir=tmp_path / "inner"):
                pytest.fail("the inner runtime's body ran")
        assert set(private_runs.glob("run-*")) == runs  # the refused one made no run dir
        assert not (tmp_path / "inner").exists()  # nor a log directory
        assert await echo.ask("still here", timeout=5) == "still here"
        assert await outer.lookup("echo") == echo
    assert outer.report.escalated is None


async def test_a_body_that_swallows_the_escalations_cancellation_still_raises_escalation(
    tmp_path: Path,
) -> None:
    swallowed = False

    async def script() -> None:
        nonlocal swallowed
        async with Runtime(log_dir=tmp_path, max_restarts=0) as rt:
            crashy = await rt.spawn(Crashy, name="crashy")
            await crashy.tell("crash")  # no restart allowed: the root supervisor gives up
            try:
                await anyio.sleep(30)  # cancelled by the escalation
            except BaseException:
                swallowed = True  # and the cancellation goes no further

    with pytest.raises(EscalationError) as info:
        await script()
    assert swallowed
    assert info.value.supervisor == "root"
    assert info.value.actor == "crashy"


def test_the_trio_backend_is_refused_and_leaves_nothing_behind(
    tmp_path: Path, private_runs: Path
) -> None:
    # synchronous: anyio.run starts trio in this thread, where no event loop is running
    async def main() -> None:
        async with Runtime(log_dir=tmp_path / "logs"):
            pytest.fail("the runtime started under trio")

    with pytest.raises(UnsupportedBackendError, match="runs on asyncio, not trio") as info:
        anyio.run(main, backend="trio")
    assert info.value.library == "trio"
    assert isinstance(info.value, RuntimeError)
    assert not (tmp_path / "logs").exists()
    assert not private_runs.exists() or not any(private_runs.iterdir())
