"""How a mailbox hands out room: batches for waiting senders, never held from a stuck actor.

White-box: a real ``Mailbox`` with stand-in connections that record the frames written to
them, so each test sets up an exact state of credit and queue and checks who is told what.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from runtime.wire.frames import FrameDecoder, Kind, encode
from runtime.wire.mailbox import Mailbox, _Inbound

pytestmark = pytest.mark.anyio

CAPACITY = 100
BATCH = CAPACITY // 4


class _Quiet:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


async def _any_peer(pid: int) -> bool:
    return True


def mailbox(capacity: int = CAPACITY) -> Mailbox:
    return Mailbox(
        capacity,
        "receiver",
        box="b1",
        max_body=1 << 20,
        log=_Quiet(),
        trace=False,
        is_peer=_any_peer,
    )


class Sender:
    """A connection into ``box`` as the mailbox sees it, recording CREDIT/REVOKE frames."""

    def __init__(self, box: Mailbox, name: str) -> None:
        self.box = box
        conn = _Inbound.__new__(_Inbound)  # no socket: only the mailbox's bookkeeping
        conn.peer_name = name
        conn.granted = conn.owed = conn.queued = conn.done = conn.acked = 0
        conn.revoking = conn.closed = conn.eof = False
        conn.idle = None
        conn.active_at = time.monotonic()
        conn.push = self._push
        conn.push_frame = lambda kind, ident=0, body=b"": self._push(encode(kind, ident, body))
        self.conn = conn
        self.credit: list[int] = []  # the CREDIT frames it was sent, in order
        self.revoked = 0
        self.credited = anyio.Event()
        self.asked_back = anyio.Event()
        self._decoder = FrameDecoder(1 << 20)
        self._next = 1
        box._conns.add(conn)

    def _push(self, data: bytes) -> None:
        for kind, ident, _ in self._decoder.feed(data):
            if kind == Kind.CREDIT:
                self.credit.append(ident)
                self.credited.set()
            elif kind == Kind.REVOKE:
                self.revoked += 1
                self.asked_back.set()

    def give(self, n: int) -> None:
        """The mailbox granted this sender ``n`` slots (taken from its free ones)."""
        self.box._free -= n
        self.conn.granted += n

    def send(self, n: int) -> None:
        frames = [(int(Kind.TELL), self._next + i, b"m") for i in range(n)]
        self._next += n
        self.box._take(self.conn, frames, None)

    def demand(self) -> None:
        self.box._take(self.conn, [(int(Kind.DEMAND), 0, b"")], None)


def handle(box: Mailbox, n: int) -> None:
    """The actor takes and finishes ``n`` messages."""
    for _ in range(n):
        env = box.take()
        assert env is not None
        box.done(env)


def slots(box: Mailbox, *senders: Sender) -> int:
    """Every slot is free, granted, owed or queued: capacity is exact."""
    held = sum(s.conn.granted + s.conn.owed for s in senders)
    return box._free + held + len(box._queue)


def full_with_two_waiting() -> tuple[Mailbox, Sender, Sender]:
    """A mailbox filled by ``a``, then ``a`` and ``b`` asking for room, ``a`` first."""
    box = mailbox()
    a, b = Sender(box, "a"), Sender(box, "b")
    a.give(CAPACITY)
    a.send(CAPACITY)
    a.demand()
    b.demand()
    return box, a, b


async def test_waiting_senders_get_room_in_batches_while_the_actor_has_plenty_queued() -> None:
    box, a, b = full_with_two_waiting()
    handle(box, BATCH - 1)
    assert (a.credit, b.credit) == ([], []), "a batch was split into single slots"
    handle(box, 1)
    assert (a.credit, b.credit) == ([BATCH], [])
    handle(box, BATCH)
    assert b.credit == [BATCH]
    assert slots(box, a, b) == CAPACITY
    box.close()


async def test_a_waiting_sender_gets_each_slot_at_once_when_little_is_queued() -> None:
    box = mailbox()
    a, b = Sender(box, "a"), Sender(box, "b")
    a.give(BATCH)
    a.send(BATCH)
    b.give(CAPACITY - BATCH)  # and sends nothing
    a.demand()
    handle(box, 1)  # fewer queued than a batch: waiting for a batch would idle the actor
    assert a.credit == [1]
    assert slots(box, a, b) == CAPACITY
    box.close()


async def test_free_slots_reach_waiting_senders_when_the_actor_takes_nothing_more() -> None:
    # the actor's handler may be waiting for one of them: a batch would never fill
    box, a, b = full_with_two_waiting()
    handle(box, 10)  # 10 free, 90 queued: not a batch, and plenty queued
    assert (a.credit, b.credit) == ([], [])
    with anyio.fail_after(5):
        await b.credited.wait()
    assert (a.credit, b.credit) == ([5], [5])  # shared out, first come first served
    assert slots(box, a, b) == CAPACITY
    box.close()


async def test_only_senders_that_sent_nothing_lately_are_asked_to_give_room_back() -> None:
    box = mailbox()
    busy, idle, hungry = Sender(box, "busy"), Sender(box, "idle"), Sender(box, "hungry")
    busy.give(30)
    busy.send(10)  # 20 left, about to be used
    idle.give(70)
    idle.conn.active_at = time.monotonic() - 1.0
    hungry.demand()
    assert idle.revoked == 1
    assert busy.revoked == 0
    assert hungry.credit == []  # nothing free yet: it waits for the returned half
    box._take(idle.conn, [(int(Kind.RETURN), 35, b"")], None)
    assert hungry.credit == [35]
    assert slots(box, busy, idle, hungry) == CAPACITY
    box.close()


async def test_senders_whose_credit_is_in_use_are_not_asked_for_it_even_when_none_is_free() -> None:
    # two slots, both granted to senders sending right now: asking them back would cost
    # a round trip per message (eight senders, two slots: eleven requests per message)
    box = mailbox(2)
    a, b, c = Sender(box, "a"), Sender(box, "b"), Sender(box, "c")
    a.give(1)
    b.give(1)
    c.demand()  # nothing queued, nothing free: all of it is on its way
    assert (a.revoked, b.revoked) == (0, 0)
    # but a holder that then sends nothing is asked, by the mailbox's own check
    with anyio.fail_after(5):
        await a.asked_back.wait()
    assert b.revoked == 1
    box._take(a.conn, [(int(Kind.RETURN), 1, b"")], None)
    assert c.credit == [1]
    assert slots(box, a, b, c) == 2
    box.close()


async def test_a_sender_that_connects_while_the_only_holder_gives_room_back_waits_for_it() -> None:
    # the script held all the room and sat idle, so the mailbox had asked it back; a
    # sender connecting then used to start with no room, and its tell_nowait failed
    box = mailbox()
    main, late = Sender(box, "main"), Sender(box, "late")
    main.give(CAPACITY)
    main.conn.active_at = time.monotonic() - 1.0
    box._reclaim()
    assert main.revoked == 1
    box._greet(late.conn)
    assert late.credit == []  # not made ready with none: room is on its way
    box._take(main.conn, [(int(Kind.RETURN), CAPACITY // 2, b"")], None)
    assert late.credit == [CAPACITY // 2]
    assert slots(box, main, late) == CAPACITY
    box.close()
