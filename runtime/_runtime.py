"""Runtime: starts, names, connects and stops the actors of one run."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pickle
import shutil
import signal
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import anyio
import anyio.abc
import numpy as np
import numpy.typing as npt
from anyio.abc import UNIXSocketStream

from actors import (
    Actor,
    ActorNameTakenError,
    ActorNotFoundError,
    ActorRef,
    ActorStartError,
    InvalidSpawnError,
    RuntimeClosedError,
    SharedArray,
    SharedSemaphore,
)
from actors._router import install_router
from actors._shared import install_shared_memory

from ._codec import Shipper, dumps_error
from ._control import ControlChannel, ControlClosedError
from ._hosting import Host, HostedProcess, ProcessHost
from ._logging import Log, LogConfig, open_log
from ._loop_noise import install_noise_filter
from ._main_import import MainImportStop, in_actor_process_main_import
from ._rundir import RunDirectory
from ._segments import segments_of, sweep_stale_segments, unlink_segments
from ._sharing import SharedRegistry, SharingService
from ._spawning import ActorSpec, prepare_spawn
from ._transport import SenderInfo, Transport

__all__ = ["Runtime", "default_log_root"]

_KEEP_RUN_LOGS = 20
_KILL_WAIT = 5.0
_TERM_WAIT = 1.0


def default_log_root() -> Path:
    """Where runs keep their logs unless told otherwise: ``$ACTORS_LOG_DIR`` or a temp dir."""
    if env := os.environ.get("ACTORS_LOG_DIR"):
        return Path(env)
    return Path(tempfile.gettempdir()) / f"actors-logs-{os.getuid()}"


def _trace_from_env() -> bool:
    return os.environ.get("ACTORS_TRACE", "").lower() in {"1", "true", "yes", "on"}


@dataclass(eq=False)
class _Record:
    """The runtime's view of one actor."""

    ref: ActorRef
    actor_class: str
    parent: str | None
    control: ControlChannel | None = None
    process: HostedProcess | None = None
    pid: int = 0
    running: anyio.Event = field(default_factory=anyio.Event)
    exited: anyio.Event = field(default_factory=anyio.Event)
    control_done: anyio.Event = field(default_factory=anyio.Event)
    start_error: tuple[str, str, str] | None = None
    stop_report: tuple[str, int, int, int] | None = None
    exit_code: int | None = None
    exit_reason: str = ""
    killed: bool = False


class Runtime:
    """Runs actors, each in its own process, for the duration of an ``async with`` block.

    Example::

        async with Runtime() as rt:
            agg = await rt.spawn(Aggregator, 2, name="aggregator")
            await agg.tell(("count", 5))
            print(await agg.ask("total", timeout=5.0))

    Leaving the block stops every actor still running, newest first: each gets
    ``stop_timeout`` seconds to finish what is in its mailbox and run ``on_stop``, then
    SIGTERM, then SIGKILL. Nothing is left behind: no process, no socket file.

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
        host: Host | None = None,
    ) -> None:
        if isinstance(mailbox_size, bool) or not isinstance(mailbox_size, int) or mailbox_size < 1:
            raise ValueError(f"mailbox_size must be a positive int, not {mailbox_size!r}")
        if not stop_timeout > 0 or not start_timeout > 0:
            raise ValueError("stop_timeout and start_timeout must be positive seconds")
        if max_message_size < 1:
            raise ValueError("max_message_size must be a positive number of bytes")
        if shm_threshold is not None and shm_threshold < 1:
            raise ValueError("shm_threshold must be a positive number of bytes, or None")
        if shm_budget is not None and shm_budget < 0:
            raise ValueError("shm_budget must be a number of bytes, or None")
        self.shm_threshold = shm_threshold
        self.shm_budget = shm_budget
        self._log_dir_arg = Path(log_dir) if log_dir is not None else None
        self.trace = _trace_from_env() if trace is None else trace
        self.mailbox_size = mailbox_size
        self.stop_timeout = stop_timeout
        self.start_timeout = start_timeout
        self.max_message_size = max_message_size
        self._host_arg = host
        self._state = "new"
        self._records: dict[str, _Record] = {}
        self._names: dict[str, _Record] = {}
        self._order: list[_Record] = []
        self._ids = itertools.count(1)
        self._auto_names: dict[str, itertools.count[int]] = {}
        self._log: Log = None
        self._log_file: IO[bytes] | None = None

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

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        if in_actor_process_main_import():
            # the script's top level is running again inside an actor process, to define
            # its classes there: stop the import here instead of starting a second runtime
            raise MainImportStop
        if self._state != "new":
            raise RuntimeError("a Runtime can be entered once; create a new one")
        self._host: Host = self._host_arg or ProcessHost()
        self._rundir, swept = RunDirectory.create()
        swept_segments = sweep_stale_segments(RunDirectory.existing_run_ids())
        log_dir = self._log_dir_arg or _new_run_log_dir(self._rundir.run_id)
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
            SenderInfo("main", "a0", os.getpid()),
            max_message_size=self.max_message_size,
            log=self._log,
            trace=self.trace,
            shipper=Shipper(self._rundir.run_id, "a0", self.shm_threshold),
        )
        self._transport.explain_unreachable = self._explain
        install_router(self._transport)
        install_shared_memory(self._sharing)
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
        self._state = "stopping"
        try:
            with anyio.CancelScope(shield=True):
                # leaving on an error or Ctrl-C: interrupt handlers instead of draining
                reason = "requested" if exc is None else "interrupted"
                for rec in reversed(self._order):
                    await self._stop_record(rec, self.stop_timeout, reason)
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
                killed = [r.ref.name for r in self._order if r.killed]
                self._log.info(
                    "runtime.stopped",
                    actors=len(self._order),
                    killed=killed,
                    interrupted=exc is not None,
                    segments_unlinked=segments,
                )
                self._rundir.remove()
                if self._log_file is not None:
                    self._log_file.close()
                self._state = "closed"

    async def _serve(self, started: anyio.Event) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            started.set()
            await self._service_done.wait()
            tg.cancel_scope.cancel()

    # -- the public API --------------------------------------------------------------------

    async def spawn(
        self,
        actor_class: type[Actor],
        *args: Any,
        name: str | None = None,
        mailbox_size: int | None = None,
        **kwargs: Any,
    ) -> ActorRef:
        """Start ``actor_class(*args, **kwargs)`` in a new process; return its ref once running.

        Args:
            actor_class: a subclass of ``actors.Actor`` defined at module top level.
            name: a unique name for ``lookup`` and the logs; default ``<class>-<n>``.
            mailbox_size: capacity of its mailbox in messages (default: the runtime's).

        Raises:
            InvalidSpawnError: not an Actor class, or arguments its ``__init__`` can't take.
            MessageNotSerializableError: an argument cannot be pickled.
            ActorNameTakenError: a running actor already has ``name``.
            ActorStartError: its ``__init__`` or ``on_start`` raised, or it never got ready.
        """
        self._require("running")
        payload, size = prepare_spawn(
            actor_class,
            args,
            kwargs,
            self.mailbox_size if mailbox_size is None else mailbox_size,
            self.max_message_size,
        )
        ref = await self._spawn(actor_class.__name__, payload, name, size, parent=None)
        await self._transport.ensure_connected(ref)
        return ref

    async def lookup(self, name: str) -> ActorRef:
        """Return the ref of the running actor called ``name``.

        Raises:
            ActorNotFoundError: no running actor has that name.
        """
        self._require("running")
        ref = self._lookup(name)
        await self._transport.ensure_connected(ref)
        return ref

    async def stop(self, ref: ActorRef) -> None:
        """Stop ``ref`` in order and wait until its process has exited.

        It finishes what is already in its mailbox and runs ``on_stop``; after
        ``stop_timeout`` seconds it is terminated, then killed. Stopping an actor that
        already stopped does nothing.

        Raises:
            ActorNotFoundError: ``ref`` does not belong to this runtime.
        """
        self._require("running")
        rec = self._records.get(ref.actor_id)
        if rec is None or rec.ref != ref:
            raise ActorNotFoundError(ref.name)
        await self._stop_record(rec, self.stop_timeout)

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

    # -- spawning --------------------------------------------------------------------------

    def _require(self, *states: str) -> None:
        if self._state not in states:
            detail = {
                "new": "this Runtime has not been entered",
                "stopping": "this Runtime is shutting down",
                "closed": "this Runtime has exited",
            }.get(self._state, self._state)
            raise RuntimeClosedError(detail)

    def _name_for(self, class_name: str, name: str | None) -> str:
        if name is None:
            counter = self._auto_names.setdefault(class_name, itertools.count(1))
            auto = f"{class_name.lower()}-{next(counter)}"
            while auto in self._names:
                auto = f"{class_name.lower()}-{next(counter)}"
            return auto
        if not isinstance(name, str) or not name or len(name) > 200:
            raise InvalidSpawnError(f"an actor name must be a non-empty str, not {name!r}")
        if name in self._names or name == "main":
            raise ActorNameTakenError(name)
        return name

    async def _spawn(
        self, class_name: str, payload: bytes, name: str | None, size: int, parent: str | None
    ) -> ActorRef:
        name = self._name_for(class_name, name)
        actor_id = f"a{next(self._ids)}"
        ref = ActorRef(actor_id, name, self._rundir.socket_path(actor_id))
        rec = _Record(ref, class_name, parent)
        self._records[actor_id] = rec
        self._names[name] = rec
        self._order.append(rec)
        spec = ActorSpec(
            actor_id=actor_id,
            name=name,
            address=ref.address,
            mailbox_size=size,
            payload=payload,
            log=self._log_config,
            max_message_size=self.max_message_size,
            stop_timeout=self.stop_timeout,
            runtime_pid=os.getpid(),
            peers=frozenset({os.getpid(), *(r.pid for r in self._order if r.pid)}),
            run_dir=str(self._rundir.path),
            shm_threshold=self.shm_threshold,
        )
        ours, theirs = socket.socketpair()
        try:
            rec.process = await self._host.start(f"actor:{name}", pickle.dumps(spec), theirs)
        except BaseException:
            ours.close()
            self._forget(rec)
            raise
        finally:
            theirs.close()
        rec.pid = rec.process.pid
        rec.control = ControlChannel(await UNIXSocketStream.from_socket(ours))
        self._tg.start_soon(self._watch, rec)
        self._log.info(
            "actor.spawned",
            actor=name,
            actor_id=actor_id,
            pid=rec.pid,
            actor_class=class_name,
            parent=parent or "main",
            mailbox_size=size,
        )
        with anyio.move_on_after(self.start_timeout) as scope:
            async with anyio.create_task_group() as tg:

                async def settled(event: anyio.Event) -> None:
                    await event.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(settled, rec.running)
                tg.start_soon(settled, rec.exited)
        if rec.running.is_set() and not rec.exited.is_set():
            return ref
        if scope.cancelled_caught:
            rec.process.kill()
            await rec.exited.wait()
            raise ActorStartError(
                name, "TimeoutError", f"not ready within start_timeout={self.start_timeout:g} s"
            )
        await rec.exited.wait()
        if rec.start_error is not None:
            raise ActorStartError(name, *rec.start_error)
        raise ActorStartError(
            name,
            "ProcessExited",
            f"its process exited with code {rec.exit_code} before it was ready",
        )

    def _forget(self, rec: _Record) -> None:
        if self._names.get(rec.ref.name) is rec:
            del self._names[rec.ref.name]

    def _lookup(self, name: str) -> ActorRef:
        rec = self._names.get(name)
        if rec is None or not rec.running.is_set() or rec.exited.is_set():
            raise ActorNotFoundError(name)
        return rec.ref

    def _explain(self, ref: ActorRef) -> str:
        rec = self._records.get(ref.actor_id)
        if rec is None or not rec.exited.is_set():
            return "unreachable"
        return "stopped" if rec.stop_report is not None else "died"

    # -- watching and stopping -------------------------------------------------------------

    async def _watch(self, rec: _Record) -> None:
        assert rec.process is not None
        assert rec.control is not None
        async with anyio.create_task_group() as tg:
            tg.start_soon(rec.control.run_writer)
            tg.start_soon(self._read_control, rec)
            code = await rec.process.wait()
            # the child's last control messages ("stopped") are still in the socket
            with anyio.move_on_after(1.0):
                await rec.control_done.wait()
            tg.cancel_scope.cancel()
        await rec.control.aclose()
        rec.exit_code = code
        rec.exit_reason = self._exit_reason(rec, code)
        self._forget(rec)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(rec.ref.address)
        # large arrays sent to it and never read (it was killed): nobody else will map them
        unlink_segments(segments_of(self._rundir.run_id, f"m{rec.ref.actor_id}_"))
        fields: dict[str, Any] = {}
        if rec.stop_report is not None:
            _, fields["handled"], fields["failed"], fields["dead_lettered"] = rec.stop_report
        level = self._log.info if code == 0 and not rec.killed else self._log.warning
        level(
            "actor.exited",
            actor=rec.ref.name,
            actor_id=rec.ref.actor_id,
            pid=rec.pid,
            exit_code=code,
            reason=rec.exit_reason,
            killed=rec.killed,
            **fields,
        )
        rec.exited.set()

    @staticmethod
    def _exit_reason(rec: _Record, code: int) -> str:
        if rec.start_error is not None:
            return "start_failed"
        if code < 0:
            try:
                return f"signal:{signal.Signals(-code).name}"
            except ValueError:
                return f"signal:{-code}"
        if rec.stop_report is not None and code == 0:
            return rec.stop_report[0]
        return f"exit:{code}"

    async def _read_control(self, rec: _Record) -> None:
        assert rec.control is not None
        try:
            while True:
                item = await rec.control.receive()
                kind = item[0]
                if kind == "ready":
                    rec.running.set()
                elif kind == "start_failed":
                    rec.start_error = (str(item[1]), str(item[2]), str(item[3]))
                elif kind == "stopped":
                    rec.stop_report = (str(item[1]), int(item[2]), int(item[3]), int(item[4]))
                elif kind == "request":
                    self._tg.start_soon(self._serve_request, rec, item[1], item[2], item[3:])
        except ControlClosedError:
            pass
        finally:
            rec.control_done.set()

    async def _serve_request(self, rec: _Record, rid: int, op: str, args: tuple[Any, ...]) -> None:
        assert rec.control is not None
        try:
            if self._state != "running":
                raise RuntimeClosedError("the runtime is shutting down")
            value: Any
            if op == "spawn":
                class_name, payload, name, size = args
                value = await self._spawn(class_name, payload, name, size, parent=rec.ref.actor_id)
            elif op == "lookup":
                value = self._lookup(args[0])
            elif op == "stop":
                target = self._records.get(args[0])
                if target is None:
                    raise ActorNotFoundError(str(args[0]))
                await self._stop_record(target, self.stop_timeout)
                value = None
            elif op == "shared_array":
                value = self._create_array(*args)
            elif op == "semaphore":
                value = self._registry.create_semaphore(*args)
            elif op == "free":
                self._free(args[0])
                value = None
            elif op == "is_peer":
                pid = int(args[0])
                value = pid == os.getpid() or any(
                    r.pid == pid and not r.exited.is_set() for r in self._order
                )
            else:
                raise ValueError(f"unknown control request {op!r}")
        except Exception as exc:
            rec.control.send("reply", rid, False, dumps_error(exc))
        else:
            rec.control.send("reply", rid, True, value)

    async def _stop_record(self, rec: _Record, timeout: float, reason: str = "requested") -> None:
        """Stop in order; after ``timeout`` SIGTERM, then SIGKILL. Returns once it exited."""
        if rec.exited.is_set() or rec.process is None:
            return
        assert rec.control is not None
        rec.control.send("stop", timeout, reason)
        with anyio.move_on_after(timeout):
            await rec.exited.wait()
            return
        self._log.warning(
            "actor.stop_timeout", actor=rec.ref.name, actor_id=rec.ref.actor_id, timeout_s=timeout
        )
        rec.process.terminate()
        with anyio.move_on_after(_TERM_WAIT):
            await rec.exited.wait()
            return
        rec.killed = True
        rec.process.kill()
        with anyio.move_on_after(_KILL_WAIT):
            await rec.exited.wait()


def _new_run_log_dir(run_id: str) -> Path:
    root = default_log_root()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    runs = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.is_symlink()),
        key=lambda p: p.stat().st_mtime,
    )
    for old in runs[: max(0, len(runs) - (_KEEP_RUN_LOGS - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    path = root / run_id
    path.mkdir(mode=0o700)
    latest = root / "latest"
    if latest.is_symlink() or not latest.exists():
        latest.unlink(missing_ok=True)
        latest.symlink_to(path.name)
    return path
