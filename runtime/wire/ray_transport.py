"""RayTransport: the sending side of every ref used in one process, on the Ray backend.

Runs in the script's process and in every Ray worker that hosts an actor. Ray gives no
order for calls to an async actor and no backpressure, so this adds both:

- **FIFO per pair.** Each sender numbers its calls to each receiver incarnation (tell
  batches and asks share one sequence); the receiver's mailbox takes them in that order.
- **Credit.** A sender holds at most the receiver's mailbox capacity in messages not yet
  finished (handled, failed or dead-lettered): a ``deliver`` call returns once every
  message of its batch is finished, and gives its credit back. ``tell`` waits for credit;
  ``tell_nowait`` raises ``MailboxFullError`` without it.
- **Batching.** Tells to one receiver made in one step of the event loop go in one call.

The receiver is found by name: the Ray actor named after the actor id in the run's
namespace. Ray handles never reach user code.
"""

from __future__ import annotations

import contextlib
import itertools
import pickle
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import numpy as np
import numpy.typing as npt

from actors import (
    ActorDeadError,
    ActorRef,
    AskTimeoutError,
    MailboxFullError,
    MessageNotSerializableError,
    MessageTooLargeError,
    RemoteActorError,
)
from actors._checks import seconds
from actors._router import unpickling_refs

from ..observe.logging import Log, emitter
from ..observe.tracing import CURRENT, pair_json, sent_line, type_json
from .codec import Encoded, _first_line, _type_name, loads_error
from .polling import YIELD_EVERY

__all__ = [
    "BOUNCED",
    "CLOSING",
    "EXIT_NOTE",
    "LARGE",
    "MAX_BATCH",
    "OutOfBand",
    "Payload",
    "RayTransport",
    "TellItem",
    "dumps_for_ray",
    "encode_for_ray",
    "pack_batch",
    "park",
    "ray_actor_name",
    "run_namespace",
    "unpack_batch",
    "unpark",
]

#: tells per ``deliver`` call at most: larger batches wait longer for their credit back
MAX_BATCH = 256
#: how long a sender that ran out of credit waits for a good part of it to come back
_REFILL_WAIT = 0.002
#: an ask's answer when its incarnation stopped before handling it: ask the next one
BOUNCED = "bounced"
#: ``hello``'s answer from an incarnation that is stopping: wait for the next one
CLOSING = "closing"
_NO_REFS: list[ActorRef] = []
_MARK = b"_unpickle_"  # in the pickle of an ActorRef (``_unpickle_ref``)
_MAIN = b"__main__"
#: the line a Ray worker writes to its .stderr file when its actor calls ``os._exit``
EXIT_NOTE = "actors: os._exit({})"
#: buffers of this many bytes or more in a message travel out of band (``OutOfBand``)
LARGE = 1 << 20
#: one tell in a ``deliver`` batch: (ident, pickled message, trace id, parent id)
TellItem = tuple[int, "Payload", str, str]


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def run_namespace(run_id: str) -> str:
    """The Ray namespace of a run: its actors' names are unique there."""
    return f"actors-{run_id}"


def ray_actor_name(actor_id: str) -> str:
    """The name of the Ray actor hosting ``actor_id``'s current incarnation."""
    return f"actor-{actor_id}"


def dumps_for_ray(what: str, obj: object, limit: int) -> bytes:
    """Pickle ``obj`` so that a Ray worker can load it.

    Classes defined in the script (``__main__``) are pickled by value, as Ray does: a
    worker cannot import the script. Anything else by reference, which is faster.

    Raises:
        MessageNotSerializableError: ``obj`` cannot be pickled.
        MessageTooLargeError: the pickle is above ``limit`` bytes.
    """
    try:
        body = pickle.dumps(obj, protocol=5)
        if body.find(_MAIN) >= 0:
            from ray import cloudpickle

            body = bytes(cloudpickle.dumps(obj, protocol=5))  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise MessageNotSerializableError(what, _type_name(obj), _first_line(exc)) from exc
    if len(body) > limit:
        raise MessageTooLargeError(len(body), limit, stopped=False)
    return body


class OutOfBand:
    """A message whose large buffers travel beside its pickle, as numpy arrays in a Ray
    call's arguments: Ray's object store carries them, zero-copy on the receiver's node."""

    __slots__ = ("arrays", "body")

    def __init__(self, body: bytes, arrays: list[npt.NDArray[np.uint8]]) -> None:
        self.body = body
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.body) + sum(a.nbytes for a in self.arrays)

    def __reduce__(self) -> tuple[type[OutOfBand], tuple[bytes, list[npt.NDArray[np.uint8]]]]:
        return (OutOfBand, (self.body, self.arrays))


#: a message as it travels: its pickle, or its pickle and its large buffers
Payload = bytes | OutOfBand


def encode_for_ray(what: str, obj: object, limit: int) -> Payload:
    """``dumps_for_ray``, with buffers of ``LARGE`` bytes or more (numpy arrays) out of
    band: they go through Ray's object store instead of being copied into the pickle.

    Raises:
        MessageNotSerializableError: ``obj`` cannot be pickled.
        MessageTooLargeError: the pickle, large buffers aside, is above ``limit`` bytes.
    """
    large: list[pickle.PickleBuffer] = []

    def keep_out(buffer: pickle.PickleBuffer) -> bool:
        if buffer.raw().nbytes >= LARGE:
            large.append(buffer)
            return False
        return True

    try:
        body = pickle.dumps(obj, protocol=5, buffer_callback=keep_out)
        if body.find(_MAIN) >= 0:
            return dumps_for_ray(what, obj, limit)  # by value, and in band
    except Exception as exc:
        raise MessageNotSerializableError(what, _type_name(obj), _first_line(exc)) from exc
    if len(body) > limit:
        raise MessageTooLargeError(len(body), limit, stopped=False)
    if not large:
        return body
    return OutOfBand(body, [np.frombuffer(b.raw(), dtype=np.uint8) for b in large])


def pack_batch(batch: list[TellItem]) -> tuple[bytes, list[npt.NDArray[np.uint8]]]:
    """A batch of tells as one pickle, and the large buffers of its messages beside it.

    One pickle for the batch, not a list for Ray to serialize item by item: Ray's
    serializer costs more per item than the batch's whole pickle.
    """
    arrays: list[npt.NDArray[np.uint8]] = []
    items = []
    for ident, body, trace_id, parent_id in batch:
        if isinstance(body, OutOfBand):
            items.append((ident, body.body, trace_id, parent_id, len(body.arrays)))
            arrays.extend(body.arrays)
        else:
            items.append((ident, body, trace_id, parent_id, 0))
    return pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL), arrays


def unpack_batch(blob: bytes, arrays: list[npt.NDArray[np.uint8]]) -> list[TellItem]:
    """The tells that ``pack_batch`` packed."""
    batch: list[TellItem] = []
    taken = 0
    for ident, body, trace_id, parent_id, count in pickle.loads(blob):
        if count:
            batch.append(
                (ident, OutOfBand(body, arrays[taken : taken + count]), trace_id, parent_id)
            )
            taken += count
        else:
            batch.append((ident, body, trace_id, parent_id))
    return batch


#: messages with large buffers waiting in this process's mailbox, by the key that stands
#: for them in their envelope's body (``park``)
_parked: dict[int, OutOfBand] = {}
_park_keys = itertools.count(1)
#: an envelope body that stands for a parked message (it holds ``_MARK``, so an
#: incarnation decodes it through the transport)
_PARKED = b"_unpickle_parked:"


def park(payload: Payload) -> tuple[bytes, int]:
    """The envelope body for ``payload``, and its parking key (0: nothing parked)."""
    if isinstance(payload, bytes):
        return payload, 0
    key = next(_park_keys)
    _parked[key] = payload
    return _PARKED + str(key).encode(), key


def unpark(key: int) -> None:
    """Forget a parked message that will not be decoded (dead-lettered)."""
    _parked.pop(key, None)


@dataclass(frozen=True, slots=True)
class RaySender:
    """Who this process is, as told to every receiver it says hello to."""

    name: str
    actor_id: str
    pid: int
    box: str


class _Pool:
    """Stands in for the local backend's segment pool: nothing to trim or close on Ray."""

    def trim(self) -> int:
        return 0

    def close(self) -> None:
        pass


class _Shipper:
    """The part of ``codec.Shipper`` an incarnation uses, for Ray (no shared memory)."""

    def __init__(self) -> None:
        self.pool = _Pool()

    def plain(self, obj: object, limit: int) -> bytes | None:
        try:
            return dumps_for_ray("reply", obj, limit)
        except Exception:  # ``encode`` raises the error that says what is wrong
            return None


class _Peer:
    """This process's link to one receiver incarnation."""

    def __init__(self, ref: ActorRef, handle: Any, box: str, capacity: int, pid: int) -> None:
        self.ref = ref
        self.handle = handle
        self.box = box
        self.capacity = capacity
        self.pid = pid
        self.credit = capacity
        self.refill = max(1, min(capacity // 4, MAX_BATCH))
        self.seq = itertools.count()
        self.batch: list[TellItem] = []
        self.flush_due = False
        #: tell batches sent and not yet finished: (call, items, time.time() sent), oldest
        #: first
        self.inflight: deque[tuple[Any, list[TellItem], float]] = deque()
        self.inflight_wake: anyio.Event | None = None
        self.sent_wake: anyio.Event | None = None
        self.credit_wake: anyio.Event | None = None
        self.waiters = 0
        self.dead_reason: str | None = None  # "died" or "stopped" once unusable
        #: once its worker is gone: (ended in order, when the driver saw it end)
        self.end: tuple[bool, float | None] = (False, None)
        self.ending: anyio.Event | None = None
        self.pair_json = ""
        self.full_logged_at = 0.0
        self.in_doubt = 0

    def wake_credit(self) -> None:
        if self.credit_wake is not None:
            self.credit_wake.set()
            self.credit_wake = None
        if self.dead_reason is not None and self.sent_wake is not None:
            self.sent_wake.set()  # its settling task ends
            self.sent_wake = None

    async def acquire_credit(self) -> None:
        """Take one credit, waiting for it; ActorDeadError if the incarnation goes."""
        self.waiters += 1
        try:
            starved = self.credit <= 0
            while self.credit <= 0 and self.dead_reason is None:
                await self._credit_changed()
            if starved and self.credit < self.refill and self.inflight:
                # out of credit, wait a moment for a good part of it to come back, not the
                # first bit: else each batch holds what one return allowed, and stays small
                with anyio.move_on_after(_REFILL_WAIT):
                    while self.credit < self.refill and self.inflight and not self.dead_reason:
                        await self._credit_changed()
        finally:
            self.waiters -= 1
        if self.dead_reason is not None:
            raise ActorDeadError(self.ref.name, self.dead_reason)
        self.credit -= 1

    async def _credit_changed(self) -> None:
        if self.credit_wake is None:  # one event for every waiting sender
            self.credit_wake = anyio.Event()
        await self.credit_wake.wait()


class RayTransport:
    """Implements ``actors.Router`` on Ray for one process: tell, tell_nowait and ask."""

    def __init__(
        self,
        task_group: anyio.abc.TaskGroup,
        sender: RaySender,
        *,
        namespace: str,
        max_message_size: int,
        log: Log,
        trace: bool,
        await_actor: Callable[[ActorRef, float], Awaitable[None]],
        how_it_ended: Callable[[ActorRef, str], Awaitable[tuple[bool, float | None]]],
        explain_unreachable: Callable[[ActorRef], str] | None = None,
        on_in_doubt: Callable[[int], None] | None = None,
    ) -> None:
        """Args:
        namespace: the run's Ray namespace, where its actors are named.
        await_actor: waits, after a failed attempt at ``since``, until the actor may be
            reachable again (restarted); raises ActorDeadError when it will not be.
        how_it_ended: ``(in_order, ended_at)`` of an incarnation (its box), asked when
            its worker is gone with calls in flight (``protocol.HowItEnded``).
        explain_unreachable: why an unreachable actor is gone, where this process knows.
        on_in_doubt: told the new total each time messages are recorded in doubt.
        """
        self._tg = task_group
        self.sender = sender
        self.namespace = namespace
        self.max_message_size = max_message_size
        self._log = log
        self.trace = trace
        self.await_actor = await_actor
        self._how_it_ended = how_it_ended
        self.explain_unreachable = explain_unreachable or (lambda ref: "unreachable")
        self._on_in_doubt = on_in_doubt
        self._peers: dict[str, _Peer] = {}
        self._connecting: dict[str, anyio.Event] = {}
        self._ids = itertools.count(1)
        self._asks: set[Any] = set()
        self.in_doubt_total = 0
        self.shipper = _Shipper()
        self._closed = False
        self._yielded_at = 0.0

    # -- actors.Router -------------------------------------------------------------------

    async def tell(self, ref: ActorRef, message: object) -> None:
        now = time.monotonic()
        if now - self._yielded_at > YIELD_EVERY:
            # a loop of tells must let the event loop run now and then, but not at each
            # tell: the batch of this step of the loop goes out when it does
            await anyio.lowlevel.checkpoint()
            # from now: the step just run sent this step's batches, which takes a while
            self._yielded_at = time.monotonic()
        body = encode_for_ray("message", message, self.max_message_size)
        while True:
            peer = self._peers.get(ref.actor_id)
            if peer is None or peer.dead_reason is not None:
                peer = await self._peer(ref)
            if peer.credit > 0 and peer.waiters == 0:
                peer.credit -= 1
            else:
                try:
                    await peer.acquire_credit()
                except ActorDeadError:
                    continue  # that incarnation ended before taking it: the next one will
            self._queue(peer, next(self._ids), body, message)
            return

    def tell_nowait(self, ref: ActorRef, message: object) -> None:
        if self._closed:
            raise ActorDeadError(ref.name, "unreachable", "this process is stopping")
        peer = self._peers.get(ref.actor_id)
        if peer is None or peer.dead_reason is not None:
            if not self._exists(ref):
                raise ActorDeadError(ref.name, self.explain_unreachable(ref))
            # refs from spawn, lookup and messages are connected ahead; this one is not yet
            self._tg.start_soon(self._connect_quietly, ref)
            raise MailboxFullError(ref.name, 0)
        body = encode_for_ray("message", message, self.max_message_size)
        if peer.credit <= 0 or peer.waiters:
            now = time.monotonic()
            if now - peer.full_logged_at > 1.0:  # once a second per receiver at most
                peer.full_logged_at = now
                self._log.warning("mailbox.full", receiver=ref.name, capacity=peer.capacity)
            raise MailboxFullError(ref.name, peer.capacity)
        peer.credit -= 1
        self._queue(peer, next(self._ids), body, message)

    async def ask(self, ref: ActorRef, message: object, timeout: float) -> Any:
        timeout = seconds("ask timeout", timeout)
        body = encode_for_ray("message", message, self.max_message_size)
        try:
            with anyio.fail_after(timeout):
                while True:
                    answer = await self._ask_once(ref, body, message)
                    if answer[0] != BOUNCED:
                        break
                    # its incarnation ended without handling it: the next one will
        except TimeoutError:
            raise AskTimeoutError(ref.name, timeout) from None
        ok, value = answer
        if not ok:
            raise loads_error(value)
        try:
            return await self.loads(value)
        except Exception as exc:
            raise RemoteActorError(
                "undecodable reply",
                f"{type(exc).__name__}: {exc}; is the reply's class "
                "importable in the asking process?",
            ) from exc

    async def _ask_once(self, ref: ActorRef, body: Payload, message: object) -> tuple[Any, Any]:
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayError

        while True:
            peer = self._peers.get(ref.actor_id)
            if peer is None or peer.dead_reason is not None:
                peer = await self._peer(ref)
            try:
                await peer.acquire_credit()
                break
            except ActorDeadError:
                continue
        self._flush(peer)  # tells made before this ask go first
        ident = next(self._ids)
        trace_id, parent_id = self._trace_ids(peer, ident, body, message, True)
        started = time.perf_counter()
        sent_at = time.time()
        call = peer.handle.ask.remote(
            self.sender.box, next(peer.seq), ident, body, trace_id, parent_id
        )
        self._asks.add(call)
        try:
            answer: tuple[Any, Any] = await call
        except (ActorDiedError, ActorUnavailableError) as exc:
            if await self._missed(peer, _first(exc), sent_at):
                answer = (BOUNCED, None)  # never taken: the next incarnation gets it
            else:
                self._in_doubt(peer, ident, ask=True)
                raise ActorDeadError(ref.name, "died", "before answering") from None
        except RayError as exc:  # the call itself failed in Ray (its arguments, say)
            raise RemoteActorError(type(exc).__name__, _first(exc)) from None
        except BaseException:
            with contextlib.suppress(Exception):
                import ray

                ray.cancel(call)  # the asker gave up: so does the receiver's ask call
            raise
        finally:
            self._asks.discard(call)
            peer.credit += 1
            peer.wake_credit()
        if trace_id and answer[0] != BOUNCED:
            emitter().later(
                "reply.received",
                {
                    "msg_id": f"{self.sender.box}.{ident}",
                    "trace_id": trace_id,
                    "sender": ref.name,
                    "receiver": self.sender.name,
                    "ok": bool(answer[0]),
                    "round_trip_s": round(time.perf_counter() - started, 6),
                },
            )
        return answer

    # -- the parts an incarnation uses -----------------------------------------------------

    def encode(self, what: str, value: object, box: str, pid: int = 0) -> Encoded:
        """Pickle ``value`` for a Ray worker (raising the error that says what is wrong)."""
        return Encoded(dumps_for_ray(what, value, self.max_message_size))

    async def loads(self, body: bytes) -> Any:
        """Unpickle a message or reply, then look up the refs it carried."""
        value, refs = self.decode(body)
        if refs:
            await self.connect_ahead(refs)
        return value

    def decode(self, body: bytes) -> tuple[Any, list[ActorRef]]:
        """Unpickle a message or reply; return it and the refs it carried.

        Large arrays that came out of band are read-only views of Ray's object store.
        """
        if body.find(_MARK) < 0:
            return pickle.loads(body), _NO_REFS
        if body.startswith(_PARKED):
            payload = _parked.pop(int(body[len(_PARKED) :]))
            return unpickling_refs(
                lambda data: pickle.loads(data, buffers=payload.arrays), payload.body
            )
        return unpickling_refs(pickle.loads, body)

    async def connect_ahead(self, refs: list[ActorRef]) -> None:
        """Say hello to ``refs`` now, so that ``tell_nowait`` on them works at once."""
        todo = [r for r in refs if r.actor_id not in self._peers]
        if not todo:
            return
        with anyio.move_on_after(1.0):
            for ref in todo:
                await self._connect_quietly(ref)

    async def ensure_connected(self, ref: ActorRef) -> None:
        """Say hello to ``ref`` (raising ``ActorDeadError`` if it is not running)."""
        await self._peer(ref)

    def in_doubt(self) -> int:
        """Messages recorded in doubt, and those that would be if every receiver died now."""
        return self.in_doubt_total + sum(
            sum(len(items) for _, items, _ in peer.inflight) + len(peer.batch)
            for peer in self._peers.values()
        )

    async def leave(self, timeout: float = 1.0) -> None:
        """Send what is queued and wait (``timeout`` at most) until receivers finish it."""
        for peer in self._peers.values():
            self._flush(peer)
        with anyio.move_on_after(max(0.0, timeout)):
            for peer in list(self._peers.values()):
                while peer.inflight and peer.dead_reason is None:
                    peer.inflight_wake = wake = anyio.Event()
                    await wake.wait()
        # a receiver too slow or hung to finish them in time: this sender will never know
        for peer in self._peers.values():
            for _, items, _ in peer.inflight:
                for ident, *_ in items:
                    self._in_doubt(peer, ident)
            peer.inflight.clear()

    async def aclose(self) -> None:
        """Stop sending; what is still unfinished is in doubt; pending asks are cancelled."""
        self._closed = True
        for peer in self._peers.values():
            self._flush(peer)
        import ray

        for call in list(self._asks):
            with contextlib.suppress(Exception):
                ray.cancel(call)
        for peer in list(self._peers.values()):
            if peer.dead_reason is None:
                peer.dead_reason = "stopped"
                peer.wake_credit()
        self._peers.clear()

    # -- internals -----------------------------------------------------------------------

    def _queue(self, peer: _Peer, ident: int, body: Payload, message: object) -> None:
        trace_id, parent_id = (
            self._trace_ids(peer, ident, body, message, False) if self.trace else ("", "")
        )
        peer.batch.append((ident, body, trace_id, parent_id))
        if len(peer.batch) >= MAX_BATCH:
            self._flush(peer)
        elif not peer.flush_due:
            peer.flush_due = True
            # every tell of this step of the event loop goes in one call
            import asyncio

            asyncio.get_running_loop().call_soon(self._flush, peer)

    def _trace_ids(
        self, peer: _Peer, ident: int, body: Payload, message: object, ask: bool
    ) -> tuple[str, str]:
        if not self.trace:
            return "", ""
        msg_id = f"{self.sender.box}.{ident}"
        cause = CURRENT.get()
        parent_id, trace_id = cause if cause is not None else ("", msg_id)
        log = emitter()
        log.queue(
            sent_line(
                log.stamp(),
                msg_id,
                trace_id,
                parent_id,
                peer.pair_json,
                type_json(message),
                ask,
                len(body),
            )
        )
        return trace_id, parent_id

    def _flush(self, peer: _Peer) -> None:
        peer.flush_due = False
        if not peer.batch or peer.dead_reason is not None:
            return
        batch, peer.batch = peer.batch, []
        blob, arrays = pack_batch(batch)
        call = peer.handle.deliver.remote(self.sender.box, next(peer.seq), blob, arrays)
        peer.inflight.append((call, batch, time.time()))
        if peer.sent_wake is not None:
            peer.sent_wake.set()
            peer.sent_wake = None

    async def _settle(self, peer: _Peer) -> None:
        """Wait for ``peer``'s tell batches in order; give their credit back as they finish."""
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayError

        while peer.dead_reason is None or peer.inflight:
            if not peer.inflight:
                peer.sent_wake = wake = anyio.Event()
                await wake.wait()
                continue
            call, items, _ = peer.inflight[0]
            try:
                finished: int = await call
            except (ActorDiedError, ActorUnavailableError) as exc:
                await self._missed(peer, _first(exc), 0.0)
                return
            except RayError as exc:
                self._log.error(
                    "batch.failed", receiver=peer.ref.name, error_type=type(exc).__name__
                )
                finished = len(items)
            if not peer.inflight or peer.inflight[0][0] is not call:
                continue  # settled meanwhile (recorded in doubt by ``leave``)
            peer.inflight.popleft()
            if finished < len(items):
                # the incarnation stopped before taking these: the next one will
                if peer.dead_reason is None:
                    peer.dead_reason = "stopped"
                    if self._peers.get(peer.ref.actor_id) is peer:
                        del self._peers[peer.ref.actor_id]
                self._tg.start_soon(self._redeliver, peer.ref, items[finished:])
            peer.credit += len(items)
            peer.wake_credit()
            if peer.inflight_wake is not None:
                peer.inflight_wake.set()
                peer.inflight_wake = None

    async def _redeliver(self, ref: ActorRef, items: list[TellItem]) -> None:
        """Send tells refused by a stopping incarnation to the next one, in order."""
        try:
            peer = await self._peer(ref)
            for item in items:
                await peer.acquire_credit()
                peer.batch.append(item)
            self._flush(peer)
        except ActorDeadError as exc:
            for ident, *_ in items:
                self._log.warning(
                    "message.dead_lettered",
                    msg_id=f"{self.sender.box}.{ident}",
                    receiver=ref.name,
                    reason=exc.reason if exc.reason in ("stopped", "died") else "stopped",
                )

    async def _missed(self, peer: _Peer, error: str, sent_at: float) -> bool:
        """``peer``'s worker is gone: settle its calls in flight; return whether a call sent
        at ``sent_at`` was surely never taken (the caller then sends it again).

        A call was never taken if the incarnation had ended in order (it finished every
        call it took) or had ended before the call was sent. Tells never taken go to the
        next incarnation; the others are in doubt, as an ask in flight is (its asker gets
        ``ActorDeadError``).
        """
        if peer.ending is None:
            peer.ending = anyio.Event()
            if peer.dead_reason is None:
                peer.dead_reason = "died"
            if self._peers.get(peer.ref.actor_id) is peer:
                del self._peers[peer.ref.actor_id]  # the next send finds the next one
            peer.wake_credit()
            try:
                peer.end = await self._how_it_ended(peer.ref, peer.box)
            except Exception:
                peer.end = (False, None)
            if peer.end[0]:
                peer.dead_reason = "stopped"
            missed: list[TellItem] = []
            doubtful: list[TellItem] = []
            for _, items, batch_sent_at in peer.inflight:
                (missed if self._never_taken(peer, batch_sent_at) else doubtful).extend(items)
            missed += peer.batch  # never sent
            peer.inflight.clear()
            peer.batch = []
            peer.credit = peer.capacity
            if missed:
                self._tg.start_soon(self._redeliver, peer.ref, missed)
            for ident, *_ in doubtful:
                self._in_doubt(peer, ident)
            if not peer.end[0]:
                self._log.warning(
                    "connection.lost",
                    peer=peer.ref.name,
                    peer_id=peer.ref.actor_id,
                    error=error[:300],
                    in_doubt=peer.in_doubt,
                )
            peer.wake_credit()
            if peer.inflight_wake is not None:
                peer.inflight_wake.set()
                peer.inflight_wake = None
            peer.ending.set()
        else:
            await peer.ending.wait()
        return self._never_taken(peer, sent_at)

    @staticmethod
    def _never_taken(peer: _Peer, sent_at: float) -> bool:
        in_order, ended_at = peer.end
        return in_order or (ended_at is not None and sent_at > ended_at)

    def _in_doubt(self, peer: _Peer, ident: int, **keys: object) -> None:
        peer.in_doubt += 1
        self.in_doubt_total += 1
        self._log.warning(
            "message.dead_lettered",
            msg_id=f"{self.sender.box}.{ident}",
            receiver=peer.ref.name,
            reason="in_doubt",
            **keys,
        )
        if self._on_in_doubt is not None:
            self._on_in_doubt(self.in_doubt_total)

    def _exists(self, ref: ActorRef) -> bool:
        """Whether ``ref``'s actor has a Ray actor now (one quick call to Ray's registry)."""
        import ray

        try:
            ray.get_actor(ray_actor_name(ref.actor_id), namespace=self.namespace)
        except ValueError:
            return False
        return True

    async def _connect_quietly(self, ref: ActorRef) -> None:
        with contextlib.suppress(ActorDeadError):
            await self._peer(ref)

    async def _peer(self, ref: ActorRef) -> _Peer:
        while True:
            peer = self._peers.get(ref.actor_id)
            if peer is not None and peer.dead_reason is None:
                return peer
            connecting = self._connecting.get(ref.actor_id)
            if connecting is None:
                break
            await connecting.wait()
        self._connecting[ref.actor_id] = done = anyio.Event()
        try:
            return await self._hello(ref)
        finally:
            del self._connecting[ref.actor_id]
            done.set()

    async def _hello(self, ref: ActorRef) -> _Peer:
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError

        if self._closed:
            raise ActorDeadError(ref.name, "unreachable", "this process is stopping")
        while True:
            since = time.monotonic()
            try:
                handle = ray.get_actor(ray_actor_name(ref.actor_id), namespace=self.namespace)
                answer = await handle.hello.remote(
                    self.sender.box, self.sender.name, self.sender.actor_id, self.sender.pid
                )
            except (ValueError, ActorDiedError, ActorUnavailableError):
                answer = None  # not there (yet), or gone
            if answer is not None and answer != CLOSING:
                box, capacity, pid = answer
                break
            # down, stopping, or between two incarnations: wait for a restart, or raise
            await self.await_actor(ref, since)
        peer = _Peer(ref, handle, box, capacity, pid)
        peer.pair_json = pair_json(self.sender.name, ref.name)
        self._peers[ref.actor_id] = peer
        self._tg.start_soon(self._settle, peer)
        return peer
