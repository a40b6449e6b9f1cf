"""Runtime: starts, names, connects and stops the actors of one run, from the script."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, TypedDict, TypeGuard, Unpack

import anyio

# anyio.run imports its asyncio backend on its first call: loaded here, it comes with the
# runtime's modules instead (the collector paused, their methods' compiled code kept)
import anyio._backends._asyncio
import anyio.abc
import anyio.to_thread

from actors import (
    EscalationError,
    InvalidConfigError,
    RuntimeAlreadyRunningError,
    RuntimeClosedError,
    StopReason,
    UnsupportedBackendError,
)
from actors._router import install_router, router_installed
from actors._shared import install_shared_memory

from .._api import Services
from .._config import Backend, Forkserver, RuntimeConfig
from .._main_import import in_actor_process_main_import, park_script
from .._stdio import hold_stdio
from ..observe.logging import LogConfig, new_run_log_dir, open_log, prune_run_logs
from ..observe.loop_noise import install_noise_filter
from ..observe.probe import EventProbe, PublishingLog
from ..shm.segments import sweep_stale_segments
from ..shm.sharing import SharedRegistry, SharingService
from ..wire.codec import Shipper
from ..wire.protocol import RequestBody
from ..wire.rundir import RunDirectory, multiprocessing_dir
from ..wire.transport import SenderInfo, Transport
from .forkserver import forkserver_is_a_copy, track_directory, untrack_directory
from .hosting import Host
from .policy import Clock, MonotonicClock
from .process_host import ProcessHost, raise_descriptor_limit
from .quick_exit import arrange_quick_exit
from .registry import ActorRecord, Registry
from .report import ShutdownReport
from .requests import Requests
from .tree import ActorTree

if TYPE_CHECKING:  # loaded on the Ray backend only: a local run never needs them
    from ..wire.ray_transport import RayTransport
    from .ray_host import RayCluster, RayHost

__all__ = ["Runtime", "RuntimeOptions"]

#: the stop reason of a run ended by each signal the runtime turns into an orderly stop
_STOPPED_BY: dict[int, StopReason] = {signal.SIGTERM: "sigterm", signal.SIGHUP: "sighup"}
#: the script's process as a sender: its id and box in every log line and frame
_MAIN_ID = "a0"
_MAIN_BOX = "a0.1"


class RuntimeOptions(TypedDict, total=False):
    """``Runtime``'s keyword options; each is a field of ``RuntimeConfig``."""

    log_dir: str | os.PathLike[str] | None
    trace: bool | None
    mailbox_size: int
    stop_timeout: float
    start_timeout: float
    max_message_size: int
    shm_threshold: int | None
    shm_budget: int | None
    restart_wait: float
    hang_timeout: float | None
    heartbeat_interval: float | None
    busy_poll: float | None
    uvloop: bool | None
    forkserver: Forkserver | None
    handle_sigterm: bool
    max_restarts: int
    period: float
    backend: Backend | None
    address: str | None


class Runtime(Services):
    """Runs and supervises actors, each in its own process, for an ``async with`` block.

    Example:
        ```python
        async with Runtime() as rt:
            agg = await rt.spawn(Aggregator, 2, name="aggregator")
            await agg.tell(("count", 5))
            print(await agg.ask("total", timeout=5.0))
        ```

    Every actor is supervised: spawned with no options it is ``permanent`` under the root
    supervisor (``one_for_one``, at most ``max_restarts`` restarts within ``period``
    seconds). If the root supervisor gives up, every actor is stopped and ``async with``
    raises ``EscalationError``.

    Leaving the block stops every actor still running, newest first: each gets
    ``stop_timeout`` seconds to finish what is in its mailbox and run ``on_stop``, then
    SIGTERM, then SIGKILL. ``report`` then says what happened. Nothing is left behind: no
    process, no socket file, no shared memory. SIGTERM to the script's process stops
    everything the same way and ends the script with exit status 143; so does SIGHUP (the
    terminal hung up), with 129, unless the script ignores it (``nohup``) or handles it.

    One runtime runs in a process at a time. It runs on asyncio (``asyncio.run``, or
    ``anyio.run`` with its default backend).

    The options are keyword arguments, all optional; ``RuntimeConfig`` holds their
    defaults.

    Keyword Args:
        log_dir (str | os.PathLike | None): where every process writes its JSON-lines
            log. Default: a directory per run under ``$ACTORS_LOG_DIR``, or under the temp
            dir (the last 20 runs kept).
        trace (bool | None): also log one event per message (``message.sent``,
            ``message.received``, ``message.handled``...). Default: the ``ACTORS_TRACE``
            environment variable.
        mailbox_size (int): default capacity of mailboxes, in messages (1000).
        stop_timeout (float): seconds an actor gets to stop in order before it is killed (5).
        start_timeout (float): seconds an actor gets to become ready in ``spawn`` (30), and
            the forkserver to fork its process.
        max_message_size (int): largest pickled message, in bytes, not counting large arrays
            that travel through shared memory (64 MiB).
        shm_threshold (int | None): numpy arrays of at least this many bytes inside messages and
            replies travel through shared memory instead of the socket (1 MiB; ``None``:
            never).
        shm_budget (int | None): most bytes the run's shared arrays may hold at once (default: what
            ``/dev/shm`` has room for).
        restart_wait (float): seconds a message to an actor that is being restarted waits for
            the new incarnation before the send fails with ``ActorDeadError`` (5).
        hang_timeout (float | None): seconds an actor's event loop may go without a
            heartbeat before it is declared hung, its stack dumped and its process killed
            (60; ``None``: never; per actor with ``spawn(..., hang_timeout=...)``).
        heartbeat_interval (float | None): seconds between heartbeats of every actor
            (``None``: a tenth of its hang timeout, a quarter of its message deadline,
            at most 5).
        busy_poll (float | None): seconds an asker waiting for its answer, or an actor
            whose mailbox just ran empty, reads its sockets in a loop before it sleeps.
            Waking a sleeping process costs more than a quick round trip on small VMs;
            this makes asks much faster, for a little CPU. It backs off by itself when
            answers do not come in time; 0 turns it off (machines shared with other work,
            laptops on battery). Default: ``$ACTORS_BUSY_POLL`` seconds, else 0.0002.
        uvloop (bool | None): run actor processes on uvloop (``pip install uvloop``, the ``speed``
            extra) for faster asks. Default: ``$ACTORS_UVLOOP`` (``1``), else off.
        forkserver (str | None): what actor processes are forked from. ``"auto"``: a copy of
            the script's process, made once when the runtime starts, if the script runs one
            thread (numpy's OpenBLAS threads aside) and uses at most 64 MiB; else, as
            ``"fresh"`` always does, a fresh interpreter, which must import the runtime
            before the first actor can start. Actors forked from the copy start as the
            script was then, without running its top level again. Default:
            ``$ACTORS_FORKSERVER``, else ``"auto"``.
        handle_sigterm (bool): turn SIGTERM into an orderly stop, and SIGHUP too (the
            terminal hung up) unless the script ignores or handles it (main thread only;
            True).
        max_restarts (int): with ``period``, the root supervisor's restart intensity (3 within
            5 s); actors' own supervisors get the same.
        period (float): see ``max_restarts``.
        backend (str | None): where actors run: ``"local"`` (one process each on this machine, the
            default) or ``"ray"`` (Ray actors on a Ray cluster; the ``ray`` extra).
            Default: ``$ACTORS_BACKEND``, else local.
        address (str | None): the Ray cluster for ``backend="ray"``: None starts a local one for the
            run, ``"auto"`` joins the one this machine belongs to, or ``"host:port"``.
            Default: ``$ACTORS_RAY_ADDRESS``.

    Args:
        host: how incarnations are started (default: one local process per actor).
        config: a ready ``RuntimeConfig``, instead of the options.

    Raises:
        InvalidConfigError: a bad option or environment variable.
        UnsupportedBackendError: created under an async library other than asyncio.
    """

    def __init__(
        self,
        *,
        host: Host | None = None,
        config: RuntimeConfig | None = None,
        **options: Unpack[RuntimeOptions],
    ) -> None:
        _refuse_other_async_library()
        if config is not None and options:
            raise InvalidConfigError(
                f"Runtime takes a config or options, not both (got {', '.join(options)} too); "
                "use dataclasses.replace(config, ...) to change a config"
            )
        self._cfg = config if config is not None else RuntimeConfig.from_options(**options)
        self._host_arg = host
        self._clock: Clock = MonotonicClock()
        self._state = "new"
        self._log_file: IO[bytes] | None = None
        self._escalation: EscalationError | None = None
        #: the signal that ended the run in order (SIGTERM, SIGHUP), if one did
        self._terminated: int | None = None
        self._report: ShutdownReport | None = None

    # -- properties ------------------------------------------------------------------------

    @property
    def config(self) -> RuntimeConfig:
        """This runtime's options, validated, with the environment applied."""
        return self._cfg

    @property
    def _config(self) -> RuntimeConfig:
        return self._cfg

    @property
    def _transport(self) -> Transport | RayTransport:
        self._require("running")
        return self._router

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
            # its classes there: it stops here for good instead of starting a runtime
            park_script()
        if self._state != "new":
            raise RuntimeError("a Runtime can be entered once; create a new one")
        _refuse_other_async_library()
        if router_installed():
            raise RuntimeAlreadyRunningError
        config = self._cfg
        hold_stdio()  # before the run's first socket
        arrange_quick_exit()
        # before any actor process or the forkserver starts: they inherit it
        fd_limit = raise_descriptor_limit()
        self._cluster: RayCluster | None = None
        if config.backend == "ray" and self._host_arg is None:
            from .ray_host import RayCluster

            self._cluster = RayCluster(config.address)
            self._cluster.connect()
        self._rundir, swept = RunDirectory.create()
        host: Host
        if self._host_arg is not None:
            host = self._host_arg
        elif self._cluster is not None:
            from ..wire.ray_transport import run_namespace
            from .ray_host import RayHost

            host = RayHost(run_namespace(self._rundir.run_id))
        else:
            host = ProcessHost(
                uvloop=config.uvloop,
                fork=config.forkserver == "auto",
                hand_off_timeout=config.start_timeout,
            )
            # the tracker copy outlives every actor: if the script dies without leaving
            # the runtime, it removes them, and this run leaves no socket or lock file
            track_directory(str(self._rundir.path))
            track_directory(str(self._rundir.path.parent), only_if_empty=True)
            if (forkserver_dir := multiprocessing_dir()) is not None:
                track_directory(forkserver_dir)
        self._host = host
        try:
            swept_segments = sweep_stale_segments(RunDirectory.existing_run_ids())
            log_dir = config.log_dir or new_run_log_dir(self._rundir.run_id)
            self._log_config = LogConfig(
                log_dir,
                self._rundir.run_id,
                trace=config.trace,
                node=_node_of(host),
            )
            self._log, self._log_file = open_log(
                self._log_config,
                f"main.{os.getpid()}",
                {"source": "main"},
                configure_global=False,
                warn_when_full=True,
            )
        except BaseException:
            self._remove_run_directory()  # refused (an unsafe log root...): nothing left
            raise
        self._log.info(
            "runtime.started",
            run_dir=str(self._rundir.path),
            log_dir=str(log_dir),
            trace=config.trace,
            swept_stale_runs=swept,
        )
        if isinstance(host, ProcessHost):
            self._log.info(
                "runtime.forkserver",
                copy_of_script=forkserver_is_a_copy(),
                why_not_made_here=host.fresh_forkserver,
            )
        if fd_limit is not None:
            self._log.info("runtime.fd_limit_raised", before=fd_limit[0], after=fd_limit[1])
        if swept or swept_segments:
            self._log.warning(
                "runtime.stale_run_recovered",
                runs=swept,
                segments=len(swept_segments),
            )
        node = _node_of(host)
        self._shared = SharedRegistry(
            self._rundir.run_id, self._rundir.lock_dir, self._log, config.shm_budget, node
        )
        self._sharing = SharingService(self._rundir.run_id, self._rundir.lock_dir, self._log, node)
        self._events = PublishingLog(self._log)
        # The runtime's own tasks live in a task of their own, not in a task group entered
        # here: the script's code runs inside this call's scopes, and cancelling it (Ctrl-C,
        # a timeout) must not cancel the machinery that stops the actors in order.
        loop = asyncio.get_running_loop()
        install_noise_filter(loop)
        started = anyio.Event()
        self._service_done = anyio.Event()
        self._service = loop.create_task(self._serve(started))
        await started.wait()
        registry = Registry(config.restart_wait)
        self._registry = registry
        self._router: Transport | RayTransport
        if self._cluster is not None:
            from ..wire.ray_transport import RaySender, RayTransport, run_namespace

            self._router = RayTransport(
                self._tg,
                RaySender("main", _MAIN_ID, os.getpid(), _MAIN_BOX),
                namespace=run_namespace(self._rundir.run_id),
                max_message_size=config.max_message_size,
                log=self._log,
                trace=config.trace,
                await_actor=registry.await_actor,
                how_it_ended=registry.how_it_ended,
                explain_unreachable=registry.explain,
            )
        else:
            self._router = Transport(
                self._tg,
                SenderInfo("main", _MAIN_ID, os.getpid(), _MAIN_BOX),
                max_message_size=config.max_message_size,
                log=self._log,
                trace=config.trace,
                shipper=Shipper(self._rundir.run_id, _MAIN_BOX, config.shm_threshold, self._log),
                ask_spin=config.busy_poll,
                await_actor=registry.await_actor,
                explain_unreachable=registry.explain,
            )
        self._tree = ActorTree(
            config=config,
            host=host,
            registry=registry,
            rundir=self._rundir,
            log_config=self._log_config,
            log=self._events,
            tg=self._tg,
            clock=self._clock,
            notify=self._router.tell,
            serve_request=self._serve_actor_request,
            on_escalation=self._on_escalation,
        )
        self._requests = Requests(
            self._tree,
            registry,
            self._shared,
            self._sharing,
            self._tg,
            is_running=lambda: self._state == "running",
        )
        registry.end_hooks.append(self._requests.incarnation_ended)
        install_router(self._router)
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
        cancelled = self._body.cancel_called
        # exactly one exit of the body's scope, whatever the body did with the
        # cancellation it was sent: swallowed or not, the runtime cancelled it
        swallowed = self._body.__exit__(exc_type, exc, tb)
        ours = cancelled and (swallowed or exc is None or _is_cancellation(exc))
        self._state = "stopping"
        reason: StopReason
        if ours:
            if self._escalation is not None or self._terminated is None:
                reason = "escalated"
            else:
                reason = _STOPPED_BY[self._terminated]
        else:
            # leaving on an error or Ctrl-C: interrupt handlers instead of draining
            reason = "shutdown" if exc is None else "interrupted"
        try:
            with anyio.CancelScope(shield=True):
                await self._tree.shutdown(reason)
                await self._router.aclose()
                if _is_ray_host(self._host):
                    await self._host.gather_logs(
                        self._rundir.run_id, self._log_config.log_dir, self._log
                    )
        finally:
            install_router(None)
            install_shared_memory(None)
            self._sharing.close()
            segments = self._shared.close()
            self._service_done.set()
            try:
                with anyio.CancelScope(shield=True):
                    await self._service
            finally:
                report = self._report = self._tree.report
                report.in_doubt += self._router.in_doubt_total
                self._log.info(
                    "runtime.stopped",
                    reason=reason,
                    actors=len(self._registry.ended),
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
                self._remove_run_directory()
                if self._cluster is not None:
                    self._cluster.disconnect()
                if self._log_file is not None:
                    self._log_file.close()
                self._state = "closed"
        if self._escalation is not None:
            raise self._escalation
        if ours and self._terminated is not None:
            raise SystemExit(128 + self._terminated)  # as the signal would, by shell convention

    def _remove_run_directory(self) -> None:
        """Remove the run directory, and take it back from the tracker, which would
        remove it if the script died."""
        self._rundir.remove()
        untrack_directory(str(self._rundir.path))

    async def _serve(self, started: anyio.Event) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self._cfg.log_dir is None:
                # off the start's path; awaited before the runtime is closed
                tg.start_soon(anyio.to_thread.run_sync, prune_run_logs)
            if self._cfg.handle_sigterm and threading.current_thread() is threading.main_thread():
                tg.start_soon(self._watch_signals)
            tg.start_soon(self._housekeeping)
            started.set()
            await self._service_done.wait()
            tg.cancel_scope.cancel()

    async def _housekeeping(self) -> None:
        """Now and then: give back shared memory the script's sends no longer use."""
        while True:
            await anyio.sleep(1.0)
            if self._state == "running":
                self._router.shipper.pool.trim()

    async def _watch_signals(self) -> None:
        """Turn SIGTERM, and SIGHUP (the terminal hung up) unless the script ignores it
        (``nohup``) or handles it itself, into an orderly stop."""
        watched = [signal.SIGTERM]
        if signal.getsignal(signal.SIGHUP) == signal.SIG_DFL:  # else not ours to take
            watched.append(signal.SIGHUP)
        with anyio.open_signal_receiver(*watched) as signals:
            async for signum in signals:
                if self._state == "running" and self._terminated is None:
                    self._terminated = signum
                    self._log.warning(f"runtime.{_STOPPED_BY[signum]}")
                    self._body.cancel()

    def _on_escalation(self, error: EscalationError) -> None:
        if self._escalation is None:
            self._escalation = error
            self._body.cancel()

    # -- the public API beyond the shared calls ---------------------------------------------

    def probe(self) -> EventProbe:
        """Listen to the runtime's lifecycle events: ``async with rt.probe() as probe:``.

        ``await probe.expect("actor.restarted", actor="worker")`` waits for a matching
        event (the event names and their fields are in docs/tracing-and-logs.md).
        """
        self._require("running")
        return EventProbe(self._events)

    # -- requests --------------------------------------------------------------------------

    async def _request(self, body: RequestBody) -> Any:
        self._require("running")
        return await self._requests.handle(body, None)

    async def _serve_actor_request(self, rec: ActorRecord, body: RequestBody) -> object:
        return await self._requests.handle(body, rec)

    def _require(self, *states: str) -> None:
        if self._state not in states:
            detail = {
                "new": "this Runtime has not been entered",
                "stopping": "this Runtime is shutting down",
                "closed": "this Runtime has exited",
            }.get(self._state, self._state)
            raise RuntimeClosedError(detail)


def _is_ray_host(host: Host) -> TypeGuard[RayHost]:
    # the module is loaded only when a Ray host was made: without it, host cannot be one
    ray_host = sys.modules.get(f"{__package__}.ray_host")
    return ray_host is not None and isinstance(host, ray_host.RayHost)


def _node_of(host: Host) -> str:
    """The machine the host's actors run on ("" on the local backend, which has one)."""
    return host.node if _is_ray_host(host) else ""


def _is_cancellation(exc: BaseException) -> bool:
    return isinstance(exc, (asyncio.CancelledError, anyio.get_cancelled_exc_class()))


def _refuse_other_async_library() -> None:
    """Raise UnsupportedBackendError under trio (or any async library but asyncio)."""
    try:
        import sniffio
    except ImportError:  # without sniffio, trio cannot be running
        return
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return
    if library != "asyncio":
        raise UnsupportedBackendError(library)
