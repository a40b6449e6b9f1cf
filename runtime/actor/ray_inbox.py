"""RayMailbox: an actor's bounded mailbox on the Ray backend, in the Ray worker hosting it.

Ray calls (``deliver`` batches of tells, ``ask``) arrive concurrently and in any order;
each carries its sender's sequence number, and waits here for its turn, so that the
queue holds every sender's messages in the order they were sent. A call then waits for
room (the mailbox holds ``capacity`` messages at most) and returns once its messages are
finished: that is how its sender gets its credit back.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc

from ..observe.logging import Log, emitter
from ..observe.tracing import pair_json, received_line
from ..wire.ray_transport import BOUNCED, Payload, TellItem, park, unpark

__all__ = ["RayEnvelope", "RayMailbox", "RaySenderState"]


class RaySenderState:
    """One sender, as this mailbox knows it (the envelope's ``conn``)."""

    __slots__ = (
        "next_seq",
        "pair_json",
        "peer_box",
        "peer_id",
        "peer_name",
        "peer_pid",
        "skipped",
        "turns",
    )

    def __init__(self, box: str, name: str, actor_id: str, pid: int, owner: str) -> None:
        self.peer_box = box
        self.peer_name = name
        self.peer_id = actor_id
        self.peer_pid = pid
        self.pair_json = pair_json(name, owner)
        self.next_seq = 0
        self.turns: dict[int, asyncio.Future[None]] = {}
        #: numbers of calls cancelled before their turn came: their turn is passed on
        self.skipped: set[int] = set()


class _Batch:
    """The messages of one call, and the call waiting for them to be finished."""

    __slots__ = ("done", "left")

    def __init__(self, left: int) -> None:
        self.left = left
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def finish_one(self) -> None:
        self.left -= 1
        if self.left <= 0 and not self.done.done():
            self.done.set_result(None)


class RayEnvelope:
    """A message waiting in the mailbox, still pickled."""

    __slots__ = (
        "answer",
        "batch",
        "body",
        "conn",
        "ident",
        "is_ask",
        "msg_id",
        "parent_id",
        "parked",
        "trace_id",
    )

    def __init__(
        self,
        conn: RaySenderState,
        ident: int,
        body: Payload,
        trace_id: str,
        parent_id: str,
        answer: asyncio.Future[tuple[Any, Any]] | None,
    ) -> None:
        self.conn = conn
        self.ident = ident
        #: the pickle, or a key to the message parked with its large buffers
        self.body, self.parked = park(body)
        self.is_ask = answer is not None
        self.answer = answer
        self.trace_id = trace_id
        self.parent_id = parent_id
        self.msg_id = f"{conn.peer_box}.{ident}"
        self.batch: _Batch | None = None

    @property
    def sender(self) -> str:
        return self.conn.peer_name


class RayMailbox:
    """Queues the messages of Ray calls, in each sender's order, at most ``capacity``."""

    def __init__(
        self,
        capacity: int,
        owner: str,
        *,
        box: str,
        log: Log,
        trace: bool,
        on_open: Callable[[], None],
    ) -> None:
        self.capacity = capacity
        self.owner = owner
        self.box = box
        self._log = log
        self._trace = trace
        self._queue: deque[RayEnvelope] = deque()
        self._senders: dict[str, RaySenderState] = {}
        self._waiter: anyio.Event | None = None
        self._room: anyio.Event | None = None
        self.closing = False
        self._on_open = on_open
        #: unused on Ray (nothing to poll): kept for the incarnation's common code
        self.spin = 0.0

    # -- the Ray calls' side -------------------------------------------------------------

    def hello(self, box: str, name: str, actor_id: str, pid: int) -> RaySenderState:
        """Register a sender (again: a sender says hello once per incarnation)."""
        state = self._senders.get(box)
        if state is None:
            state = self._senders[box] = RaySenderState(box, name, actor_id, pid, self.owner)
        return state

    async def deliver(self, box: str, seq: int, items: list[TellItem]) -> int:
        """Queue a batch of tells in its turn; return how many were taken once finished.

        Fewer than all if the mailbox closed first: the sender gives the rest to the next
        incarnation.
        """
        state = self._senders[box]
        batch = _Batch(len(items))
        taken = 0
        await self._turn(state, seq)
        try:
            for ident, body, trace_id, parent_id in items:
                if not await self._wait_room():
                    break
                env = RayEnvelope(state, ident, body, trace_id, parent_id, None)
                env.batch = batch
                self._put(env)
                taken += 1
        finally:
            self._next_turn(state)
        batch.left -= len(items) - taken
        if batch.left > 0:
            await batch.done
        return taken

    async def ask(
        self, box: str, seq: int, ident: int, body: Payload, trace_id: str, parent_id: str
    ) -> tuple[Any, Any]:
        """Queue an ask in its turn; return ``(ok, pickled answer)`` or ``(BOUNCED, None)``."""
        state = self._senders[box]
        answer: asyncio.Future[tuple[Any, Any]] = asyncio.get_running_loop().create_future()
        await self._turn(state, seq)
        try:
            if not await self._wait_room():
                return BOUNCED, None
            self._put(RayEnvelope(state, ident, body, trace_id, parent_id, answer))
        finally:
            self._next_turn(state)
        return await answer

    async def _turn(self, state: RaySenderState, seq: int) -> None:
        if state.next_seq == seq or self.closing:
            return
        turn = state.turns[seq] = asyncio.get_running_loop().create_future()
        try:
            await turn
        except BaseException:
            # cancelled (an ask whose asker gave up): the calls after it must not wait
            state.turns.pop(seq, None)
            if turn.done() and not turn.cancelled():
                self._next_turn(state)  # its turn had come: pass it on
            else:
                state.skipped.add(seq)
            raise

    def _next_turn(self, state: RaySenderState) -> None:
        state.next_seq += 1
        while state.next_seq in state.skipped:
            state.skipped.discard(state.next_seq)
            state.next_seq += 1
        turn = state.turns.pop(state.next_seq, None)
        if turn is not None and not turn.done():
            turn.set_result(None)

    async def _wait_room(self) -> bool:
        while len(self._queue) >= self.capacity and not self.closing:
            if self._room is None:  # one event for every call waiting: each looks again
                self._room = anyio.Event()
            await self._room.wait()
        return not self.closing

    def _put(self, env: RayEnvelope) -> None:
        self._queue.append(env)
        if self._trace and env.trace_id:
            log = emitter()
            log.write(
                received_line(
                    log.stamp(),
                    env.msg_id,
                    env.trace_id,
                    env.parent_id,
                    env.conn.pair_json,
                    len(self._queue),
                )
            )
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    # -- the incarnation's side (the same calls as the local Mailbox) ---------------------

    async def listen(self, address: str) -> None:
        """Open for senders (their ``hello`` waits for this)."""
        self._on_open()

    async def serve(self, task_group: anyio.abc.TaskGroup) -> None:
        """Nothing to serve: Ray calls bring the messages."""

    def take(self) -> RayEnvelope | None:
        return self._queue.popleft() if self._queue else None

    async def get(self) -> RayEnvelope | None:
        """Take the next message; None once closed and empty."""
        while not self._queue:
            if self.closing:
                return None
            self._waiter = waiter = anyio.Event()
            await waiter.wait()
        return self._queue.popleft()

    def done(self, env: RayEnvelope) -> None:
        """``env`` was handled, failed or dead-lettered."""
        if env.parked:
            unpark(env.parked)  # not decoded (dead-lettered): its buffers are let go
        if env.batch is not None:
            env.batch.finish_one()
        if self._room is not None:
            self._room.set()
            self._room = None

    def bounce(self, env: RayEnvelope) -> bool:
        """Give an ask back unhandled: its sender asks the next incarnation."""
        if env.answer is None or env.answer.done():
            return False
        env.answer.set_result((BOUNCED, None))
        return True

    def reply(self, env: RayEnvelope, ok: bool, body: bytes) -> bool:
        """Send the answer to an ask; False if the asker gave up."""
        if env.answer is None or env.answer.done():
            return False
        if self._trace:
            emitter().flush()  # the asker may read the logs once answered
        env.answer.set_result((ok, body))
        return True

    def close(self) -> None:
        """Take no new messages; those queued are still handed out by ``get``."""
        if self.closing:
            return
        self.closing = True
        if self._room is not None:
            self._room.set()
            self._room = None
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def take_leftovers(self) -> list[RayEnvelope]:
        left = list(self._queue)
        self._queue.clear()
        return left

    async def aclose(self) -> None:
        self.close()
        # calls still waiting for their turn would wait for ever: let them see the end
        for state in self._senders.values():
            for turn in state.turns.values():
                if not turn.done():
                    turn.set_result(None)
            state.turns.clear()
