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
from runtime.shm.pool import segment_state
from runtime.shm.segments import segments_of
from tests.helpers import Forwarder, Gate, Latch, SharedUser, block, read_events

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
        assert segments_of(rt.run_id, "m") == []  # no one-off segment was needed
    events = read_events(tmp_path)
    created = [e for e in events if e["event"] == "segment.created"]
    attached = [e for e in events if e["event"] == "segment.attached"]
    # two messages with a large array, and one large reply, each lent from its sender's pool
    assert [e["purpose"] for e in created] == ["message", "message", "reply"]
    assert len(attached) == 3
    assert all(e["lent"] and not e["unlinked"] for e in attached)
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
        lent = segments_of(rt.run_id, "pa0.1.")
        assert len(lent) == 3  # queued, not yet read: three segments lent from our pool
        os.kill(_pid_of(tmp_path, "gate-1"), signal.SIGKILL)
        await rt.stop(gate)  # returns once the runtime has seen it exit
        with pytest.raises(ActorDeadError):
            await gate.tell(("late", np.ones(2 * MiB, dtype=np.uint8)))
        # what the killed receiver held is free again: the next arrays reuse it
        user = await rt.spawn(SharedUser)
        for i in range(3):
            array = np.full(2 * MiB, i, dtype=np.uint8)
            assert await user.ask(("describe", array)) == (
                float(array.sum()),
                array.shape,
                "uint8",
                True,
            )
        assert sorted(segments_of(rt.run_id, "pa0.1.")) == sorted(lent)
        assert segments_of(rt.run_id, "m") == []


async def test_large_messages_left_in_a_stopping_mailbox_are_dead_lettered_and_unlinked(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path, stop_timeout=1.0) as rt:
        latch = await rt.spawn(Latch)
        gate = await rt.spawn(Gate, latch, mailbox_size=2)
        await block(gate, latch)
        for _ in range(2):  # fills both slots
            await gate.tell(("keep", np.ones(2 * MiB, dtype=np.uint8)))
        with pytest.raises(MailboxFullError):
            gate.tell_nowait(("full", np.ones(2 * MiB, dtype=np.uint8)))
        states = sorted(segment_state(n) for n in segments_of(rt.run_id, "pa0.1."))
        assert states == ["free", "lent", "lent"]  # the refused one was given back
    dead = [e for e in read_events(tmp_path) if e["event"] == "message.dead_lettered"]
    assert dead  # the rest of the run is checked by the leak fixture: no segment remains


async def test_a_stream_of_large_arrays_reuses_one_segment_once_each_is_read(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        user = await rt.spawn(SharedUser)
        for i in range(20):
            array = np.arange(2 * MiB // 8, dtype=np.float64) * i
            total, *_ = await user.ask(("describe", array))
            assert total == float(array.sum())
            await user.ask("pid")  # the handler that used it has returned: it is given back
        assert len(segments_of(rt.run_id, "pa0.1.")) == 1


async def test_an_array_its_receiver_keeps_is_never_overwritten_by_later_ones(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        latch = await rt.spawn(Latch)
        gate = await rt.spawn(Gate, latch)
        await gate.tell(("keep", np.full(2 * MiB, 1, dtype=np.uint8)))
        for value in range(2, 6):  # each lent, read, dropped: given back and lent again
            await gate.tell(("drop", np.full(2 * MiB, value, dtype=np.uint8)))
            await gate.tell("clear")
            await gate.tell(("keep", np.full(2 * MiB, 1, dtype=np.uint8)))
        await gate.tell(("keep", np.full(2 * MiB, 9, dtype=np.uint8)))
        kept = await gate.ask("log")
        assert [tag for tag, _ in kept] == ["keep", "keep"]
        for (_, array), value in zip(kept, [1, 9], strict=True):
            assert np.array_equal(array, np.full(2 * MiB, value, dtype=np.uint8))


async def test_arrays_lent_by_a_killed_sender_stay_readable_and_go_with_their_reader(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        latch = await rt.spawn(Latch)
        gate = await rt.spawn(Gate, latch)
        fwd = await rt.spawn(Forwarder, name="fwd")
        data = np.arange(2 * MiB // 8, dtype=np.float64)
        assert await fwd.ask(("tell-nowait", gate, ("keep", data))) == "sent"
        [(_, kept)] = await gate.ask("log")  # the gate holds it now
        assert np.array_equal(kept, data)
        lent = segments_of(rt.run_id, f"p{fwd.actor_id}.1.")
        assert len(lent) == 1
        async with rt.probe() as probe:
            os.kill(_pid_of(tmp_path, "fwd"), signal.SIGKILL)
            await probe.expect("actor.restarted", actor="fwd")
        # the runtime saw the kill: the segment is orphaned, not unlinked, while it is read
        assert segments_of(rt.run_id, f"p{fwd.actor_id}.1.") == lent
        [(_, kept)] = await gate.ask("log")
        assert np.array_equal(kept, data)
        del kept
        await gate.ask("clear")
        assert segments_of(rt.run_id, f"p{fwd.actor_id}.1.") == []  # its reader let go


def _pid_of(log_dir: Path, name: str) -> int:
    for event in read_events(log_dir):
        if event["event"] == "actor.spawned" and event["actor"] == name:
            return int(event["pid"])
    raise AssertionError(f"{name} was not spawned")
