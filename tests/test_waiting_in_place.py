"""A sender out of credit first waits for it in place: a blocking poll, not its event loop.

White-box: a real ``_Outbound`` on one end of a socket pair, the test playing the
receiver on the other end, so each test controls exactly when credit comes.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from anyio.abc import UNIXSocketStream

from actors import ActorDeadError, ActorRef
from runtime.wire import transport as transport
from runtime.wire.batching import pending
from runtime.wire.deference import calm
from runtime.wire.frames import FrameDecoder, Kind, encode
from runtime.wire.polling import MISSES, PROBE_EVERY
from runtime.wire.transport import _Outbound

pytestmark = pytest.mark.anyio


class _Quiet:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class Receiver:
    """The receiving end: reads what the sender wrote, writes credit when told to."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._decoder = FrameDecoder(1 << 20)

    def frames(self) -> list[tuple[int, int]]:
        """The (kind, ident) of every frame written so far (it must all be there)."""
        self.sock.setblocking(False)
        data = b""
        try:
            while chunk := self.sock.recv(1 << 16):
                data += chunk
        except BlockingIOError:
            pass
        return [(kind, ident) for kind, ident, _ in self._decoder.feed(data)]

    def grant(self, n: int) -> None:
        self.sock.sendall(encode(Kind.CREDIT, n))


@pytest.fixture
async def pair() -> AsyncIterator[tuple[_Outbound, Receiver]]:
    ours, theirs = socket.socketpair()
    stream = await UNIXSocketStream.from_socket(ours)
    ref = ActorRef("b1", "receiver", "/nonexistent")
    conn = _Outbound(ref, stream, 1 << 20, _Quiet(), "b0")  # type: ignore[arg-type]
    receiver = Receiver(theirs)
    async with anyio.create_task_group() as tg:
        tg.start_soon(conn.run_reader)
        receiver.grant(2)
        with anyio.fail_after(5):
            await conn.ready.wait()
        yield conn, receiver
        tg.cancel_scope.cancel()
    await conn.aclose()
    theirs.close()
    # a wait in place defers (SCHED_BATCH) until a timer of this test's loop calms it; the
    # loop ends first, and a thread left so would hand the policy to later tests' processes
    # (Transport.aclose does the same for a real sender)
    calm()


async def test_a_sender_out_of_credit_sends_what_it_holds_then_asks_then_takes_credit_in_place(
    pair: tuple[_Outbound, Receiver],
) -> None:
    conn, receiver = pair
    ran: list[str] = []
    for ident in (1, 2, 3):
        conn.push_batched(int(Kind.TELL), ident, b"m")  # 2 and 3 are held for the step's end
    conn.credit = 0
    receiver.grant(5)  # on its way before the wait: the poll finds it at once
    asyncio.get_running_loop().call_soon(ran.append, "loop")  # runs only if the loop does
    # a budget no scheduler delay outlasts: the credit is there before the wait begins
    assert conn.wait_in_place(1.0)
    assert conn.credit == 5
    assert not ran  # the loop did not run meanwhile
    assert not pending()  # the held tells went out before the question
    assert receiver.frames() == [(Kind.TELL, 1), (Kind.TELL, 2), (Kind.TELL, 3), (Kind.DEMAND, 0)]


async def test_a_wait_in_place_ends_after_its_budget_and_is_then_mostly_skipped(
    pair: tuple[_Outbound, Receiver],
) -> None:
    conn, receiver = pair
    conn.credit = 0
    started = time.perf_counter()
    assert not conn.wait_in_place(0.02)
    assert time.perf_counter() - started >= 0.02
    assert receiver.frames() == [(Kind.DEMAND, 0)]  # asked once
    for _ in range(MISSES - 1):
        assert not conn.wait_in_place(0.001)
    # after MISSES waits in vain, only one wait in PROBE_EVERY is tried; the rest return
    # at once, without a poll (a huge budget would otherwise show)
    tried = 0
    for _ in range(PROBE_EVERY):
        started = time.perf_counter()
        assert not conn.wait_in_place(0.05)
        tried += time.perf_counter() - started >= 0.05
    assert tried == 1
    receiver.grant(1)
    for _ in range(PROBE_EVERY):  # the next probe finds the credit; polls are back
        if conn.wait_in_place(0.05):
            break
    assert conn.credit == 1
    assert conn.in_place.should_poll()


async def test_a_tell_waits_in_the_loop_once_its_wait_in_place_found_nothing(
    pair: tuple[_Outbound, Receiver],
) -> None:
    conn, receiver = pair
    conn.credit = 0
    got = anyio.Event()

    async def tell() -> None:
        await conn.acquire_credit()
        got.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(tell)
        with anyio.fail_after(5):
            while conn.waiters == 0:  # it waits in the loop: this task runs meanwhile
                await anyio.lowlevel.checkpoint()
        receiver.grant(3)
        with anyio.fail_after(5):
            await got.wait()
    assert conn.credit == 2


async def test_an_ask_waits_in_place_no_longer_than_its_deadline(
    pair: tuple[_Outbound, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn, _ = pair
    conn.credit = 0
    monkeypatch.setattr(transport, "IN_PLACE", 30.0)  # would block the test for 30 s
    started = time.perf_counter()
    with pytest.raises(TimeoutError), anyio.fail_after(0.05):
        await conn.acquire_credit(time.monotonic() + 0.05)
    assert time.perf_counter() - started < 10


async def test_a_receiver_that_stops_ends_the_wait_in_place(
    pair: tuple[_Outbound, Receiver],
) -> None:
    conn, receiver = pair
    conn.credit = 0
    receiver.sock.sendall(encode(Kind.CLOSING))
    started = time.perf_counter()
    assert not conn.wait_in_place(5.0)
    assert time.perf_counter() - started < 1.0
    with pytest.raises(ActorDeadError, match="stopped"):
        await conn.acquire_credit()
