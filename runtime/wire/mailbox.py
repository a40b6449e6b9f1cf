"""Mailbox: an actor's bounded inbox, fed by one connection per sender.

Capacity is exact: a sender may send only what the mailbox granted it as credit, and the
mailbox never grants more than its free slots. A slot is held from the grant until the
actor takes the message sent in it (the message being handled holds none). A sender that
connects gets all the free room if no other sender holds any, else half of it; if none is
free, holders are asked for half of theirs and its first credit waits for that (or is
none, after ``_STARVING_CHECK``). A freed slot goes back to the sender whose message freed
it, in batches of a quarter of the mailbox, at once when the sender runs short, and at
the end of the loop step in which the actor took all that was queued if its handler is
still at work then: a lone sender to an actor stuck in its handler holds all the room.
Unless senders are waiting for room (they ran out of credit and said so). Then freed
slots go to those, first come first served, and in batches too while the actor has more
than a batch queued: a sender woken for a few slots at a time costs both processes a
wake-up per few messages. Batches never hold slots back from a stuck actor's senders: if
the actor takes nothing for ``_STARVING_CHECK`` (its handler may be waiting for one of
them), whatever is free is shared out at once. A sender that holds credit and has sent
nothing for ``_IDLE`` gives half of it back while others wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import select
import socket
import stat
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.abc import SocketAttribute

from ..observe.logging import Log, emitter
from ..observe.tracing import BOX, pair_json, received_line, unpack_ids
from .batching import end_of_step, flush_now
from .connection import STALL_LIMIT, ConnectionLostError, FramedConnection, close_all
from .frames import Kind, ProtocolError, encode
from .polling import YIELD_EVERY, PollBackoff
from .rundir import peer_credentials

__all__ = ["Envelope", "ListenerLostError", "Mailbox"]

_HELLO_TIMEOUT = 5.0
#: the listener's queue of connections not yet accepted (the kernel caps it at somaxconn)
_BACKLOG = 65536
#: far above any real HELLO (actor names are at most 200 characters)
_HELLO_MAX = 8192
#: errors of ``accept`` that say nothing about the listener: out of descriptors or memory
#: for now, or a connection that went away before it was taken
_ACCEPT_TRANSIENT = frozenset(
    (
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOBUFS,
        errno.ENOMEM,
        errno.ECONNABORTED,
        errno.EPROTO,
        errno.EPERM,
        errno.EINTR,
    )
)
#: the first wait before ``accept`` is tried again after such an error; doubled up to the max
_ACCEPT_RETRY, _ACCEPT_RETRY_MAX = 0.01, 1.0
# frame kinds as plain ints: compared for every frame
_TELL, _ASK = int(Kind.TELL), int(Kind.ASK)
_TRACED_TELL, _TRACED_ASK = int(Kind.TRACED_TELL), int(Kind.TRACED_ASK)
_PLAIN, _TRACED = (_TELL, _ASK), (_TRACED_TELL, _TRACED_ASK)
_ACK_DELAY = 0.002
#: how often a mailbox that keeps senders waiting checks for idle holders and for no progress
_STARVING_CHECK = 0.002
#: a sender that holds credit and has sent nothing for this long is asked for it back
_IDLE = 0.005


class ListenerLostError(Exception):
    """Internal: the listening socket failed for good; the actor must crash, not linger."""


def _parse_hello(body: bytes) -> tuple[str, str, str]:
    """A sender's HELLO: its name, actor id and box.

    Raises:
        ProtocolError: anything but a JSON object with those three strings.
    """
    if len(body) > _HELLO_MAX:
        raise ProtocolError(f"HELLO of {len(body)} bytes is above the {_HELLO_MAX} limit")
    try:
        hello = json.loads(body)
    except (ValueError, RecursionError) as exc:  # (UnicodeDecodeError is a ValueError)
        raise ProtocolError(f"HELLO is not JSON: {type(exc).__name__}") from None
    if not isinstance(hello, dict):
        raise ProtocolError(f"HELLO is a JSON {type(hello).__name__}, not an object")
    fields = [hello.get(key) for key in ("name", "actor_id", "box")]
    if not all(isinstance(field, str) for field in fields):
        raise ProtocolError("HELLO needs the strings name, actor_id and box")
    name, actor_id, box = cast(list[str], fields)
    if not BOX.fullmatch(box):
        raise ProtocolError(f"HELLO names no actor incarnation: {box[:100]!r}")
    return name, actor_id, box


class _Inbound(FramedConnection):
    """One sender's connection into this mailbox."""

    def __init__(self, stream: anyio.abc.ByteStream, max_body: int, pid: int) -> None:
        super().__init__(stream, max_body)
        self.peer_pid = pid
        self.peer_name = "?"
        self.pair_json = ""  # sender and receiver keys of traced events (pair_json)
        self.peer_id = "?"
        self.peer_box = "?"
        self.done = 0  # messages from this sender handled, failed or dead-lettered
        self.acked = 0  # ... of which the sender was told
        self.queued = 0  # ... and still to be finished
        self.idle: anyio.Event | None = None
        self.granted = 0
        self.owed = 0  # slots its messages freed, to give back with the next batch
        self.revoking = False
        self.active_at = 0.0  # time.monotonic() when it last sent or was given credit
        self.eof = False

    #: whether it was sent its first credit (its sender is ready only then); a class
    #: default: only a sender that connected while no room was free waits for it
    greeted = True


class Envelope:
    """A message waiting in the mailbox, still pickled."""

    __slots__ = ("body", "conn", "ident", "is_ask")

    # untraced messages share these: one fewer thing to set per message
    trace_id = ""
    parent_id = ""

    def __init__(self, conn: _Inbound, ident: int, body: bytes, is_ask: bool) -> None:
        self.conn = conn
        self.ident = ident
        self.body = body
        self.is_ask = is_ask

    @property
    def msg_id(self) -> str:
        return f"{self.conn.peer_box}.{self.ident}"

    @property
    def sender(self) -> str:
        return self.conn.peer_name


class TracedEnvelope(Envelope):
    """A message that came with its trace id and the id of the message that caused it."""

    # msg_id is a plain field here, not the base class's property: it is in every event of
    # the message, made once
    __slots__ = ("msg_id", "parent_id", "trace_id")
    msg_id: str

    def __init__(
        self,
        conn: _Inbound,
        ident: int,
        body: bytes,
        is_ask: bool,
        trace_id: str,
        parent_id: str,
        msg_id: str,
    ) -> None:
        # no super().__init__: one call fewer per traced message
        self.conn = conn
        self.ident = ident
        self.body = body
        self.is_ask = is_ask
        self.trace_id = trace_id
        self.parent_id = parent_id
        self.msg_id = msg_id  # "<sender box>.<ident>"


class Mailbox:
    """Accepts authenticated connections and queues their messages, at most ``capacity``."""

    def __init__(
        self,
        capacity: int,
        owner: str,
        *,
        box: str,
        max_body: int,
        log: Log,
        trace: bool,
        is_peer: Callable[[int], Awaitable[bool]],
    ) -> None:
        self.capacity = capacity
        self.owner = owner
        self.box = box
        self._max_body = max_body
        self._log = log
        self._trace = trace
        self._is_peer = is_peer
        self._queue: deque[Envelope] = deque()
        self._free = capacity
        self._conns: set[_Inbound] = set()
        self._hungry: deque[_Inbound] = deque()  # senders waiting for room, in order
        self._owing: set[_Inbound] = set()  # connections with owed > 0
        self._starving: asyncio.TimerHandle | None = None
        self._released = 0  # slots freed while senders waited
        self._handling = False  # a message was taken and is not done yet
        self._handing_back = False  # _hand_back is due at the end of this loop step
        # credit and acks go back in batches of a quarter of the mailbox: smaller batches
        # wake a fast sender more often for fewer messages, and its receiver runs dry
        # between batches and idles
        self._flush_at = max(1, capacity // 4)
        self._waiter: anyio.Event | None = None
        self._listener: anyio.abc.SocketListener | None = None
        self._path: Path | None = None
        self._accept_scope = anyio.CancelScope()
        self._ack_due = False  # the mailbox ran empty: acknowledge every sender soon
        self._ack_wake: anyio.Event | None = None
        self.closing = False
        #: how long the actor busy-polls for its next message before sleeping (0: never)
        self.spin = 0.0
        self._polling = PollBackoff()
        self._yielded_at = 0.0
        # the senders' sockets in the order they became readable, for busy polling (as
        # the event loop sees them): a sender's tells that reached the kernel before
        # another sender's ask are queued before it
        self._poller = select.epoll()
        self._by_fd: dict[int, _Inbound] = {}

    # -- serving -------------------------------------------------------------------------

    async def listen(self, path: str) -> None:
        """Bind the listening socket (inside the run's private 0700 directory)."""
        self._path = Path(path)
        # bound here, not by anyio.create_unix_listener: that binds in a worker thread,
        # which would start a thread in every actor process for a bind that never blocks
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(path).st_mode):  # an earlier incarnation's, left over
                os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            os.chmod(path, 0o600)
            sock.listen(_BACKLOG)
            self._listener = await anyio.abc.SocketListener.from_socket(sock)
        except BaseException:
            sock.close()
            raise

    async def serve(self, task_group: anyio.abc.TaskGroup) -> None:
        """Accept connections until ``close``.

        Raises:
            ListenerLostError: the listening socket broke; an actor no sender can reach
                must not live on.
        """
        listener = self._listener
        assert listener is not None
        task_group.start_soon(self._acknowledge)
        try:
            with self._accept_scope:
                failures = 0
                while not self.closing:
                    try:
                        stream = await listener.accept()
                    except anyio.BrokenResourceError as exc:
                        failures += 1
                        await self._accept_failed(exc, failures)
                        continue
                    except anyio.ClosedResourceError:
                        if self.closing:
                            break
                        self._log.error("mailbox.listener_lost", error="closed")
                        raise ListenerLostError("the listening socket was closed") from None
                    if failures:
                        self._log.info("mailbox.accept_recovered", failures=failures)
                        failures = 0
                    task_group.start_soon(self._serve_connection, stream)
        finally:
            # a closed listener makes connects fail at once instead of queueing unanswered
            await listener.aclose()

    async def _accept_failed(self, exc: anyio.BrokenResourceError, failures: int) -> None:
        """Log the first of a run of failed accepts, and wait before the next try.

        A connection left in the backlog (out of descriptors: EMFILE) keeps the listener
        readable: trying again at once would spin.

        Raises:
            ListenerLostError: the error is not one the listener outlives.
        """
        cause = exc.__cause__
        code = cause.errno if isinstance(cause, OSError) else None
        if code not in _ACCEPT_TRANSIENT:
            self._log.error("mailbox.listener_lost", error=repr(cause or exc))
            raise ListenerLostError(f"accepting connections failed: {cause or exc!r}") from exc
        delay = min(_ACCEPT_RETRY_MAX, _ACCEPT_RETRY * 2 ** min(failures - 1, 16))
        if failures == 1:
            self._log.warning(
                "mailbox.accept_failed",
                errno=errno.errorcode.get(code or 0, str(code)),
                error=str(cause),
                retry_in_s=delay,
            )
        await anyio.sleep(delay)

    async def _serve_connection(self, stream: anyio.abc.SocketStream) -> None:
        pid, uid = peer_credentials(stream.extra(SocketAttribute.raw_socket))
        if uid != os.getuid() or not await self._is_peer(pid):
            self._log.warning(
                "connection.rejected",
                peer_pid=pid,
                peer_uid=uid,
                reason="not a process of this run",
            )
            await stream.aclose()
            return
        conn = _Inbound(stream, self._max_body, pid)
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.run_writer)
            try:
                await self._read(conn)
                if conn.eof:
                    # a sender that stopped writing still reads: its messages get their
                    # replies, acks and bounces before the connection closes
                    if conn.queued:
                        conn.idle = anyio.Event()
                        await conn.idle.wait()
                    ack = self._ack_frame(conn)
                    if ack:
                        conn.push(ack)
                    await conn.wait_flushed()
            finally:
                self._drop(conn)
                # closing ends the writer task: cancelling it instead would leave a
                # traceback holding the connection, and its buffers, until a full gc
                await conn.aclose()

    async def _read(self, conn: _Inbound) -> None:
        try:
            with anyio.fail_after(_HELLO_TIMEOUT):
                frames = await conn.read_frames()
            kind, _, body = frames[0]
            if kind != Kind.HELLO:
                raise ProtocolError("the first frame must be HELLO")
            conn.peer_name, conn.peer_id, conn.peer_box = _parse_hello(body)
            conn.pair_json = pair_json(conn.peer_name, self.owner)
            self._conns.add(conn)
            self._watch(conn)
            greeting = {"capacity": self.capacity, "box": self.box}
            conn.push_frame(Kind.HELLO, 0, json.dumps(greeting).encode())
            if self.closing:
                conn.push_frame(Kind.CREDIT, 0)
                conn.push_frame(Kind.CLOSING)
            else:
                self._greet(conn)
            self._on_frames(conn, frames[1:])
            while True:
                self._on_frames(conn, await conn.read_frames())
        except ConnectionLostError:
            conn.eof = True
        except (ProtocolError, TimeoutError, ValueError, KeyError) as exc:
            self._log.warning(
                "connection.protocol_error",
                peer=conn.peer_name,
                peer_pid=conn.peer_pid,
                error=str(exc) or type(exc).__name__,
            )
        except Exception as exc:
            # whatever a peer's bytes make go wrong costs that peer's connection, never
            # the actor: the task running this must not fail
            self._log.error(
                "connection.failed", peer=conn.peer_name, peer_pid=conn.peer_pid, exc_info=exc
            )

    def _on_frames(self, conn: _Inbound, frames: list[tuple[int, int, bytes]]) -> None:
        lines: list[bytes] | None = [] if self._trace else None
        try:
            self._take(conn, frames, lines)
        finally:
            if lines is not None:
                # one write for the batch, and for the handled events queued before it
                emitter().write(b"".join(lines))

    def _take(
        self, conn: _Inbound, frames: list[tuple[int, int, bytes]], lines: list[bytes] | None
    ) -> None:
        queue = self._queue
        append = queue.append
        # a plain message only counts: the connection's counts are settled once per batch,
        # or before any other frame (those read or change them)
        granted = conn.granted
        taken = 0
        stamp = ""
        try:
            for kind, ident, body in frames:
                if kind in _PLAIN:
                    if taken >= granted:
                        raise ProtocolError("message sent without credit")
                    taken += 1
                    append(Envelope(conn, ident, body, kind == _ASK))
                    continue
                conn.granted -= taken
                conn.queued += taken
                taken = 0
                if kind in _TRACED:
                    if conn.granted <= 0:
                        raise ProtocolError("message sent without credit")
                    conn.granted -= 1
                    conn.queued += 1
                    msg_id = f"{conn.peer_box}.{ident}"
                    try:
                        trace_id, parent_id, body = unpack_ids(body, msg_id)
                    except ValueError as exc:
                        raise ProtocolError(str(exc)) from None
                    append(
                        TracedEnvelope(
                            conn, ident, body, kind == _TRACED_ASK, trace_id, parent_id, msg_id
                        )
                    )
                    if lines is not None:
                        if not stamp:
                            stamp = emitter().stamp()  # the frames of one read arrived together
                        lines.append(
                            received_line(
                                stamp, msg_id, trace_id, parent_id, conn.pair_json, len(queue)
                            )
                        )
                elif kind == Kind.DEMAND:
                    self._on_demand(conn)
                elif kind == Kind.RETURN:
                    given = min(ident, conn.granted)
                    conn.granted -= given
                    conn.revoking = False
                    self._free += given
                    self._feed_hungry()
                else:
                    raise ProtocolError(f"unexpected frame kind {kind} from a sender")
                granted = conn.granted
        finally:
            conn.granted -= taken
            conn.queued += taken
            conn.active_at = time.monotonic()
            if queue:
                self._wake()

    # -- credit --------------------------------------------------------------------------

    def _ack_frame(self, conn: _Inbound) -> bytes:
        """The ACK telling ``conn``'s sender what is finished, counted as told; b"" if none."""
        if conn.done <= conn.acked:
            return b""
        self._log_before_ack()
        conn.acked = conn.done
        return encode(Kind.ACK, conn.done)

    def _grant(self, conn: _Inbound, n: int) -> None:
        """Give ``conn`` ``n`` free slots (at most all) and its acknowledgement, in one write."""
        n = min(n, self._free)
        self._free -= n
        conn.granted += n
        conn.greeted = True
        conn.push(self._ack_frame(conn) + encode(Kind.CREDIT, n))

    def _greet(self, conn: _Inbound) -> None:
        """Give a sender that just connected its first credit, or ask room back for it.

        All the free room if no other sender holds any: a lone sender can then fill the
        mailbox with ``tell_nowait``. Else half of it, so that a sender connecting later
        still finds room at once. If none is free, the slots freed for other senders are
        lent to it, and the holders are asked for half of theirs back: its first credit
        (its sender is not ready before) comes with that, or with nothing after
        ``_STARVING_CHECK``.
        """
        holders = [c for c in self._conns if c is not conn and (c.granted or c.owed)]
        if not holders:
            self._grant(conn, self._free)
            return
        if not self._free:
            for other in list(self._owing):
                self._free += other.owed
                other.owed = 0
                self._owing.discard(other)
        if self._free:
            self._grant(conn, (self._free + 1) // 2)
            return
        asked = False
        for other in holders:
            if other.granted > 0:
                # one asked already (it sat idle) gives its room back all the same
                asked = True
                if not other.revoking:
                    other.revoking = True
                    other.push_frame(Kind.REVOKE)
        if not asked:
            self._grant(conn, 0)  # the room is queued: the mailbox is full
            return
        conn.greeted = False
        self._hungry.append(conn)
        if self._starving is None:
            self._check_starving_later()

    def _flush(self, conn: _Inbound) -> None:
        """Return owed credit and acknowledge finished messages, in one write."""
        frames = self._ack_frame(conn)
        if conn.owed:
            conn.granted += conn.owed
            frames += encode(Kind.CREDIT, conn.owed)
            conn.owed = 0
        self._owing.discard(conn)
        if frames:
            conn.push(frames)

    def _on_demand(self, conn: _Inbound) -> None:
        if self.closing:
            return
        self._reclaim()  # someone is short of room: take it back from idle holders
        if conn.owed:
            self._flush(conn)
            return
        for other in list(self._owing):  # slots freed for idle senders: lend them here
            self._free += other.owed
            other.owed = 0
            self._owing.discard(other)
        hungry = self._hungry
        if not hungry and self._free:
            self._grant(conn, self._free)  # the only one short of room: what is free, now
            return
        if conn not in hungry:
            hungry.append(conn)
        self._feed_hungry()
        if conn in hungry and self._starving is None:
            self._check_starving_later()

    def _feed_hungry(self, *, batched: bool = True) -> None:
        """Give free slots to the waiting senders, first come first served.

        ``batched``: in batches of a quarter of the mailbox while the actor has more than
        that queued; at once when it has less, so that it does not run dry waiting for a
        batch. Otherwise whatever is free, shared out now.
        """
        hungry = self._hungry
        batch = self._flush_at if batched else 1
        while (
            hungry
            and self._free
            and (self._free >= batch or self._free + batch >= len(self._queue))
        ):
            conn = hungry.popleft()
            if conn in self._conns:
                free = self._free
                self._grant(conn, max(min(free, batch), free // (1 + len(hungry))))
                conn.active_at = time.monotonic()  # time to use them before it counts as idle

    def _check_starving_later(self) -> None:
        self._starving = asyncio.get_running_loop().call_later(
            _STARVING_CHECK, self._check_starving, self._released
        )

    def _check_starving(self, released: int) -> None:
        """While senders wait for room: take it back from idle holders; unstick a stuck actor.

        Runs every ``_STARVING_CHECK`` seconds while any sender waits.
        """
        self._starving = None
        hungry = self._hungry
        if self.closing or not hungry:
            return
        if self._released == released:
            # the actor took nothing meanwhile (its handler waits, maybe for one of the
            # waiting senders): batches would never fill, so share out what is free now
            self._feed_hungry(batched=False)
        self._reclaim()
        for conn in hungry:
            if not conn.greeted:
                self._grant(conn, 0)  # no room came back: it is ready, and still waits
        if hungry:
            self._check_starving_later()

    def _reclaim(self) -> None:
        """Ask senders that hold credit and sent nothing for ``_IDLE`` to give half of it back.

        Not busy senders: a sender between batches holds credit it is about to use (or
        has just used, its messages still on their way), and asking for it back costs two
        frames and gains nothing. With eight senders and two slots, asking every holder
        made each message cost eleven requests for room, eleven grants and ten such asks.
        """
        idle_since = time.monotonic() - _IDLE
        for other in self._conns:
            if other.granted > 0 and other.active_at < idle_since and not other.revoking:
                other.revoking = True
                other.push_frame(Kind.REVOKE)

    def _release(self, env: Envelope) -> None:
        """The actor took ``env``: its slot is free again."""
        conn = env.conn
        if self.closing or self._hungry or conn not in self._conns:
            free = self._free + 1
            self._free = free
            if self._hungry and not self.closing:
                self._released += 1
                # _feed_hungry's test, inline: this runs per message while senders wait
                if free >= self._flush_at or free + self._flush_at >= len(self._queue):
                    self._feed_hungry()
            return
        owed = conn.owed + 1
        conn.owed = owed
        if owed == 1:  # a connection owed credit is in _owing, and only such a one
            self._owing.add(conn)
        if owed >= self._flush_at or (not self._queue and conn.granted < self._flush_at):
            # in batches while the sender holds plenty (fewer frames, fewer wake-ups); at
            # once when it may run short before the next batch, or when it asks (DEMAND)
            self._flush(conn)
        elif not self._queue and not self._handing_back:
            # the actor took everything: if its handler still runs when this step of the
            # loop ends (it waits, for this very sender, maybe), the room goes back then,
            # so that a sender's tell_nowait finds all there is; an actor that is done and
            # waits for more keeps the batches
            self._handing_back = True
            end_of_step(self._hand_back)

    def _hand_back(self) -> None:
        """End of a step after the actor took all it had: return freed room if it handles."""
        self._handing_back = False
        if self._handling and not self.closing:
            for conn in list(self._owing):
                self._flush(conn)

    # -- the actor's side ----------------------------------------------------------------

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def _drained(self) -> bool:
        return self.closing and not self._queue and all(c.eof or c.closed for c in self._conns)

    def take(self) -> Envelope | None:
        """Take the next message if one is queued (no await: the common case).

        None also if its sender is ``choked``: it reads too little of what it was sent,
        and handling its messages would only queue more (``get`` waits for it).
        """
        if not self._queue:
            return None
        env = self._queue.popleft()
        if env.conn.choked:
            self._queue.appendleft(env)
            return None
        self._handling = True
        self._release(env)
        return env

    async def get(self) -> Envelope | None:
        """Take the next message; None once closed and every sender is done."""
        while True:
            while not self._queue:
                if self._drained():
                    return None
                if self.spin > 0 and self._polling.should_poll() and self._spin(self.spin):
                    # the message came without the event loop: let it run now and then
                    # (heartbeats, stop requests, acknowledgements)
                    now = time.monotonic()
                    if now - self._yielded_at > YIELD_EVERY:
                        self._yielded_at = now
                        await anyio.lowlevel.checkpoint()
                    if self._queue:
                        break
                    continue
                self._waiter = waiter = anyio.Event()
                await waiter.wait()
                self._yielded_at = time.monotonic()
            env = self.take()
            if env is not None:
                return env
            await self._wait_for_reader(self._queue[0].conn)

    async def _wait_for_reader(self, conn: _Inbound) -> None:
        """Wait until ``conn``'s peer reads what it was sent; cut it off if it stalls.

        Its messages wait meanwhile, and those of every sender after it: the mailbox is
        one queue. So a peer may stall it for ``STALL_LIMIT`` at most.
        """
        if await conn.wait_room(STALL_LIMIT):
            return
        self._log.warning(
            "connection.stalled",
            peer=conn.peer_name,
            peer_pid=conn.peer_pid,
            queued_bytes=conn.backlog,
            stalled_s=STALL_LIMIT,
        )
        conn.abort()

    def _spin(self, budget: float) -> bool:
        """Busy-poll the senders' sockets for a message, for at most ``budget`` seconds.

        An actor that is asked again microseconds after answering (a request loop, a
        pipeline) would otherwise sleep in epoll and pay a wake-up longer than the round
        trip. Only while messages keep coming in time: after misses it mostly sleeps.
        """
        flush_now()  # the loop does not run while we poll: what we hold must go now
        deadline = time.perf_counter() + budget
        poll = self._poller.poll
        by_fd = self._by_fd
        while True:
            for fd, _ in poll(0):
                conn = by_fd.get(fd)
                if conn is None:
                    continue
                frames = conn.read_now()
                if frames:
                    try:
                        self._on_frames(conn, frames)
                    except ProtocolError as exc:
                        conn.fail_reading(exc)  # its reader task logs it and closes
            if self._queue:
                self._polling.caught(True)
                return True
            if self.closing or time.perf_counter() >= deadline:
                self._polling.caught(False)
                return False
            os.sched_yield()

    def _log_before_ack(self) -> None:
        # an acknowledged message is one its sender will not report in doubt: the
        # events saying it was handled must be on disk first
        if self._trace:
            emitter().flush()

    async def _acknowledge(self) -> None:
        """Once the mailbox runs empty, tell every sender what was finished (``_ACK_DELAY``).

        Each sender learns which of its messages are done (so a crash leaves few in doubt)
        without one frame, and one wake-up of the sender, per message. Every sender, not
        only the one whose message was last: in a fan-in, the others' last batches would
        otherwise stay unacknowledged until they send again, and be reported in doubt if
        the actor then died.
        """
        while True:
            if not self._ack_due:
                self._ack_wake = wake = anyio.Event()
                await wake.wait()
            await anyio.sleep(_ACK_DELAY)
            self._ack_due = False
            for conn in list(self._conns):
                if not conn.closed and (conn.done > conn.acked or conn.owed):
                    self._flush(conn)

    def done(self, env: Envelope) -> None:
        """``env`` was handled, failed or dead-lettered: its sender may forget it.

        Told in batches (with credit, or when the mailbox runs empty), so that a sender
        that loses the connection knows which of its messages are in doubt.
        """
        self._handling = False
        conn = env.conn
        conn.done += 1
        conn.queued -= 1
        if conn.queued == 0 and conn.idle is not None:
            # (closed or not: the connection's task waits for this to finish and close it)
            conn.idle.set()
        if conn.closed:
            return
        if conn.done - conn.acked >= self._flush_at:
            self._flush(conn)
        elif not self._queue and not self._ack_due:
            # idle: acknowledge soon, once for everything finished meanwhile
            self._ack_due = True
            if self._ack_wake is not None:
                self._ack_wake.set()
                self._ack_wake = None

    def bounce(self, env: Envelope) -> bool:
        """Give an ask back unhandled: its sender sends it again to the next incarnation."""
        if env.conn.closed:
            return False
        env.conn.push_frame(Kind.BOUNCE, env.ident)
        return True

    def reply(self, env: Envelope, ok: bool, body: bytes) -> bool:
        """Send the answer to an ask; False if the asker is gone."""
        if env.conn.closed:
            return False
        # the asker may read the logs once answered: what led to the answer is on disk
        self._log_before_ack()
        env.conn.push_frame(Kind.REPLY if ok else Kind.FAIL, env.ident, body)
        return True

    def close(self) -> None:
        """Stop taking new messages: refuse connections and tell senders to stop sending.

        Messages already sent still arrive and are handed out by ``get``.
        """
        if self.closing:
            return
        self.closing = True
        if self._starving is not None:
            self._starving.cancel()
            self._starving = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
        self._accept_scope.cancel()
        for conn in self._conns:
            if not conn.greeted:
                self._grant(conn, 0)  # its sender waits for this to be ready
            conn.push_frame(Kind.CLOSING)
        self._wake()

    def take_leftovers(self) -> list[Envelope]:
        """Remove and return every message still queued."""
        left = list(self._queue)
        self._queue.clear()
        return left

    async def aclose(self) -> None:
        """Close every connection; senders see the actor gone."""
        self.close()
        for conn in self._conns:
            # every sender learns what was finished: nothing is left in doubt
            ack = b"" if conn.closed else self._ack_frame(conn)
            if ack:
                conn.push(ack)
        await close_all(self._conns)
        self._poller.close()
        if self._listener is not None:
            await self._listener.aclose()

    def _watch(self, conn: _Inbound) -> None:
        fd = conn.fileno()
        if fd >= 0:
            self._by_fd[fd] = conn
            with contextlib.suppress(OSError):
                self._poller.register(fd, select.EPOLLIN)

    def _unwatch(self, conn: _Inbound) -> None:
        for fd, known in list(self._by_fd.items()):
            if known is conn:
                del self._by_fd[fd]
                with contextlib.suppress(OSError, ValueError):
                    self._poller.unregister(fd)

    def _drop(self, conn: _Inbound) -> None:
        self._unwatch(conn)
        if conn in self._conns:
            self._conns.discard(conn)
            self._owing.discard(conn)
            if conn in self._hungry:
                self._hungry.remove(conn)
            self._free += conn.granted + conn.owed
            conn.granted = conn.owed = 0
            self._feed_hungry()
        self._wake()
