"""Bounded mailboxes: backpressure for tell, an error for tell_nowait, memory bounded."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from actors import AskTimeoutError, MailboxFullError
from runtime import Runtime
from tests.helpers import Forwarder, Gate, Latch, block, read_events

pytestmark = pytest.mark.anyio


async def test_full_mailbox_makes_tell_wait_and_tell_nowait_raise(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        latch = await rt.spawn(Latch)
        gate = await rt.spawn(Gate, latch, mailbox_size=4, name="gate")
        await block(gate, latch)
        for i in range(4):
            await gate.tell(i)  # fills the mailbox exactly
        with pytest.raises(MailboxFullError, match=r"mailbox of actor gate is full \(capacity 4\)"):
            gate.tell_nowait(99)
        with anyio.move_on_after(0.3) as waited:
            await gate.tell(4)  # must wait: there is no room
        assert waited.cancelled_caught, "tell returned although the mailbox was full"

        async with anyio.create_task_group() as tg:
            tg.start_soon(gate.tell, 4)  # waits for room, then goes through
            await latch.tell("open")
        assert await gate.ask("log", timeout=10) == [0, 1, 2, 3, 4]


async def test_a_cancelled_tell_sends_nothing(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        latch = await rt.spawn(Latch)
        gate = await rt.spawn(Gate, latch, mailbox_size=1)
        await block(gate, latch)
        await gate.tell("kept")
        with anyio.move_on_after(0.2):
            await gate.tell("cancelled")
        await latch.tell("open")
        assert await gate.ask("log", timeout=10) == ["kept"]


async def test_many_senders_never_push_a_mailbox_past_its_capacity(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path, trace=True) as rt:
        latch = await rt.spawn(Latch)
        gate = await rt.spawn(Gate, latch, mailbox_size=5, name="gate")
        senders = [await rt.spawn(Forwarder) for _ in range(3)]
        await block(gate, latch)
        async with anyio.create_task_group() as tg:
            for n, sender in enumerate(senders):
                tg.start_soon(sender.ask, ("send-to", gate, 200, f"s{n}"))
            await latch.tell("open")
        seen = await gate.ask("log", timeout=30)
        assert len(seen) == 600
    depths = [
        e["depth"]
        for e in read_events(tmp_path)
        if e["event"] == "message.received" and e["actor"] == "gate"
    ]
    assert len(depths) >= 600
    assert max(depths) <= 5


async def test_an_ask_waiting_for_mailbox_room_times_out_with_ask_timeout_error(
    tmp_path: Path,
) -> None:
    # the timeout covers every wait of an ask: connecting, room, and the answer
    async with Runtime(log_dir=tmp_path) as rt:
        latch = await rt.spawn(Latch)
        gate = await rt.spawn(Gate, latch, mailbox_size=2, name="gate")
        await block(gate, latch)
        await gate.tell(0)
        await gate.tell(1)  # full
        started = time.monotonic()
        with pytest.raises(AskTimeoutError, match="did not answer within 0.3 s"):
            await gate.ask("log", timeout=0.3)
        assert 0.29 < time.monotonic() - started < 5  # not before its timeout
        await latch.tell("open")
        assert await gate.ask("log", timeout=10) == [0, 1]


async def test_every_sender_hears_its_messages_were_handled_once_the_receiver_runs_idle(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        latch = await rt.spawn(Latch)
        gate = await rt.spawn(Gate, latch, name="gate")
        senders = [await rt.spawn(Forwarder) for _ in range(2)]
        await block(gate, latch)
        # fewer than the acknowledgement batch (a quarter of the mailbox) past a batch, so
        # only the idle acknowledgement can tell the senders about their last messages
        for i, sender in enumerate(senders):
            assert await sender.ask(("send-to", gate, 300, f"s{i}"), timeout=10) == 300
            assert await sender.ask("unacknowledged") == 300
        await latch.tell("open")
        assert len(await gate.ask("log", timeout=10)) == 600
        with anyio.fail_after(5):  # a few ms after the gate ran idle, for both senders
            for sender in senders:
                while await sender.ask("unacknowledged") > 0:
                    pass
