"""A sender held back by a full mailbox does not preempt its receiver when credit wakes it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from actors import ActorRef
from runtime import Runtime
from runtime.wire import deference as deference
from runtime.wire.deference import CALM, calm, deferring
from tests.helpers import Forwarder, Gate, Latch, block

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="needs Linux scheduling policies"),
]


@pytest.fixture
def policy_restored() -> Iterator[None]:
    before = os.sched_getscheduler(0)
    yield
    os.sched_setscheduler(0, before, os.sched_param(0))


@pytest.mark.anyio
async def test_a_sender_waiting_for_credit_runs_as_batch_and_as_other_again_once_calm(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        latch = await rt.spawn(Latch)
        gate = await rt.spawn(Gate, latch, mailbox_size=4, name="gate")
        sender = await rt.spawn(Forwarder)
        pid = await sender.ask("pid")
        assert os.sched_getscheduler(pid) == os.SCHED_OTHER
        await block(gate, latch)
        async with anyio.create_task_group() as tg:
            tg.start_soon(sender.ask, ("send-to", gate, 10, "s"))  # 4 fit: the 5th waits
            await _until_policy(pid, os.SCHED_BATCH, latch)
            await latch.tell("open")
        assert len(await gate.ask("log", timeout=10)) == 10
        await _until_policy(pid, os.SCHED_OTHER, latch)  # CALM (5 ms) after its last wait


async def _until_policy(pid: int, policy: int, latch: ActorRef) -> None:
    """Return once process ``pid`` (0: this thread) runs under ``policy``; 5 s at most."""
    with anyio.fail_after(5):
        while os.sched_getscheduler(pid) != policy:
            await latch.ask("waiters")  # a round trip between looks


@pytest.mark.anyio
async def test_a_thread_stays_batch_between_waits_and_is_other_once_calm(
    policy_restored: None,
) -> None:
    with deferring():
        pass
    with deferring():  # the next wait finds it still SCHED_BATCH: no switch
        assert os.sched_getscheduler(0) == os.SCHED_BATCH
    assert os.sched_getscheduler(0) == os.SCHED_BATCH
    with anyio.fail_after(5):
        while os.sched_getscheduler(0) != os.SCHED_OTHER:
            await anyio.sleep(CALM)  # the event loop's timer looks: let it run


@pytest.mark.anyio
async def test_calm_makes_the_thread_other_at_once(policy_restored: None) -> None:
    with deferring():
        pass
    assert os.sched_getscheduler(0) == os.SCHED_BATCH
    calm()
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


@pytest.mark.anyio
async def test_a_runtime_that_closes_leaves_its_thread_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deference, "CALM", 600.0)  # so only the closing can undo it
    async with Runtime(log_dir=tmp_path) as rt:
        latch = await rt.spawn(Latch)
        gate = await rt.spawn(Gate, latch, mailbox_size=2, name="gate")
        await block(gate, latch)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_tell_three, gate)  # the third waits: this thread defers
            await _until_policy(0, os.SCHED_BATCH, latch)
            await latch.tell("open")
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


async def _tell_three(gate: ActorRef) -> None:
    for i in range(3):
        await gate.tell(i)


def test_overlapping_waits_without_an_event_loop_switch_once_and_back_after_the_last(
    policy_restored: None,
) -> None:
    first, second = deferring(), deferring()
    first.__enter__()
    assert os.sched_getscheduler(0) == os.SCHED_BATCH
    second.__enter__()
    first.__exit__(None, None, None)
    assert os.sched_getscheduler(0) == os.SCHED_BATCH  # the second still waits
    second.__exit__(None, None, None)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


def test_a_policy_chosen_by_the_user_is_left_alone(policy_restored: None) -> None:
    os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # (SCHED_IDLE: root to undo)
    with deferring():
        pass
    assert os.sched_getscheduler(0) == os.SCHED_BATCH  # not switched "back" to SCHED_OTHER


def test_the_policy_comes_back_when_the_wait_fails(policy_restored: None) -> None:
    with pytest.raises(TimeoutError), deferring():
        raise TimeoutError
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


def test_a_process_forked_while_a_sender_waits_starts_as_other(policy_restored: None) -> None:
    reader, writer = os.pipe()
    with deferring():
        pid = os.fork()
        if pid == 0:  # the child: report its policy, and nothing else
            os.write(writer, str(os.sched_getscheduler(0)).encode())
            os._exit(0)
    os.close(writer)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(reader) as pipe:
        assert int(pipe.read()) == os.SCHED_OTHER
    assert os.waitstatus_to_exitcode(status) == 0
