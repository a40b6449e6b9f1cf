"""Transport: the sending side of every ref used in one process.

One connection per receiver (so per sender->receiver pair: FIFO), opened on first use and
kept. A sender may only send a message for which the receiver granted a credit, so a
receiver never holds more than its mailbox capacity, and ``tell_nowait`` knows at once
whether there is room.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import pickle
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from actors import (
    ActorDeadError,
    ActorRef,
    AskTimeoutError,
    MailboxFullError,
    RemoteActorError,
)
from actors._checks import seconds
from actors._record import record
from actors._router import unpickling_refs

from ..observe.logging import Log, emitter
from ..observe.tracing import CURRENT, pack_ids, pair_json, sent_line, type_json
from .batching import flush_now
from .codec import Encoded, Shipper, loads_error, loads_shipped
from .connection import ConnectionLostError, FramedConnection, close_all
from .deference import calm, deferring
from .frames import Kind, ProtocolError
from .polling import YIELD_EVERY, PollBackoff
from .rundir import peer_credentials, removed_while_running

__all__ = ["LEAVE_TIMEOUT", "UNPICKLE_MARK", "SenderInfo", "Transport"]

_CONNECT_AHEAD_TIMEOUT = 1.0
#: how long a process that stops waits for its receivers to acknowledge what it sent them
LEAVE_TIMEOUT = 1.0
#: in the pickle of an ActorRef (``_unpickle_ref``) and of a message with large arrays
#: (``_unpickle_shipped``): one search tells whether a body needs more than ``loads``
UNPICKLE_MARK = b"_unpickle_"
_NO_REFS: list[ActorRef] = []
_TELL = int(Kind.TELL)
#: how long a sender out of credit waits for it in place, without its event loop, before
#: it waits in the loop: as long as a loop of tells may run between two yields
IN_PLACE = YIELD_EVERY


@record
class SenderInfo:
    """Who this process is, as told to every receiver it connects to."""

    name: str
    actor_id: str
    pid: int
    box: str  # names this incarnation: large arrays in replies to it are named after it


class _PendingAsk:
    """An ask waiting for its answer (or bounce, or the connection's loss)."""

    __slots__ = ("_waiter", "body", "bounced", "done", "error", "ok")

    def __init__(self) -> None:
        self.done = False
        self.ok = False
        self.bounced = False
        self.body = b""
        self.error: BaseException | None = None
        # made only if the asker must sleep: most answers come while it polls, and an
        # anyio Event costs microseconds to make
        self._waiter: anyio.Event | None = None

    def settle(self) -> None:
        self.done = True
        if self._waiter is not None:
            self._waiter.set()

    async def wait(self) -> None:
        if not self.done:
            self._waiter = anyio.Event()
            await self._waiter.wait()


class _Outbound(FramedConnection):
    """This process's connection to one receiving actor."""

    def __init__(
        self, ref: ActorRef, stream: anyio.abc.ByteStream, max_body: int, log: Log, sender_id: str
    ) -> None:
        super().__init__(stream, max_body)
        self.ref = ref
        self.pair_json = ""  # sender and receiver keys of traced events (pair_json)
        self.sender_id = sender_id
        # the receiving process, for lending it shared memory (0: unknown, lend nothing)
        self.peer_pid = peer_credentials(self._raw)[0] if self._raw is not None else 0
        self.log = log
        self.credit = 0
        self.capacity = 0
        self.demanded = False
        self.waiters = 0
        self.credit_event: anyio.Event | None = None
        self.send_lock = anyio.Lock()
        self.pending: dict[int, _PendingAsk] = {}
        self.ready = anyio.Event()
        self.closing = False
        self.dead_reason: str | None = None
        self.full_logged_at = 0.0
        self.box = ref.actor_id  # the receiving incarnation, told in its HELLO
        # messages sent and not yet finished by the receiver, oldest first: the ident of a
        # tell, minus that of an ask (a plain int: one is appended per message). A list: an
        # ACK removes a batch with one slice, where a deque pops them one by one
        self.unacked: list[int] = []
        self.acked = 0
        self.in_doubt = 0
        self.polling = PollBackoff()  # whether an asker busy-polls for its answer
        self.in_place = PollBackoff()  # whether a sender out of credit waits in place

    def check_open(self) -> None:
        if self.dead_reason is not None:
            raise ActorDeadError(self.ref.name, self.dead_reason)
        if self.closing:
            raise ActorDeadError(self.ref.name, "stopped")

    def _wake_credit(self) -> None:
        if self.credit_event is not None:
            self.credit_event.set()
            self.credit_event = None

    def take_credit(self) -> bool:
        """Take one mailbox slot if one is free and nobody waits ahead; never waits."""
        if self.credit > 0 and self.waiters == 0:
            self.check_open()
            self.credit -= 1
            return True
        return False

    async def acquire_credit(self, deadline: float = math.inf) -> None:
        """Take one mailbox slot, waiting (in FIFO order) while there is none.

        The first waiter waits in place (``wait_in_place``) before it waits in the loop.
        ``deadline`` (``time.monotonic``) bounds only the wait in place: the caller's
        timeout scope bounds the rest.
        """
        if self.take_credit():
            return
        if self.waiters == 0:
            self.check_open()
            if self.wait_in_place(min(IN_PLACE, deadline - time.monotonic())):
                self.check_open()
                self.credit -= 1
                return
        self.waiters += 1
        try:
            async with self.send_lock:
                while self.credit == 0:
                    self.check_open()
                    if not self.demanded:
                        self.demanded = True
                        self.push_frame(Kind.DEMAND)
                    if self.credit_event is None:
                        self.credit_event = anyio.Event()
                    with deferring():
                        await self.credit_event.wait()
                self.check_open()
                self.credit -= 1
        finally:
            self.waiters -= 1

    def _dispatch_arrived(self) -> bool:
        """Read and dispatch the frames that have arrived; False if they broke the protocol.

        (Then reading stops, and the reader task logs why and closes the connection.)
        """
        frames = self.read_now()
        if frames:
            try:
                self.dispatch(frames)
            except ProtocolError as exc:
                self.fail_reading(exc)
                return False
        return True

    def wait_in_place(self, budget: float) -> bool:
        """Wait for credit in a blocking poll of this socket alone, ``budget`` seconds at most.

        Waiting in the event loop costs a sender a loop round: its held frames written,
        epoll, the reader task woken to dispatch the credit, an event set, the telling
        task resumed. That is far more CPU than the wait needs, and more still in a fan-in,
        where a sender that slept while the others ran starts again cold. Here it is a
        write, a poll and a read. The loop does not run meanwhile, as it does not while a
        loop of tells runs between two yields, and for no longer (``IN_PLACE``). Under
        ``SCHED_BATCH``, as a wait in the loop (``deferring``). After waits in vain (a
        receiver that takes nothing for a while) it is mostly skipped (``PollBackoff``).
        Return whether credit came.
        """
        if budget <= 0 or self.read_failed or not self.in_place.should_poll():
            return False
        flush_now()  # the loop will not run to write what this process holds: now
        if not self.demanded:
            self.demanded = True
            self.push_frame(Kind.DEMAND)
        if self.writing:
            return False  # the socket is full: only the writer task, in the loop, can help
        deadline = time.perf_counter() + budget
        with deferring():
            while self.credit == 0 and not self.closing:
                if not self.wait_readable(deadline - time.perf_counter()):
                    break
                if not self._dispatch_arrived() or self.read_failed:
                    break  # the reader task, in the loop, finds out why
        got = self.credit > 0
        self.in_place.caught(got)
        return got

    def try_acquire_credit(self) -> bool:
        """Take one mailbox slot for ``tell_nowait``, if this sender holds one; never waits.

        Out of credit, it first reads what the receiver has sent (without waiting): room
        the receiver gave back before whatever this sender waited for since (an ask,
        another actor's answer) may still be unread, and refusing then would make the
        bound depend on when this process's event loop last ran.
        """
        self.check_open()  # a dead receiver says so even when no slot is free
        if self.take_credit():
            return True
        if self.waiters == 0 and self._dispatch_arrived() and self.take_credit():
            return True
        if not self.demanded:
            self.demanded = True
            self.push_frame(Kind.DEMAND)
        return False

    async def run_reader(self) -> None:
        error = ""
        try:
            while True:
                self.dispatch(await self.read_frames())
        except ConnectionLostError:
            pass
        except ProtocolError as exc:
            error = str(exc)
            self.log.error("connection.protocol_error", peer=self.ref.name, error=error)
        finally:
            self._lost(error)

    def dispatch(self, frames: list[tuple[int, int, bytes]]) -> None:
        """Act on frames from the receiver; synchronous, so a batch is never split."""
        for kind, ident, body in frames:
            if kind == Kind.CREDIT:
                self.credit += ident
                self.demanded = False
                self._wake_credit()
                self.ready.set()
            elif kind == Kind.REPLY or kind == Kind.FAIL:
                pending = self.pending.get(ident)
                if pending is not None:
                    pending.ok = kind == Kind.REPLY
                    pending.body = body
                    pending.settle()
            elif kind == Kind.REVOKE:
                # always answer, even with 0: the receiver waits for it
                give = (self.credit + 1) // 2
                self.credit -= give
                self.push_frame(Kind.RETURN, give)
            elif kind == Kind.BOUNCE:
                pending = self.pending.get(ident)
                if pending is not None:
                    pending.bounced = True
                    pending.settle()
            elif kind == Kind.ACK:
                del self.unacked[: max(0, ident - self.acked)]
                self.acked = ident
            elif kind == Kind.HELLO:
                hello = json.loads(body)
                self.capacity = int(hello["capacity"])
                self.box = str(hello["box"])
            elif kind == Kind.CLOSING:
                self.stop_sending()
            else:
                raise ProtocolError(f"unexpected frame kind {kind} from a receiver")

    def stop_sending(self) -> None:
        """Send nothing more: the receiver said it stops, or this process does.

        Its end is then no death (``_lost``), and the receiver, reading the end of the
        stream, finishes and acknowledges what came before it.
        """
        self.closing = True
        self._wake_credit()  # a tell waiting for room fails at once with ActorDeadError
        self.send_eof_after_flush()

    def doubtful(self) -> Iterator[int]:
        """The tells not yet acknowledged: in doubt if the connection ended now.

        (An ask in flight is not: its asker gets ActorDeadError instead.)
        """
        return (ident for ident in self.unacked if ident > 0)

    def spin(self, pending: _PendingAsk, budget: float) -> bool:
        """Busy-poll the socket until ``pending`` is settled, for at most ``budget`` seconds.

        An asker that expects its answer within microseconds reads for it rather than
        sleep in epoll (``_polling``). Return whether it came.
        """
        deadline = time.perf_counter() + budget
        while True:
            if not self._dispatch_arrived():
                return False
            if pending.done:
                self.polling.caught(True)
                return True
            if self.read_failed or time.perf_counter() >= deadline:
                self.polling.caught(False)
                return False
            os.sched_yield()  # on a busy machine, let the answering process have the CPU

    def _in_doubt(self, ident: int, **keys: object) -> None:
        """Record message ``ident`` as in doubt: its receiver died before confirming it."""
        self.in_doubt += 1
        self.log.warning(
            "message.dead_lettered",
            msg_id=f"{self.sender_id}.{ident}",
            receiver=self.ref.name,
            reason="in_doubt",
            **keys,
        )

    def _lost(self, error: str) -> None:
        self.dead_reason = "stopped" if self.closing else "died"
        self.closed = True
        self._wake_credit()
        self.ready.set()
        for pending in self.pending.values():
            pending.error = ActorDeadError(self.ref.name, self.dead_reason, "before answering")
            pending.settle()
        # nobody can tell whether the receiver handled these before it went: under
        # at-most-once they are not resent, and each is recorded here (an ask's asker
        # also got ActorDeadError: the record says what became of the message itself)
        for ident in self.pending:
            self._in_doubt(ident, ask=True)
        self.pending.clear()
        for ident in self.doubtful():
            self._in_doubt(ident)
        self.unacked.clear()
        if self.dead_reason == "died":
            self.log.warning(
                "connection.lost",
                peer=self.ref.name,
                peer_id=self.ref.actor_id,
                error=error,
                in_doubt=self.in_doubt,
            )


class Transport:
    """Implements ``actors.Router`` for one process: tell, tell_nowait and ask."""

    def __init__(
        self,
        task_group: anyio.abc.TaskGroup,
        sender: SenderInfo,
        *,
        max_message_size: int,
        log: Log,
        trace: bool,
        shipper: Shipper,
        ask_spin: float,
        await_actor: Callable[[ActorRef, float], Awaitable[None]],
        explain_unreachable: Callable[[ActorRef], str] | None = None,
        on_in_doubt: Callable[[int], None] | None = None,
    ) -> None:
        """Args:
        ask_spin: how long an asker busy-polls for its answer before sleeping (0: never).
        await_actor: waits, after a failed connect at ``since``, until the actor may be
            reachable again (restarted); raises ActorDeadError when it will not be.
        explain_unreachable: why an unreachable actor is gone ("stopped", "died"), where
            this process knows.
        on_in_doubt: told the new total each time messages are recorded in doubt.
        """
        self._tg = task_group
        self.shipper = shipper
        self.sender = sender
        self._hello = json.dumps(
            {"name": sender.name, "actor_id": sender.actor_id, "pid": sender.pid, "box": sender.box}
        ).encode()
        self.max_message_size = max_message_size
        self._log = log
        self.trace = trace
        self._conns: dict[str, _Outbound] = {}
        self._connecting: dict[str, anyio.Event] = {}
        self._ids = itertools.count(1)
        self.await_actor = await_actor
        self.explain_unreachable = explain_unreachable or _unexplained
        #: messages recorded as in doubt because their receiver died before finishing them
        self.in_doubt_total = 0
        self._on_in_doubt = on_in_doubt
        self._yielded_at = 0.0
        self.ask_spin = ask_spin

    # -- actors.Router -------------------------------------------------------------------

    async def tell(self, ref: ActorRef, message: object) -> None:
        now = time.monotonic()
        if now - self._yielded_at > YIELD_EVERY:
            # a handler that computes and tells in a loop must still let the event loop
            # run (stop requests, heartbeats), but one round trip per tell halves the rate
            self._yielded_at = now
            await anyio.lowlevel.checkpoint()
        conn = self._conns.get(ref.address)
        if (
            conn is not None
            and conn.credit > 0  # so connected: credit comes after the receiver's HELLO
            and conn.waiters == 0
            and conn.dead_reason is None
            and not conn.closing
        ):
            # the common case, with no await at all: connected, and room in the mailbox
            body = self.shipper.plain(message, self.max_message_size)
            if body is None:  # large arrays to ship, or an error that explains itself
                body = self.encode("message", message, conn.box, conn.peer_pid).body
            conn.credit -= 1
            ident = next(self._ids)
            if self.trace:
                self._send(conn, Kind.TELL, ident, body, message)
            else:
                conn.push_batched(_TELL, ident, body)
                conn.unacked.append(ident)
            return
        while True:
            conn = await self._connection(ref)
            encoded = self.encode("message", message, conn.box, conn.peer_pid)
            try:
                await conn.acquire_credit()
            except ActorDeadError:
                encoded.discard()
                continue  # that incarnation ended before taking it: wait for the next one
            except BaseException:
                encoded.discard()
                raise
            self._send(conn, Kind.TELL, next(self._ids), encoded.body, message)
            return

    def tell_nowait(self, ref: ActorRef, message: object) -> None:
        conn = self._conns.get(ref.address)
        if conn is None or not conn.ready.is_set() or conn.dead_reason is not None:
            if not os.path.exists(ref.address):
                raise ActorDeadError(ref.name, self.explain_unreachable(ref))
            # refs from spawn, lookup and messages are connected ahead; this one is not yet
            self._tg.start_soon(self._connect_quietly, ref)
            raise MailboxFullError(ref.name, 0)
        encoded = self.encode("message", message, conn.box, conn.peer_pid)
        try:
            if not conn.try_acquire_credit():
                now = time.monotonic()
                if now - conn.full_logged_at > 1.0:  # once a second per receiver at most
                    conn.full_logged_at = now
                    self._log.warning("mailbox.full", receiver=ref.name, capacity=conn.capacity)
                raise MailboxFullError(ref.name, conn.capacity)
        except BaseException:
            encoded.discard()
            raise
        self._send(conn, Kind.TELL, next(self._ids), encoded.body, message)

    async def ask(self, ref: ActorRef, message: object, timeout: float) -> Any:
        timeout = seconds("ask timeout", timeout)
        # no timeout scope around the whole ask: entering and leaving one costs a large share
        # of a polled round trip; each await that can block gets one (``_within``)
        deadline = time.monotonic() + timeout
        try:
            while True:
                pending = await self._ask_once(ref, message, deadline)
                if not pending.bounced:
                    break
                # its incarnation ended without handling it: the next one will
        except TimeoutError:
            raise AskTimeoutError(ref.name, timeout) from None
        if pending.error is not None:
            raise pending.error
        if not pending.ok:
            raise loads_error(pending.body)
        try:
            return await self.loads(pending.body)
        except Exception as exc:
            raise RemoteActorError(
                "undecodable reply",
                f"{type(exc).__name__}: {exc}; is the reply's class "
                "importable in the asking process?",
            ) from exc

    async def _ask_once(self, ref: ActorRef, message: object, deadline: float) -> _PendingAsk:
        pending = _PendingAsk()
        while True:
            conn = self._live(ref)
            if conn is None or not conn.ready.is_set():
                with _within(deadline):
                    conn = await self._connection(ref)
            encoded = self.encode("message", message, conn.box, conn.peer_pid)
            try:
                if not conn.take_credit():
                    with _within(deadline):
                        await conn.acquire_credit(deadline)
                break
            except ActorDeadError:
                encoded.discard()  # ended before taking it: try the next incarnation
            except BaseException:
                encoded.discard()
                raise
        ident = next(self._ids)
        conn.pending[ident] = pending
        try:
            trace_id = self._send(conn, Kind.ASK, ident, encoded.body, message)
            started = time.perf_counter()
            polled = (
                self.ask_spin > 0
                and conn.polling.should_poll()
                and conn.spin(pending, self.ask_spin)
            )
            if not polled:  # (when it was, the answer came with no event-loop round trip)
                with _within(deadline):
                    await pending.wait()
            else:
                now = time.monotonic()
                if now - self._yielded_at > YIELD_EVERY:
                    self._yielded_at = now
                    await anyio.lowlevel.checkpoint()  # other tasks of this loop run too
        finally:
            conn.pending.pop(ident, None)
        if trace_id and not pending.bounced:
            # links the answer to its request: same msg_id
            emitter().later(
                "reply.received",
                {
                    "msg_id": f"{self.sender.box}.{ident}",
                    "trace_id": trace_id,
                    "sender": conn.ref.name,
                    "receiver": self.sender.name,
                    "ok": pending.ok and pending.error is None,
                    "round_trip_s": round(time.perf_counter() - started, 6),
                },
            )
        return pending

    # -- helpers for the runtime -------------------------------------------------------

    def encode(self, what: str, value: object, box: str, pid: int = 0) -> Encoded:
        """Pickle ``value`` for actor ``box`` (process ``pid``); large arrays go to segments."""
        encoded = self.shipper.encode(what, value, self.max_message_size, box, pid)
        if self.trace and encoded.segments:
            for name in encoded.segments:
                self._log.debug("segment.created", segment=name, purpose=what, receiver=box)
        return encoded

    async def loads(self, body: bytes) -> Any:
        """Unpickle a message or reply, then connect to the refs it carried.

        Large arrays sent through shared memory are mapped, and their segments unlinked.
        """
        value, refs = self.decode(body)
        if refs:
            await self.connect_ahead(refs)
        return value

    def decode(self, body: bytes) -> tuple[Any, list[ActorRef]]:
        """Unpickle a message or reply; return it and the refs it carried (to connect)."""
        # ``find``, not ``in``: ``bytes.__contains__`` first tries the needle as an int,
        # which costs more than the search (and than the unpickling of a small message)
        if body.find(UNPICKLE_MARK) < 0:
            # neither a ref nor a large array (their pickles name these functions): the
            # common case, one C call
            return pickle.loads(body), _NO_REFS
        (value, segments), refs = unpickling_refs(loads_shipped, body)
        if segments and self.trace:
            for name, nbytes, offset in segments:
                # a lent segment goes back to its sender's pool once its arrays are gone
                self._log.debug(
                    "segment.attached",
                    segment=name,
                    nbytes=nbytes,
                    unlinked=not offset,
                    lent=bool(offset),
                )
        return value, refs

    async def connect_ahead(self, refs: list[ActorRef]) -> None:
        """Connect to ``refs`` now, so that ``tell_nowait`` on them works at once."""
        todo = [r for r in refs if r.address not in self._conns]
        if not todo:
            return
        with anyio.move_on_after(_CONNECT_AHEAD_TIMEOUT):
            for ref in todo:
                await self._connect_quietly(ref)

    async def ensure_connected(self, ref: ActorRef) -> None:
        """Connect to ``ref`` (raising ``ActorDeadError`` if it is not running)."""
        await self._connection(ref)

    def connections(self) -> list[_Outbound]:
        """The connections open now."""
        return list(self._conns.values())

    def connection_at(self, address: str, pid: int) -> _Outbound | None:
        """The connection open now to the mailbox at ``address``, if process ``pid`` is at
        its other end (not an incarnation before or after it)."""
        conn = self._conns.get(address)
        return conn if conn is not None and conn.peer_pid == pid else None

    def in_doubt(self) -> int:
        """Messages recorded in doubt, and those that would be if every connection ended now."""
        return self.in_doubt_total + sum(
            conn.in_doubt + sum(1 for _ in conn.doubtful()) for conn in self._conns.values()
        )

    async def leave(self, timeout: float = LEAVE_TIMEOUT) -> None:
        """Tell every receiver that nothing more is coming; wait until each has finished.

        A receiver that reads the end of a connection finishes the messages it queued from
        it, acknowledges them, and closes: a process that stops right after telling then
        records nothing in doubt. What is still unacknowledged after ``timeout`` seconds
        (a slow or hung receiver) is recorded in doubt, as when a receiver dies.
        """
        conns = [conn for conn in self._conns.values() if not conn.closed]
        for conn in conns:
            conn.stop_sending()
        with anyio.move_on_after(max(0.0, timeout)):
            for conn in conns:
                await conn.finished.wait()

    async def aclose(self) -> None:
        """Close every connection; pending asks fail with ``ActorDeadError``."""
        await close_all(self._conns.values())
        self._conns.clear()
        calm()  # this thread may be SCHED_BATCH still, from a wait for credit just now

    # -- internals -----------------------------------------------------------------------

    def _send(self, conn: _Outbound, kind: Kind, ident: int, body: bytes, message: object) -> str:
        """Write the message; return its trace id ("" when tracing is off)."""
        is_ask = kind == Kind.ASK
        if not self.trace:
            if is_ask:
                conn.push_frame(kind, ident, body)
            else:
                conn.push_batched(kind, ident, body)
            conn.unacked.append(-ident if is_ask else ident)
            return ""
        msg_id = f"{self.sender.box}.{ident}"
        cause = CURRENT.get()
        parent_id, trace_id = cause if cause is not None else ("", msg_id)
        traced = Kind.TRACED_ASK if is_ask else Kind.TRACED_TELL
        log = emitter()
        # stamped before the frame leaves: once it has, the receiver may stamp its arrival
        # before this process runs again, and a merged log would show it received first
        stamp = log.stamp()
        if is_ask:
            conn.push_frame(traced, ident, pack_ids(trace_id, parent_id, body))
        else:
            conn.push_batched(traced, ident, pack_ids(trace_id, parent_id, body))
        conn.unacked.append(-ident if is_ask else ident)
        log.queue(
            sent_line(
                stamp,
                msg_id,
                trace_id,
                parent_id,
                conn.pair_json,
                type_json(message),
                is_ask,
                len(body),
            )
        )
        return trace_id

    async def _connect_quietly(self, ref: ActorRef) -> None:
        with contextlib.suppress(ActorDeadError):
            await self._connection(ref)

    def _live(self, ref: ActorRef) -> _Outbound | None:
        """The connection to ``ref``'s incarnation unless it died or is closing."""
        conn = self._conns.get(ref.address)
        if conn is None or conn.dead_reason is not None or conn.closing:
            return None
        return conn

    async def _connection(self, ref: ActorRef) -> _Outbound:
        while True:
            conn = self._live(ref)
            if conn is not None:
                if conn.ready.is_set():
                    return conn  # the common case: no event-loop round trip per message
                await conn.ready.wait()
                if conn.dead_reason is None and not conn.closing:
                    return conn
                continue  # that incarnation is going: reconnect, maybe to the next one
            connecting = self._connecting.get(ref.address)
            if connecting is None:
                break
            await connecting.wait()
        self._connecting[ref.address] = done = anyio.Event()
        try:
            return await self._open(ref)
        finally:
            del self._connecting[ref.address]
            done.set()

    async def _open(self, ref: ActorRef) -> _Outbound:
        while True:
            since = time.monotonic()
            try:
                stream = await anyio.connect_unix(ref.address)
                break
            except OSError as exc:
                run_dir = os.path.dirname(ref.address)
                # no restart can bring it back; one stat, on a failed connect only
                if not os.path.isdir(run_dir):  # noqa: ASYNC240
                    raise ActorDeadError(
                        ref.name, "unreachable", removed_while_running(run_dir)
                    ) from exc
                # down, or between two incarnations: wait for a restart (bounded), or raise
                await self.await_actor(ref, since)
        conn = _Outbound(ref, stream, self.max_message_size, self._log, self.sender.box)
        conn.pair_json = pair_json(self.sender.name, ref.name)
        self._conns[ref.address] = conn
        self._tg.start_soon(self._serve, conn)
        conn.push_frame(Kind.HELLO, 0, self._hello)
        await conn.ready.wait()
        return conn

    async def _serve(self, conn: _Outbound) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.run_writer)
            await conn.run_reader()
            tg.cancel_scope.cancel()
        if self._conns.get(conn.ref.address) is conn:
            del self._conns[conn.ref.address]
        if conn.in_doubt:
            self.in_doubt_total += conn.in_doubt
            if self._on_in_doubt is not None:
                self._on_in_doubt(self.in_doubt_total)
        await conn.aclose()


def _within(deadline: float) -> contextlib.AbstractContextManager[anyio.CancelScope]:
    """A scope that raises ``TimeoutError`` at ``deadline`` (``time.monotonic``)."""
    # anyio's clock on asyncio is the loop's, which is time.monotonic
    return anyio.fail_after(max(0.0, deadline - time.monotonic()))


def _unexplained(ref: ActorRef) -> str:
    return "unreachable"
