"""Incarnation: one run of one actor, inside its own process.

It owns the actor instance, its mailbox and listener, the process's transport, and the
control channel to the runtime. It handles one message at a time and stops in order:
refuse new senders, handle what was already sent, run ``on_stop``, dead-letter the rest.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import itertools
import math
import os
import pickle
import select
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic

import anyio
import anyio.abc
import anyio.lowlevel

from actors import (
    Actor,
    ActorDeadError,
    ActorRef,
    DeadLetterReason,
    MessageNotSerializableError,
    Permit,
    RemoteActorError,
    Reply,
    SharedSemaphore,
    StopReason,
    Timer,
)
from actors._checks import seconds
from actors._router import install_router
from actors._shared import install_shared_memory

from .._config import beat_interval
from ..observe.account import (
    DEAD_LETTERED,
    FAILED,
    HANDLED,
    HANDLING,
    IN_DOUBT,
    Account,
    account_path,
)
from ..observe.logging import Log, emitter
from ..observe.tracing import CURRENT, handled_line, type_json
from ..shm.pool import IDLE_UNLINK, SegmentPool
from ..shm.segments import message_prefix, segments_of, unlink_segments
from ..shm.sharing import SharingService
from ..wire import protocol
from ..wire.codec import Shipper, dumps_error, loads_error, message_type
from ..wire.control import ControlChannel, ControlClosedError
from ..wire.mailbox import Envelope, Mailbox
from ..wire.protocol import ActorSpec, RequestBody
from ..wire.seams import ControlEnd, E, Inbox, Letter, Outbox
from ..wire.transport import LEAVE_TIMEOUT, UNPICKLE_MARK, SenderInfo, Transport
from .context import Context
from .liveness import install_loop_probe

__all__ = ["LOCAL", "Incarnation", "Plumbing"]

#: exit code of an actor process that lost its runtime and had to force its exit
EXIT_PARENT_LOST = 70
_PARENT_LOST_GRACE = 0.5


def _exit_in_unpickling(exc: BaseException) -> RemoteActorError:
    """What the asker gets for a message whose unpickling raised ``exc`` (an exit)."""
    return RemoteActorError(
        type(exc).__name__,
        f"unpickling the message raised {type(exc).__name__}({exc}); the actor refused it "
        "and goes on: send plain data whose unpickling does not exit",
    )


def _ids(env: Letter) -> dict[str, str | None]:
    """The keys naming an envelope's message in its events (trace ids if it came traced)."""
    keys: dict[str, str | None] = {"msg_id": env.msg_id, "sender": env.sender}
    if not env.trace_id:
        return keys
    return {**keys, "trace_id": env.trace_id, "parent_id": env.parent_id or None}


class _DriverSemaphores:
    """Slots of semaphores on the driver's machine, taken by the driver for this actor.

    The driver gives them back if this incarnation ends holding them, so the next holder
    is told, as it is when a local holder dies.
    """

    def __init__(self, incarnation: Incarnation[Any]) -> None:
        self._inc = incarnation

    async def acquire(self, semaphore: SharedSemaphore, timeout: float) -> Permit:
        permit: Permit = await self._inc.request(
            protocol.AcquireSlot(semaphore, timeout, os.getpid())
        )
        return permit

    def release(self, semaphore: SharedSemaphore, permit: Permit) -> None:
        self._inc._tg.start_soon(self._inc.request, protocol.ReleaseSlot(semaphore, permit))


class _Timer:
    """``actors.Timer``: a task that tells this actor a message later (or repeatedly)."""

    def __init__(self, timers: set[_Timer]) -> None:
        self.scope = anyio.CancelScope()
        self._timers = timers
        timers.add(self)

    def cancel(self) -> None:
        self.scope.cancel()
        self._timers.discard(self)


@dataclass(frozen=True, slots=True)
class Plumbing(Generic[E]):
    """How an incarnation receives and sends: what differs between backends."""

    #: makes the mailbox, in ``__init__``
    mailbox: Callable[[Incarnation[E]], Inbox[E]]
    #: makes the sending side, in ``run``, inside the task group its work belongs to
    transport: Callable[[Incarnation[E], anyio.abc.TaskGroup], Outbox]
    #: the incarnation has an OS process of its own: it takes SIGTERM as a stop, and a
    #: lifeline thread ends it if the driver dies (on Ray, Ray does both)
    own_process: bool = True
    #: the machine it runs on, on a cluster ("": the local backend's only one)
    node: str = ""


class Incarnation(Generic[E]):
    """Runs one actor in this process until it stops."""

    def __init__(
        self, spec: ActorSpec, control: ControlEnd, log: Log, plumbing: Plumbing[E]
    ) -> None:
        self.spec = spec
        self.control = control
        self.log = log
        self.ref = ActorRef(spec.actor_id, spec.name, spec.address)
        self._plumbing = plumbing
        #: made in ``run``, inside the task group its connections belong to
        self.transport: Outbox
        self.sharing = SharingService(
            spec.log.run_id,
            Path(spec.run_dir) / "locks",
            log,
            plumbing.node,
            # on a cluster, the run's semaphores live on the driver's machine
            _DriverSemaphores(self) if plumbing.node else None,
        )
        self.mailbox = plumbing.mailbox(self)
        self.mailbox.spin = spec.config.busy_poll
        self.actor: Actor | None = None
        self._tg: anyio.abc.TaskGroup
        self._peers = set(spec.peers) | {os.getpid()}
        self._requests: dict[int, anyio.Event] = {}
        self._answers: dict[int, tuple[bool, Any]] = {}
        self._request_ids = itertools.count(1)
        self._open_replies: dict[int, tuple[E, Reply]] = {}
        self._loop_scope = anyio.CancelScope()
        self._stop_reason: StopReason | None = None
        self._stop_by = math.inf  # time.monotonic() by which stopping must be done
        self._stopped = anyio.Event()
        self._crash: tuple[str, str] | None = None
        self._env: E | None = None  # the message being handled
        self._reply: Reply | None = None  # ... and its deferred reply, if the handler took one
        self._timers: set[_Timer] = set()
        self._trace = spec.log.trace
        self.handled = 0
        self.failed = 0
        self.dead = 0
        self._started = 0  # messages handed to receive, for the account's HANDLING
        # the counts also go where the driver reads them after this process, however it ends
        path = account_path(spec.run_dir, spec.box)
        # on Ray, a node other than the driver's has no run directory: counts stay here
        self.account = Account(path if plumbing.own_process or path.parent.is_dir() else None)
        self._cells = self.account.cells

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self) -> int:
        """Start the actor, serve it until stopped, and return the process exit code."""
        spec = self.spec
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self.transport = self._plumbing.transport(self, tg)
            install_router(self.transport)
            install_shared_memory(self.sharing)
            tg.start_soon(self._read_control)
            if not await self._start():
                tg.cancel_scope.cancel()
                return 1
            tg.start_soon(self.mailbox.serve, tg)
            # a local actor's signs of life are in its account, which the driver reads:
            # nothing wakes an idle actor then (on Ray, and on uvloop, it beats)
            probed = self._plumbing.own_process and install_loop_probe(
                asyncio.get_running_loop(), self._cells
            )
            self.control.send(protocol.Ready(os.getpid(), beats=not probed))
            tg.start_soon(self._keep_pool if probed else self._beat)
            self.log.info(
                "actor.started",
                actor_class=type(self.actor).__qualname__,
                mailbox_size=spec.mailbox_size,
                incarnation=spec.incarnation,
            )
            with self._loop_scope:
                await self._serve()
            await self._finish()
            tg.cancel_scope.cancel()
        return 0

    async def _start(self) -> bool:
        try:
            if self._plumbing.own_process:
                self._watch_sigterm()
                try:
                    self._start_lifeline()
                except RuntimeError as exc:
                    if "can't start new thread" not in str(exc):
                        raise
                    raise RuntimeError(
                        f"{exc}: the system's limit on processes and threads is reached "
                        "(ulimit -u, or the cgroup's pids.max; each actor process counts "
                        "two); raise it, or stop actors you no longer need"
                    ) from exc
            try:
                actor_class, args, kwargs = await self.transport.loads(self.spec.payload)
            except Exception as exc:
                raise ImportError(
                    f"the actor process could not load the actor class or its arguments "
                    f"({type(exc).__name__}: {exc}); define actor classes in a module or a "
                    "script file, not in an interactive session or `python -c`"
                ) from exc
            actor = actor_class(*args, **kwargs)
            actor._actor_bind(self.ref, Context(self))
            actor._actor_set_deferral(self._defer)
            self.actor = actor
            await self.mailbox.listen(self.spec.address)
            if self.spec.failure is not None:
                await actor.on_restart(self.spec.failure)
            await actor.on_start()
        except Exception as exc:
            tb = "".join(traceback.format_exception(exc))
            self.log.error("actor.start_failed", error_type=type(exc).__name__, exc_info=exc)
            self.control.send(protocol.StartFailed(type(exc).__name__, str(exc), tb))
            await self._flush_control()
            return False
        return True

    def request_stop(self, timeout: float, reason: StopReason) -> None:
        """Begin stopping: no new senders, handle what was sent, then stop by ``timeout``."""
        if self._stop_reason is not None:
            return
        self._stop_reason = reason
        # the runtime sends SIGTERM at ``timeout``: what is left of it bounds every wait
        self._stop_by = time.monotonic() + timeout * 0.9
        self.log.info("actor.stopping", reason=reason, timeout_s=timeout)
        for timer in list(self._timers):
            timer.cancel()
        self.mailbox.close()
        if reason in ("interrupted", "parent_lost"):
            self._loop_scope.cancel()  # no draining: end the current handler at its next await
        else:
            self._tg.start_soon(self._stop_deadline, timeout)

    async def _stop_deadline(self, timeout: float) -> None:
        # leave the rest of the runtime's deadline for on_stop and the exit itself
        await anyio.sleep(timeout * 0.7)
        self._loop_scope.cancel()

    async def _finish(self) -> None:
        reason = self._stop_reason or "requested"
        if self.actor is not None:
            with anyio.move_on_after(max(0.1, self.spec.config.stop_timeout * 0.2)):
                try:
                    await self.actor.on_stop()
                except Exception as exc:
                    self.log.error(
                        "actor.on_stop_failed", error_type=type(exc).__name__, exc_info=exc
                    )
        for env in self.mailbox.take_leftovers():
            self._dead_letter(env, "crashed" if self._crash else "stopped")
        for _env, reply in list(self._open_replies.values()):
            if not reply.settled:
                reply.set_exception(
                    ActorDeadError(self.spec.name, "stopped", "before settling its deferred reply")
                )
        emitter().flush()
        # before the counts: what the receivers acknowledge now is not in doubt; within
        # the stop's deadline, so that what stays in doubt is still recorded before SIGTERM
        await self.transport.leave(min(LEAVE_TIMEOUT, self._stop_by - time.monotonic()))
        error_type, error = self._crash or ("", "")
        in_doubt = self.transport.in_doubt()
        self._cells[IN_DOUBT] = in_doubt
        self.log.info(
            "actor.stopped",
            reason=reason,
            handled=self.handled,
            failed=self.failed,
            dead_lettered=self.dead,
            in_doubt=in_doubt,
        )
        self.control.send(
            protocol.Stopped(
                reason, self.handled, self.failed, self.dead, in_doubt, error_type, error
            )
        )
        await self.mailbox.aclose()
        await self.transport.aclose()
        # large arrays still addressed to us will never be read: every sender has closed
        unlink_segments(segments_of(self.spec.log.run_id, message_prefix(self.spec.box)))
        self.transport.shipper.pool.close()
        self.sharing.close()
        await self._flush_control()

    async def _flush_control(self) -> None:
        with anyio.move_on_after(1.0):
            self.control.send_eof_after_flush()
            await self.control.wait_flushed()

    # -- messages ------------------------------------------------------------------------

    def _defer(self) -> Reply:
        """``Actor.defer_reply``: the reply to the message being handled, made once."""
        env = self._env
        if env is None:
            raise RuntimeError("defer_reply() can only be called while receive() runs")
        if self._reply is None:
            self._reply = self._make_reply(env)
        return self._reply

    async def _serve(self) -> None:
        """Hand the mailbox's messages to the actor, one at a time, until it is drained.

        Each message is decoded, handed to ``receive``, answered and accounted for right
        here, with no coroutine of ours per message: one would be a sizeable share of the
        receiving side's time per message.
        """
        mailbox = self.mailbox
        actor = self.actor
        assert actor is not None
        trace = self._trace
        cells = self._cells
        # which message is handled matters only to a deadline: two stores a message else
        noting = self.spec.options.message_deadline is not None
        log = emitter()
        while True:
            env = mailbox.take()
            if env is None and (env := await mailbox.get()) is None:
                return
            if self._crash is not None:
                self._dead_letter(env, "crashed")
                continue
            # what the handler sends is caused by this message (only traced envelopes say so)
            token = CURRENT.set((env.msg_id, env.trace_id)) if env.trace_id else None
            started = time.perf_counter() if trace else 0.0
            try:
                try:
                    body = env.body
                    if body.find(UNPICKLE_MARK) < 0:  # Transport.decode's common case, inline
                        message = pickle.loads(body)
                    else:
                        message, refs = self.transport.decode(body)
                        if refs:
                            await self.transport.connect_ahead(refs)
                except Exception as exc:
                    self._undecodable(env, exc)
                    continue
                except (SystemExit, KeyboardInterrupt) as exc:
                    # unpickling ran code that tried to end the process: the message
                    # fails, the actor lives (only this run's processes can send)
                    self._undecodable(env, _exit_in_unpickling(exc))
                    continue
                self._env = env
                if noting:
                    self._started += 1
                    cells[HANDLING] = self._started
                try:
                    result = await actor.receive(message)
                except Exception as exc:
                    self._receive_failed(env, message, exc)
                    continue
                except BaseException:
                    # cancelled by the stop deadline or an interrupting stop
                    if self._reply is None:
                        self._dead_letter(env, self._stop_reason or "cancelled", handled_part=True)
                    raise
                finally:
                    if noting:
                        cells[HANDLING] = 0
                    reply = self._reply
                    self._env = self._reply = None
                self.handled += 1
                cells[HANDLED] = self.handled
                if trace:
                    # logged before the answer leaves: an asker that then reads the logs sees it
                    log.queue(
                        handled_line(
                            log.stamp(),
                            env.msg_id,
                            env.trace_id,
                            env.parent_id,
                            env.conn.pair_json,  # the mailbox's owner is this actor
                            type_json(message),
                            time.perf_counter() - started,
                        )
                    )
                if env.is_ask and reply is None:
                    self._answer(env, True, result)
            finally:
                if token is not None:
                    CURRENT.reset(token)
                mailbox.done(env)

    def _undecodable(self, env: E, exc: Exception) -> None:
        """``env``'s body did not unpickle here: log it, and fail its ask."""
        self._log_failed(env, exc, reason="undecodable", error=str(exc))
        if env.is_ask:
            self.mailbox.reply(env, False, dumps_error(exc))

    def _receive_failed(self, env: E, message: object, exc: Exception) -> None:
        """``receive`` raised ``exc`` on ``env`` (called while ``self._env`` is still set)."""
        reply = self._reply
        self._log_failed(env, exc, msg_type=message_type(message), exc_info=exc)
        if reply is not None:
            if not reply.settled:
                reply.set_exception(exc)
        elif env.is_ask:
            self.mailbox.reply(env, False, dumps_error(exc))
        if self.spec.options.on_error == "crash" and self._crash is None:
            # let it crash: this incarnation's state is suspect; its supervisor decides
            self._crash = (type(exc).__name__, str(exc)[:500])
            self.request_stop(self.spec.config.stop_timeout, "exception")

    def _log_failed(self, env: E, exc: Exception, **detail: object) -> None:
        """Count ``env`` as failed with ``exc`` and log ``message.failed`` (plus ``detail``)."""
        self.failed += 1
        self._cells[FAILED] = self.failed
        self.log.error(
            "message.failed",
            **_ids(env),
            receiver=self.spec.name,
            error_type=type(exc).__name__,
            **detail,
        )

    def _answer(self, env: E, ok: bool, value: object) -> None:
        encoded = None
        if ok:
            transport = self.transport
            try:
                plain = transport.shipper.plain(value, transport.max_message_size)
                if plain is None:  # large arrays to ship, or an error that explains itself
                    encoded = transport.encode("reply", value, env.conn.peer_id, env.conn.peer_pid)
                    plain = encoded.body
                body = plain
            except (MessageNotSerializableError, ValueError, MemoryError) as exc:
                self.log.error(
                    "reply.failed", msg_id=env.msg_id, error_type=type(exc).__name__, error=str(exc)
                )
                ok, body = False, dumps_error(exc)
        else:
            assert isinstance(value, BaseException)
            body = dumps_error(value)
        if not self.mailbox.reply(env, ok, body):
            if encoded is not None:
                encoded.discard()
            self.log.warning(
                "reply.undeliverable", msg_id=env.msg_id, sender=env.sender, reason="asker gone"
            )

    def _make_reply(self, env: E) -> Reply:
        key = id(env)

        def settle(ok: bool, value: object) -> None:
            self._open_replies.pop(key, None)
            if env.is_ask:
                self._answer(env, ok, value)

        reply = Reply(settle, expected=env.is_ask)
        if env.is_ask:
            self._open_replies[key] = (env, reply)
        return reply

    def _dead_letter(self, env: E, reason: DeadLetterReason, *, handled_part: bool = False) -> None:
        if not handled_part:
            self.mailbox.done(env)
            if env.is_ask and self.mailbox.bounce(env):
                # never handled: the asker sends it again, to the next incarnation if any
                if self.spec.log.trace:
                    self.log.debug(
                        "message.bounced",
                        **_ids(env),
                        reason=reason,
                    )
                return
        self.dead += 1
        self._cells[DEAD_LETTERED] = self.dead
        self.log.warning(
            "message.dead_lettered",
            **_ids(env),
            receiver=self.spec.name,
            reason=reason,
            ask=env.is_ask,
        )
        if env.is_ask:
            detail = "while handling the message" if handled_part else "before handling the message"
            why = "died" if reason == "crashed" else "stopped"
            self.mailbox.reply(env, False, dumps_error(ActorDeadError(self.spec.name, why, detail)))

    # -- control channel -----------------------------------------------------------------

    async def request(self, body: RequestBody) -> Any:
        """Ask the driver to carry out ``body`` for this actor; re-raise its error here."""
        rid = next(self._request_ids)
        self._requests[rid] = done = anyio.Event()
        self.control.send(protocol.Request(rid, body))
        try:
            await done.wait()
        finally:
            del self._requests[rid]
        ok, value = self._answers.pop(rid)
        if not ok:
            raise loads_error(value)
        return value

    async def _await_actor(self, ref: ActorRef, since: float) -> None:
        try:
            await self.request(protocol.AwaitActor(ref, since))
        except ControlClosedError:
            raise ActorDeadError(ref.name, "unreachable") from None

    async def _how_it_ended(self, ref: ActorRef, box: str) -> tuple[bool, float | None]:
        try:
            in_order, ended_at = await self.request(protocol.HowItEnded(ref, box))
        except (ControlClosedError, ActorDeadError):
            return False, None
        return bool(in_order), ended_at

    def _record_in_doubt(self, total: int) -> None:
        self._cells[IN_DOUBT] = total

    async def _beat(self) -> None:
        """Tell the runtime the event loop runs, and since when a message is handled.

        "Since" is when a beat first saw the message in ``receive`` (``_env``): at most one
        interval late, and nothing to record per message on the hot path.
        """
        options = self.spec.options
        interval = beat_interval(self.spec.config, options.hang_timeout, options.message_deadline)
        seen: E | None = None
        since = 0.0
        while True:
            env = self._env
            if env is None:
                since = 0.0
            elif env is not seen:
                since = time.monotonic()
            seen = env
            self.control.send(protocol.Heartbeat(since))
            self.transport.shipper.pool.trim()
            await anyio.sleep(interval)

    async def _keep_pool(self) -> None:
        """Give back the pool's segments left unused, while it holds any (``_beat`` does
        it for an actor that beats)."""
        pool = self.transport.shipper.pool
        if not isinstance(pool, SegmentPool):  # only local actors lend segments
            return
        grew = anyio.Event()
        pool.on_grow = grew.set
        while True:
            if not pool.holding:
                await grew.wait()
                grew = anyio.Event()
                pool.on_grow = grew.set
            await anyio.sleep(IDLE_UNLINK)
            pool.trim()

    def start_timer(self, delay: float, message: object, *, repeat: bool) -> Timer:
        if repeat:
            delay = seconds("send_every's interval", delay)
        else:
            delay = seconds("send_after's delay", delay, zero=True)
        if self._stop_reason is not None:
            raise RuntimeError("the actor is stopping: no new timers")
        timer = _Timer(self._timers)

        async def run() -> None:
            with timer.scope:
                next_at = anyio.current_time() + delay
                while True:
                    await anyio.sleep_until(next_at)
                    await self.ref.tell(message)
                    if not repeat:
                        break
                    now = anyio.current_time()
                    next_at += delay
                    if next_at < now:  # skip the ticks missed while the mailbox was full
                        next_at += delay * math.ceil((now - next_at) / delay)
            timer.cancel()

        self._tg.start_soon(run)
        return timer

    async def _is_peer(self, pid: int) -> bool:
        if pid in self._peers:
            return True
        try:
            with anyio.fail_after(5.0):
                known: bool = await self.request(protocol.IsPeer(pid))
        except (TimeoutError, ControlClosedError):
            return False
        if known:
            self._peers.add(pid)
        return known

    async def _read_control(self) -> None:
        try:
            while True:
                match await self.control.receive():
                    case protocol.Answer(request_id=rid, ok=ok, value=value):
                        if rid in self._requests:
                            self._answers[rid] = (ok, value)
                            self._requests[rid].set()
                    case protocol.Stop(timeout=timeout, reason=reason):
                        self.request_stop(timeout, reason)
                    case other:
                        raise ControlClosedError(f"the driver sent {type(other).__name__}")
        except ControlClosedError:
            pass
        # the runtime is gone: nobody can stop us in order any more, nor unlink the run's
        # shared memory; every actor of the run does it (mappings stay valid until exit)
        self.log.warning("actor.parent_lost")
        unlink_segments(segments_of(self.spec.log.run_id))
        for rid, event in self._requests.items():
            self._answers[rid] = (False, dumps_error(ActorDeadError("runtime", "died")))
            event.set()
        if self._stop_reason is None:
            self.request_stop(_PARENT_LOST_GRACE, "parent_lost")

    def _watch_sigterm(self) -> None:
        """Begin stopping on SIGTERM.

        A plain handler that hands over to the loop: the loop's own signal handling would
        cost every actor process a task, and a pass over every signal number, at its start.
        """
        loop = asyncio.get_running_loop()
        timeout = self.spec.config.stop_timeout

        def on_sigterm(_signum: int, _frame: object) -> None:
            try:
                loop.call_soon_threadsafe(self.request_stop, timeout, "sigterm")
            except RuntimeError:  # the loop is closed: nothing left to stop in order
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_sigterm)

    def _start_lifeline(self) -> None:
        """Exit even when a handler blocks the event loop and the runtime has died.

        A thread waits for the runtime's end of the control socket to hang up; it asks the
        loop to stop in order, and forces the exit if that has not happened soon after.
        """
        assert isinstance(self.control, ControlChannel)
        fd = self.control.fileno()
        loop = asyncio.get_running_loop()
        run_id = self.spec.log.run_id

        def watch() -> None:
            poller = select.poll()
            poller.register(fd, select.POLLRDHUP)
            while True:
                events = poller.poll()
                if any(ev & select.POLLNVAL for _, ev in events):
                    return  # our own end was closed: we are exiting anyway
                if any(ev & (select.POLLRDHUP | select.POLLHUP) for _, ev in events):
                    break
            # asked, not awaited: a blocked loop would never answer, and the exit below
            # is for that case
            with contextlib.suppress(RuntimeError):  # the loop is closed already
                loop.call_soon_threadsafe(self._on_parent_lost)
            time.sleep(_PARENT_LOST_GRACE + 0.4)
            with contextlib.suppress(Exception):
                unlink_segments(segments_of(run_id))
            os._exit(EXIT_PARENT_LOST)

        # not threading.Thread: its start waits until the new thread has run, a wait of
        # a scheduling round on a busy machine, in every actor's start
        _thread.start_new_thread(watch, ())

    def _on_parent_lost(self) -> None:
        if self._stop_reason is None:
            self.request_stop(_PARENT_LOST_GRACE, "parent_lost")


def _local_mailbox(inc: Incarnation[Envelope]) -> Inbox[Envelope]:
    spec = inc.spec
    return Mailbox(
        spec.mailbox_size,
        spec.name,
        box=spec.box,
        max_body=spec.config.max_message_size,
        log=inc.log,
        trace=spec.log.trace,
        is_peer=inc._is_peer,
    )


def _local_transport(inc: Incarnation[Envelope], tg: anyio.abc.TaskGroup) -> Outbox:
    spec = inc.spec
    return Transport(
        tg,
        SenderInfo(spec.name, spec.actor_id, os.getpid(), spec.box),
        max_message_size=spec.config.max_message_size,
        log=inc.log,
        trace=spec.log.trace,
        shipper=Shipper(spec.log.run_id, spec.box, spec.config.shm_threshold, inc.log),
        ask_spin=spec.config.busy_poll,
        await_actor=inc._await_actor,
        on_in_doubt=inc._record_in_doubt,
    )


#: a local actor process: Unix-socket mailbox and transport, shared memory for large arrays
LOCAL: Plumbing[Envelope] = Plumbing(_local_mailbox, _local_transport)


def load_spec(data: bytes) -> ActorSpec:
    """Unpickle the spec sent by the runtime (only runtime types inside)."""
    spec = pickle.loads(data)
    if not isinstance(spec, ActorSpec):
        raise TypeError(f"an actor process was started with a {type(spec).__name__}, not a spec")
    return spec
