"""numpy arrays inside ordinary messages travel through shared memory, and leak nothing."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from actors import ActorDeadError, MailboxFullError, MessageTooLargeError
from runtime import Runtime
from runtime._segments import segments_of
from tests.helpers import Gate, Latch, SharedUser, read_events

pytestmark = pytest.mark.anyio

MiB = 1 << 20


@dataclass
class Batch:
    label: str
    frames: list[np.ndarray]


async def test_a_large_array_in_a_message_arrives_intact_and_its_segment_is_gone(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path, trace=True, max_message_size=MiB) as rt:
        user = await rt.spawn(SharedUser)
        data = np.arange(8 * MiB // 8, dtype=np.float64)  # 8 MiB, above the 1 MiB frame limit
        total, shape, dtype, writable = await user.ask(("describe", data))
        assert (total, shape, dtype, writable) == (float(data.sum()), data.shape, "float64", True)
        echoed = await user.ask(("echo", Batch("b", [data, data[:10]])))  # a reply, nested
        assert isinstance(echoed, Batch)
        assert echoed.label == "b"
        assert np.array_equal(echoed.frames[0], data)
        assert echoed.frames[1].tolist() == list(range(10))
        assert segments_of(rt.run_id, "m") == []  # each reader unlinked what it mapped
    events = read_events(tmp_path)
    created = [e for e in events if e["event"] == "segment.created"]
    attached = [e for e in events if e["event"] == "segment.attached" and e.get("unlinked")]
    # two messages with a large array, and one large reply
    assert [e["purpose"] for e in created] == ["message", "message", "reply"]
    assert len(attached) == 3
    assert {e["segment"] for e in created} == {e["segment"] for e in attached}


async def test_without_shared_memory_a_large_message_is_refused_clearly(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path, shm_threshold=None, max_message_size=MiB) as rt:
        user = await rt.spawn(SharedUser)
        with pytest.raises(MessageTooLargeError, match="max_message_size"):
            await user.tell(("echo", np.zeros(2 * MiB, dtype=np.uint8)))


async def test_large_messages_to_a_killed_receiver_leave_no_segment(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        latch = await rt.spawn(Latch)
        gate = await rt.spawn(Gate, latch)
        await gate.tell("block")
        for _ in range(3):
            await gate.tell(("keep", np.ones(2 * MiB, dtype=np.uint8)))
        assert len(segments_of(rt.run_id, "m")) == 3  # queued, not yet read
        os.kill(_pid_of(tmp_path, "gate-1"), signal.SIGKILL)
        await rt.stop(gate)  # returns once the runtime has seen it exit
        assert segments_of(rt.run_id, "m") == []
        with pytest.raises(ActorDeadError):
            await gate.tell(("late", np.ones(2 * MiB, dtype=np.uint8)))
        assert segments_of(rt.run_id, "m") == []  # the refused message's segment too


async def test_large_messages_left_in_a_stopping_mailbox_are_dead_lettered_and_unlinked(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path, stop_timeout=1.0) as rt:
        latch = await rt.spawn(Latch)
        gate = await rt.spawn(Gate, latch, mailbox_size=2)
        await gate.tell("block")
        await gate.tell(("keep", np.ones(2 * MiB, dtype=np.uint8)))
        with pytest.raises(MailboxFullError):
            gate.tell_nowait(("full", np.ones(2 * MiB, dtype=np.uint8)))
        assert len(segments_of(rt.run_id, "m")) == 1  # the refused one was removed
    dead = [e for e in read_events(tmp_path) if e["event"] == "message.dead_lettered"]
    assert dead  # the rest of the run is checked by the leak fixture: no segment remains


def _pid_of(log_dir: Path, name: str) -> int:
    for event in read_events(log_dir):
        if event["event"] == "actor.spawned" and event["actor"] == name:
            return int(event["pid"])
    raise AssertionError(f"{name} was not spawned")
