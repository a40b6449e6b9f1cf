"""The mailbox bound, exactly: what ``tell_nowait`` accepts, and what a receiver holds.

A receiver *holds* the messages it received and has not yet taken to handle: the one its
handler is running does not count. With a single sender and a receiver stuck in its
handler, ``tell_nowait`` succeeds exactly ``mailbox_size`` times, then raises, and a
``tell`` waits until the receiver takes a message. With several senders the room is
leased among them, so one may be refused while another holds unused room; the receiver
still never holds more than ``mailbox_size``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from actors import Actor, ActorRef, MailboxFullError
from runtime import Runtime
from tests.helpers import Latch, read_events

pytestmark = pytest.mark.anyio

#: far more than any mailbox here: a sender that gets this far was never refused
LIMIT = 1000


class Box(Actor):
    """On ("block", latch), waits for the latch to open before taking anything else.

    Keeps every other message; "count" says how many.
    """

    def __init__(self) -> None:
        super().__init__()
        self.got: list[Any] = []

    async def receive(self, message: Any) -> Any:
        match message:
            case ("block", ActorRef() as latch):
                await latch.ask("wait", timeout=60)
            case "count":
                return len(self.got)
            case "log":
                return list(self.got)
            case _:
                self.got.append(message)
        return None


class Filler(Actor):
    """On ("fill", ref, tag): ``tell_nowait`` to ref until refused; returns how many went."""

    async def receive(self, message: Any) -> Any:
        match message:
            case ("fill", ActorRef() as target, str(tag)):
                return fill(target, tag)
        return None


def fill(target: ActorRef, tag: str) -> int:
    sent = 0
    while sent < LIMIT:
        try:
            target.tell_nowait((tag, sent))
        except MailboxFullError:
            break
        sent += 1
    return sent


async def block(rt: Runtime, box: ActorRef) -> ActorRef:
    """Make ``box`` wait in its handler until the returned latch gets "open"."""
    latch = await rt.spawn(Latch)
    await box.tell(("block", latch))
    with anyio.fail_after(10):
        while await latch.ask("waiters", timeout=10) < 1:
            pass  # each ask is a barrier: the latch has handled what came before it
    return latch


async def tell_waits_for_room(box: ActorRef, latch: ActorRef) -> None:
    """A ``tell`` to the full, stuck ``box`` returns only once it takes a message."""
    told = anyio.Event()

    async def late() -> None:
        await box.tell("late")
        told.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(late)
        with anyio.move_on_after(0.3):
            await told.wait()
        assert not told.is_set(), "tell returned while the mailbox was full"
        await latch.tell("open")  # the box takes what it holds: now there is room
        with anyio.fail_after(10):
            await told.wait()


def max_depth(log_dir: Path, name: str) -> int:
    """The most messages the actor ``name`` held, as its ``message.received`` events say."""
    depths = [
        e["depth"]
        for e in read_events(log_dir)
        if e["event"] == "message.received" and e["actor"] == name
    ]
    assert depths
    return max(depths)


@pytest.mark.parametrize("size", [1, 8, 64])
async def test_a_lone_sender_fills_the_mailbox_exactly_then_is_refused(
    tmp_path: Path, size: int
) -> None:
    async with Runtime(log_dir=tmp_path, trace=True) as rt:
        box = await rt.spawn(Box, mailbox_size=size, name="box")
        latch = await block(rt, box)  # the message in the handler holds no slot
        assert fill(box, "a") == size
        with pytest.raises(MailboxFullError, match=f"capacity {size}"):
            box.tell_nowait("refused")
        await tell_waits_for_room(box, latch)
        with anyio.fail_after(10):
            log = await box.ask("log", timeout=10)
        assert log == [("a", i) for i in range(size)] + ["late"]
    assert max_depth(tmp_path, "box") == size


@pytest.mark.parametrize("senders", [2, 4])
async def test_several_senders_never_push_the_mailbox_past_its_bound(
    tmp_path: Path, senders: int
) -> None:
    size = 8
    async with Runtime(log_dir=tmp_path, trace=True) as rt:
        box = await rt.spawn(Box, mailbox_size=size, name="box")
        # the script alone first: it fills the mailbox exactly
        latch = await block(rt, box)
        assert fill(box, "script") == size
        fillers = [await rt.spawn(Filler) for _ in range(senders)]
        # connected to a full mailbox: no room for them
        counts = [await f.ask(("fill", box, f"f{n}"), timeout=10) for n, f in enumerate(fillers)]
        assert counts == [0] * senders
        await latch.tell("open")
        with anyio.fail_after(10):
            assert await box.ask("count", timeout=10) == size

        # then all of them at once, the room leased among them: each is refused once its
        # lease is used up, and asks for more; rounds until the mailbox is full
        latch = await block(rt, box)
        held = 0
        rounds: list[list[int]] = []
        with anyio.fail_after(20):
            while held < size:
                counts = [0] * (senders + 1)

                async def one(n: int, f: ActorRef, counts: list[int] = counts) -> None:
                    counts[n] = await f.ask(("fill", box, f"r{len(rounds)}.{n}"), timeout=10)

                async with anyio.create_task_group() as tg:
                    for n, f in enumerate(fillers):
                        tg.start_soon(one, n, f)
                counts[senders] = fill(box, f"r{len(rounds)}.script")
                rounds.append(counts)
                held += sum(counts)
                assert held <= size, rounds
                await latch.ask("waiters", timeout=10)  # a round trip: room may come back
        assert held == size
        await tell_waits_for_room(box, latch)
        with anyio.fail_after(10):
            assert await box.ask("count", timeout=10) == 2 * size + 1
    assert max_depth(tmp_path, "box") == size
