"""Runtime: starts, names, connects and stops the actors of one run."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
import signal
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import anyio
import anyio.abc
import numpy as np
import numpy.typing as npt

from actors import (
    DEFAULT_MAX_RESTARTS,
    DEFAULT_PERIOD,
    Actor,
    ActorNotFoundError,
    ActorRef,
    Backoff,
    EscalationError,
    OnError,
    RestartType,
    RuntimeClosedError,
    SharedArray,
    SharedSemaphore,
    Strategy,
    Supervisor,
)
from actors._router import install_router
from actors._shared import install_shared_memory

from .._main_import import MainImportStop, in_actor_process_main_import
from .._spawning import check_options, prepare_spawn
from ..observe.logging import Log, LogConfig, new_run_log_dir, open_log
from ..observe.loop_noise import install_noise_filter
from ..observe.probe import EventProbe, PublishingLog
from ..shm.segments import sweep_stale_segments
from ..shm.sharing import SharedRegistry, SharingService
from ..wire.codec import Shipper
from ..wire.rundir import RunDirectory
from ..wire.transport import SenderInfo, Transport
from .process_host import Host, ProcessHost
from .supervision import ActorRecord, ShutdownReport
from .tree import ActorTree, TreeConfig

__all__ = ["Runtime"]

#: exit status of a process ended by SIGTERM, by shell convention
_SIGTERM_EXIT = 128 + signal.SIGTERM


def _busy_poll_from_env() -> float:
    text = os.environ.get("ACTORS_BUSY_POLL", "").strip()
    if not text:
        return 0.0002
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"ACTORS_BUSY_POLL must be a number of seconds, not {text!r}") from None


def _flag_from_env(name: str) -> bool:
    return os.environ.get(name, "").lower() in {"1", "true", "yes", "on"}


class Runtime:
    """Runs and supervises actors, each in its own process, for an ``async with`` block.

    Example::

        async with Runtime() as rt:
            agg = await rt.spawn(Aggregator, 2, name="aggregator")
            await agg.tell(("count", 5))
            print(await agg.ask("total", timeout=5.0))

    Every actor is supervised: spawned with no options it is ``permanent`` under the root
    supervisor (``one_for_one``, at most ``DEFAULT_MAX_RESTARTS`` restarts within
    ``DEFAULT_PERIOD`` seconds). If the root supervisor gives up, every actor is stopped
    and ``async with`` raises ``EscalationError``.

    Leaving the block stops every actor still running, newest first: each gets
    ``stop_timeout`` seconds to finish what is in its mailbox and run ``on_stop``, then
    SIGTERM, then SIGKILL. ``report`` then says what happened. Nothing is left behind: no
    process, no socket file, no shared memory. SIGTERM to the script's process stops
    everything the same way and ends the script with exit status 143.

    Args:
        log_dir: where every process writes its JSON-lines log. Default: a directory per
            run under ``$ACTORS_LOG_DIR``, or under the temp dir (the last 20 runs kept).
        trace: also log one event per message (``message.sent``, ``message.received``,
            ``message.handled``...). Default: the ``ACTORS_TRACE`` environment variable.
        mailbox_size: default capacity of mailboxes, in messages.
        stop_timeout: seconds an actor gets to stop in order before it is killed.
        start_timeout: seconds an actor gets to become ready in ``spawn``.
        max_message_size: largest pickled message, in bytes, not counting large arrays
            that travel through shared memory.
        shm_threshold: numpy arrays of at least this many bytes inside messages and
            replies travel through shared memory instead of the socket (``None``: never).
        shm_budget: most bytes the run's shared arrays may hold at once (default: what
            ``/dev/shm`` has room for).
        restart_wait: seconds a message to an actor that is being restarted waits for
            the new incarnation before the send fails with ``ActorDeadError``.
        hang_timeout: seconds an actor's event loop may go without a heartbeat before it
            is declared hung, its stack dumped and its process killed (``None``: never;
            per actor with ``spawn(..., hang_timeout=...)``).
        heartbeat_interval: seconds between heartbeats of every actor.
        busy_poll: seconds an asker waiting for its answer, or an actor whose mailbox just
            ran empty, reads its sockets in a loop before it sleeps in the event loop.
            Waking a sleeping process costs more than a quick round trip on small VMs;
            this makes asks much faster, for a little CPU. It backs off by itself
            when answers do not come in time; 0 turns it off (machines shared with other
            work, laptops on battery). Default: ``$ACTORS_BUSY_POLL`` seconds, else 0.0002.
        uvloop: run actor processes on uvloop (``pip install uvloop``, the ``speed``
            extra): faster asks. Default: ``$ACTORS_UVLOOP`` (``1``), else
            off. Raises ``ImportError`` when asked for but not installed.
        handle_sigterm: turn SIGTERM into an orderly stop (main thread only).
        host: how actor processes are started (default: one process per actor).
    """

    def __init__(
        self,
        *,
        log_dir: str | os.PathLike[str] | None = None,
        trace: bool | None = None,
        mailbox_size: int = 1000,
        stop_timeout: float = 5.0,
        start_timeout: float = 30.0,
        max_message_size: int = 64 * 1024 * 1024,
        shm_threshold: int | None = 1 << 20,
        shm_budget: int | None = None,
        restart_wait: float = 5.0,
        hang_timeout: float | None = 60.0,
        heartbeat_interval: float = 0.5,
        busy_poll: float | None = None,
        uvloop: bool | None = None,
        handle_sigterm: bool = True,
        host: Host | None = None,
    ) -> None:
        if isinstance(mailbox_size, bool) or not isinstance(mailbox_size, int) or mailbox_size < 1:
            raise ValueError(f"mailbox_size must be a positive int, not {mailbox_size!r}")
        for what, value in (
            ("stop_timeout", stop_timeout),
            ("start_timeout", start_timeout),
            ("restart_wait", restart_wait),
            ("heartbeat_interval", heartbeat_interval),
        ):
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ValueError(f"{what} must be a positive number of seconds, not {value!r}")
        if hang_timeout is not None and not hang_timeout > heartbeat_interval:
            raise ValueError("hang_timeout must be longer than heartbeat_interval, or None")
        if max_message_size < 1:
            raise ValueError("max_message_size must be a positive number of bytes")
        if shm_threshold is not None and shm_threshold < 1:
            raise ValueError("shm_threshold must be a positive number of bytes, or None")
        if busy_poll is None:
            busy_poll = _busy_poll_from_env()
        if not (isinstance(busy_poll, (int, float)) and 0 <= busy_poll <= 0.01):
            raise ValueError(f"busy_poll must be between 0 and 0.01 seconds, not {busy_poll!r}")
        if shm_budget is not None and shm_budget < 0:
            raise ValueError("shm_budget must be a number of bytes, or None")
        if uvloop is None:
            uvloop = _flag_from_env("ACTORS_UVLOOP")
        if uvloop and importlib.util.find_spec("uvloop") is None:
            raise ImportError(
                "uvloop was asked for (Runtime(uvloop=True) or ACTORS_UVLOOP=1) but is not "
                "installed: pip install uvloop, or install this package with [speed]"
            )
        self.uvloop = bool(uvloop)
        self.shm_threshold = shm_threshold
        self.busy_poll = float(busy_poll)
        self.shm_budget = shm_budget
        self._log_dir_arg = Path(log_dir) if log_dir is not None else None
        self.trace = _flag_from_env("ACTORS_TRACE") if trace is None else trace
        self.mailbox_size = mailbox_size
        self.stop_timeout = stop_timeout
        self.start_timeout = start_timeout
        self.max_message_size = max_message_size
        self.restart_wait = restart_wait
        self.hang_timeout = hang_timeout
        self.heartbeat_interval = heartbeat_interval
        self.handle_sigterm = handle_sigterm
        self._host_arg = host
        self._state = "new"
        self._log: Log = None
        self._log_file: IO[bytes] | None = None
        self._escalation: EscalationError | None = None
        self._terminated = False
        self._report: ShutdownReport | None = None

    # -- properties ------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        """This run's id: ``<pid>-<random>``."""
        self._require("running")
        return self._rundir.run_id

    @property
    def log_dir(self) -> Path:
        """The directory holding this run's log files (one ``.jsonl`` per process)."""
        self._require("running", "closed")
        return self._log_config.log_dir

    @property
    def report(self) -> ShutdownReport:
        """What the run did: who stopped, who was killed, messages handled and dead-lettered.

        Complete once the ``async with`` block has exited.
        """
        if self._report is None:
            raise RuntimeError("the report is made when the Runtime exits")
        return self._report

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        if in_actor_process_main_import():
            # the script's top level is running again inside an actor process, to define
            # its classes there: stop the import here instead of starting a second runtime
            raise MainImportStop
        if self._state != "new":
            raise RuntimeError("a Runtime can be entered once; create a new one")
        host: Host = self._host_arg or ProcessHost(uvloop=self.uvloop)
        self._rundir, swept = RunDirectory.create()
        swept_segments = sweep_stale_segments(RunDirectory.existing_run_ids())
        log_dir = self._log_dir_arg or new_run_log_dir(self._rundir.run_id)
        self._log_config = LogConfig(log_dir, self._rundir.run_id, trace=self.trace)
        self._log, self._log_file = open_log(
            self._log_config,
            f"main.{os.getpid()}",
            {"source": "main"},
            configure_global=False,
        )
        self._log.info(
            "runtime.started",
            run_dir=str(self._rundir.path),
            log_dir=str(log_dir),
            trace=self.trace,
            swept_stale_runs=swept,
        )
        if swept or swept_segments:
            self._log.warning(
                "runtime.stale_run_recovered",
                runs=swept,
                segments=len(swept_segments),
            )
        self._registry = SharedRegistry(
            self._rundir.run_id, self._rundir.lock_dir, self._log, self.shm_budget
        )
        self._sharing = SharingService(self._rundir.run_id, self._rundir.lock_dir, self._log)
        self._events = PublishingLog(self._log)
        self._tree = ActorTree(
            TreeConfig(
                stop_timeout=self.stop_timeout,
                start_timeout=self.start_timeout,
                max_message_size=self.max_message_size,
                shm_threshold=self.shm_threshold,
                restart_wait=self.restart_wait,
                heartbeat_interval=self.heartbeat_interval,
                hang_timeout=self.hang_timeout,
                busy_poll=self.busy_poll,
            ),
            host,
            self._rundir,
            self._log_config,
            self._events,
            self._on_escalation,
        )
        self._tree.serve_request = self._serve_request
        # The runtime's own tasks live in a task of their own, not in a task group entered
        # here: the script's code runs inside this call's scopes, and cancelling it (Ctrl-C,
        # a timeout) must not cancel the machinery that stops the actors in order.
        loop = asyncio.get_running_loop()
        install_noise_filter(loop)
        started = anyio.Event()
        self._service_done = anyio.Event()
        self._service = loop.create_task(self._serve(started))
        await started.wait()
        self._transport = Transport(
            self._tg,
            SenderInfo("main", "a0", os.getpid(), "a0.1"),
            max_message_size=self.max_message_size,
            log=self._log,
            trace=self.trace,
            shipper=Shipper(self._rundir.run_id, "a0.1", self.shm_threshold),
        )
        self._transport.ask_spin = self.busy_poll
        self._transport.explain_unreachable = self._tree.explain
        self._transport.await_actor = self._tree.await_actor
        self._tree.tg = self._tg
        self._tree.transport = self._transport
        install_router(self._transport)
        install_shared_memory(self._sharing)
        # the script's body runs inside this scope: an escalation or SIGTERM cancels it
        self._body = anyio.CancelScope()
        self._body.__enter__()
        self._state = "running"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state != "running":
            return
        ours = self._body.cancel_called and self._body.__exit__(exc_type, exc, tb)
        if not ours:
            self._body.__exit__(None, None, None)
        self._state = "stopping"
        if ours:
            reason = "escalated" if self._escalation is not None else "sigterm"
        else:
            # leaving on an error or Ctrl-C: interrupt handlers instead of draining
            reason = "shutdown" if exc is None else "interrupted"
        try:
            with anyio.CancelScope(shield=True):
                await self._tree.shutdown(reason)
                await self._transport.aclose()
        finally:
            install_router(None)
            install_shared_memory(None)
            self._sharing.close()
            segments = self._registry.close()
            self._service_done.set()
            try:
                with anyio.CancelScope(shield=True):
                    await self._service
            finally:
                report = self._report = self._tree.report
                report.in_doubt += self._transport.in_doubt_total
                self._log.info(
                    "runtime.stopped",
                    reason=reason,
                    actors=len(self._tree.ended),
                    stopped=report.stopped,
                    killed=report.killed,
                    handled=sum(report.handled.values()),
                    failed=sum(report.failed.values()),
                    dead_lettered=report.dead_lettered,
                    restarts={k: v for k, v in report.restarts.items() if v},
                    in_doubt=report.in_doubt,
                    escalated=report.escalated,
                    interrupted=exc is not None and not ours,
                    segments_unlinked=segments,
                )
                self._rundir.remove()
                if self._log_file is not None:
                    self._log_file.close()
                self._state = "closed"
        if self._escalation is not None:
            raise self._escalation
        if ours and self._terminated:
            raise SystemExit(_SIGTERM_EXIT)

    async def _serve(self, started: anyio.Event) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self.handle_sigterm and threading.current_thread() is threading.main_thread():
                tg.start_soon(self._watch_sigterm)
            tg.start_soon(self._housekeeping)
            started.set()
            await self._service_done.wait()
            tg.cancel_scope.cancel()

    async def _housekeeping(self) -> None:
        """Now and then: give back shared memory the script's sends no longer use."""
        while True:
            await anyio.sleep(1.0)
            transport: Transport | None = getattr(self, "_transport", None)
            if transport is not None:
                transport.shipper.pool.trim()

    async def _watch_sigterm(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                if self._state == "running" and not self._terminated:
                    self._terminated = True
                    self._log.warning("runtime.sigterm")
                    self._body.cancel()

    def _on_escalation(self, error: EscalationError) -> None:
        if self._escalation is None:
            self._escalation = error
            self._body.cancel()

    # -- the public API --------------------------------------------------------------------

    async def spawn(
        self,
        actor_class: type[Actor],
        *args: Any,
        name: str | None = None,
        mailbox_size: int | None = None,
        restart: RestartType = "permanent",
        on_error: OnError = "crash",
        supervisor: Supervisor | None = None,
        message_deadline: float | None = None,
        hang_timeout: float | None = None,
        **kwargs: Any,
    ) -> ActorRef:
        """Start ``actor_class(*args, **kwargs)`` in a new process; return its ref once running.

        The ref stays valid across restarts: messages sent while the actor is being
        restarted wait up to ``restart_wait`` seconds for the new incarnation.

        Args:
            actor_class: a subclass of ``actors.Actor`` defined at module top level.
            name: a unique name for ``lookup`` and the logs; default ``<class>-<n>``.
            mailbox_size: capacity of its mailbox in messages (default: the runtime's),
                shared by all its senders.
            restart: ``permanent`` (default), ``transient`` or ``temporary``.
            on_error: ``crash`` (default: an exception escaping ``receive`` ends the
                incarnation and the supervisor restarts it) or ``resume``.
            supervisor: the supervisor it goes under (default: the root one).
            message_deadline: seconds one message may take before the actor is declared
                hung, its stack dumped and its process killed (and restarted); checked
                at heartbeats, so up to two ``heartbeat_interval`` late.
            hang_timeout: the runtime's ``hang_timeout``, for this actor.

        These keyword names are the runtime's; the actor's ``__init__`` gets the rest.

        Raises:
            InvalidSpawnError: not an Actor class, arguments its ``__init__`` can't take,
                or a bad option.
            MessageNotSerializableError: an argument cannot be pickled.
            ActorNameTakenError: a running actor already has ``name``.
            ActorStartError: its ``__init__`` or ``on_start`` raised, or it never got ready.
        """
        self._require("running")
        options = check_options(restart, on_error, message_deadline, hang_timeout)
        payload, size = prepare_spawn(
            actor_class,
            args,
            kwargs,
            self.mailbox_size if mailbox_size is None else mailbox_size,
            self.max_message_size,
        )
        node = self._tree.node_for(supervisor, None)
        ref = await self._tree.spawn(
            actor_class.__name__, payload, name, size, options, node, parent_id=None
        )
        await self._transport.ensure_connected(ref)
        return ref

    async def supervisor(
        self,
        name: str | None = None,
        *,
        strategy: Strategy = "one_for_one",
        max_restarts: int = DEFAULT_MAX_RESTARTS,
        period: float = DEFAULT_PERIOD,
        backoff: Backoff | None = None,
        supervisor: Supervisor | None = None,
    ) -> Supervisor:
        """Create a supervisor (under the root one, or under ``supervisor``).

        Spawn its children with ``spawn(..., supervisor=sup)``, in the order they should
        start. When a child fails, ``strategy`` says which children restart; more than
        ``max_restarts`` restarts within ``period`` seconds make it give up: it stops all
        its children, newest first, and its own supervisor handles that as a failure.

        Example::

            pipeline = await rt.supervisor("pipeline", strategy="rest_for_one")
            source = await rt.spawn(Source, supervisor=pipeline)
            sink = await rt.spawn(Sink, source, supervisor=pipeline)
        """
        self._require("running")
        parent = self._tree.node_for(supervisor, None)
        return self._tree.add_supervisor(
            name, strategy, max_restarts, period, backoff, parent, owner=None
        )

    def probe(self) -> EventProbe:
        """Listen to the runtime's lifecycle events: ``async with rt.probe() as probe:``.

        ``await probe.expect("actor.restarted", actor="worker")`` waits for a matching
        event (see the README for the event names and their fields).
        """
        self._require("running")
        return EventProbe(self._events)

    async def lookup(self, name: str) -> ActorRef:
        """Return the ref of the actor called ``name`` (running, or being restarted).

        Raises:
            ActorNotFoundError: no actor has that name.
        """
        self._require("running")
        ref = self._tree.lookup(name)
        await self._transport.ensure_connected(ref)
        return ref

    async def stop(self, ref: ActorRef) -> None:
        """Stop ``ref`` in order, for good, and wait until its process has exited.

        Its own children stop first. It finishes what is already in its mailbox and runs
        ``on_stop``; after ``stop_timeout`` seconds it is terminated, then killed. It is
        not restarted, whatever its restart type. Stopping an actor that already stopped
        does nothing.

        Raises:
            ActorNotFoundError: ``ref`` does not belong to this runtime.
        """
        self._require("running")
        if ref.actor_id in self._tree.ended:
            return
        await self._tree.stop(self._tree.record_of(ref))

    async def shared_array(
        self,
        shape: int | tuple[int, ...] | None,
        dtype: npt.DTypeLike | None = None,
        *,
        name: str | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> SharedArray:
        """Create a zero-filled numpy array in shared memory; return its handle.

        The runtime owns the memory: it is unlinked when the run ends (or by ``free``),
        and a later runtime removes what a killed run left. Send the handle to actors;
        each maps the same memory. Inside an actor use ``self.context.shared_array``.

        Args:
            shape: e.g. ``(1000, 3)``; an int for one dimension.
            dtype: any numpy dtype without Python objects (default float64).
            name: a label for the logs and errors.
            path: map this ``.npy`` file instead: created with ``shape`` and ``dtype`` if
                missing, else opened (``shape`` and ``dtype`` may then be None, or must
                match). The file outlives the run; only its lock is the run's.

        Raises:
            InvalidSharedArrayError: a bad shape, dtype or file.
            SharedMemoryFullError: ``/dev/shm`` (or ``shm_budget``) has no room for it.
        """
        self._require("running")
        return self._create_array(shape, dtype, name, path)

    async def share(self, array: npt.ArrayLike, *, name: str | None = None) -> SharedArray:
        """Copy ``array`` into a new shared array and return its handle."""
        self._require("running")
        data = np.asarray(array)
        handle = self._create_array(data.shape, data.dtype, name, None)
        handle.view(writable=True)[...] = data
        return handle

    async def semaphore(self, value: int, *, name: str | None = None) -> SharedSemaphore:
        """Create a counting semaphore with ``value`` slots, shared by every actor.

        ``async with sem:`` takes a slot and gives it back; a holder that dies gives its
        slot back at once, and the next holder of it is told (``Permit``).
        """
        self._require("running")
        return self._registry.create_semaphore(value, name)

    async def free(self, handle: SharedArray | SharedSemaphore) -> None:
        """Release a shared array's memory (or a semaphore) before the run ends.

        Views already mapped stay valid; any later use of the handle raises
        ``StaleHandleError``. A file-backed array's ``.npy`` file is kept.
        """
        self._require("running")
        self._free(handle)

    def _free(self, handle: SharedArray | SharedSemaphore) -> None:
        self._registry.free(handle)
        self._sharing.forget(handle.key)

    def _create_array(
        self,
        shape: object,
        dtype: object,
        name: str | None,
        path: str | os.PathLike[str] | None,
    ) -> SharedArray:
        if path is None and dtype is None:
            dtype = "float64"
        return self._registry.create_array(
            shape, dtype, name, None if path is None else os.fspath(path)
        )

    # -- requests from actors --------------------------------------------------------------

    def _require(self, *states: str) -> None:
        if self._state not in states:
            detail = {
                "new": "this Runtime has not been entered",
                "stopping": "this Runtime is shutting down",
                "closed": "this Runtime has exited",
            }.get(self._state, self._state)
            raise RuntimeClosedError(detail)

    async def _serve_request(
        self, rec: ActorRecord, rid: int, op: str, args: tuple[Any, ...]
    ) -> Any:
        tree = self._tree
        if op == "await_actor":
            await tree.await_actor(args[0], float(args[1]))
            return None
        if self._state != "running":
            raise RuntimeClosedError("the runtime is shutting down")
        if op == "spawn":
            class_name, payload, name, size, options, handle = args
            node = tree.node_for(handle, rec)
            return await tree.spawn(
                class_name, payload, name, size, options, node, parent_id=rec.ref.actor_id
            )
        if op == "supervisor":
            name, strategy, max_restarts, period, backoff, handle = args
            parent = tree.node_for(handle, rec)
            return tree.add_supervisor(
                name, strategy, max_restarts, period, backoff, parent, owner=None
            )
        if op == "lookup":
            return tree.lookup(args[0])
        if op == "stop":
            target = tree.records.get(args[0])
            if target is None:
                if args[0] in tree.ended:
                    return None
                raise ActorNotFoundError(str(args[0]))
            await tree.stop(target)
            return None
        if op == "watch":
            target = tree.records.get(args[0].actor_id)
            if target is None:
                tree.tg.start_soon(tree.notify_now, rec.ref, args[0], tree.explain(args[0]))
            else:
                target.watchers.add(rec.ref.actor_id)
            return None
        if op == "unwatch":
            target = tree.records.get(args[0].actor_id)
            if target is not None:
                target.watchers.discard(rec.ref.actor_id)
            return None
        if op == "shared_array":
            return self._create_array(*args)
        if op == "semaphore":
            return self._registry.create_semaphore(*args)
        if op == "free":
            self._free(args[0])
            return None
        if op == "is_peer":
            pid = int(args[0])
            return pid == os.getpid() or pid in tree.live_pids()
        raise ValueError(f"unknown control request {op!r}")
