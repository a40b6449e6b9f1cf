"""ProcessHost: each incarnation in its own local OS process (the ``Host`` seam's default).

``ProcessHost`` starts each actor in its own process with aiomultiprocess's ``Process``
and our own bootstrap, from a forkserver that has the runtime's modules preloaded.
"""

from __future__ import annotations

import contextlib
import errno
import json
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.spawn
import os
import pickle
import resource
import signal
import socket
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
from anyio.abc import UNIXSocketStream

from actors import ActorStartError, DescriptorLimitError

from .._lean import without_managers

with without_managers():
    import aiomultiprocess
    import aiomultiprocess.core

from .._entry import LOOP_OPTION, PRELOAD, PRELOAD_ENV, PRELOAD_MAIN_ENV, actor_main, bootstrap
from ..observe.account import (
    Counts,
    Liveness,
    LivenessReader,
    account_path,
    counts_from_log,
    read_account,
)
from ..observe.logging import log_stem, private_file
from ..shm.pool import orphan_pool
from ..shm.segments import message_prefix, segments_of, unlink_segments
from ..wire.control import ControlChannel
from ..wire.protocol import ActorSpec
from .forkserver import RUNNING_ALREADY, kill_forkserver, retire_copy, start_forkserver
from .hosting import StackDump

__all__ = [
    "ProcessHost",
    "format_tasks",
    "install_no_manager",
    "raise_descriptor_limit",
    "script_modules",
]

#: what a start that finds no free descriptor fails with: this process's limit, the system's
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)
#: descriptors the forkserver hand-off opens before it has sent its request: a socket to the
#: forkserver, then two pipes. Running out in between hangs up on the forkserver mid-request,
#: which kills it, and with it the exit status of every running actor; so they must be free.
_HAND_OFF_FDS = 5
#: where cgroup v1 mounts its pids controller, and v2 its one hierarchy
_PIDS_V1 = Path("/sys/fs/cgroup/pids")
_CGROUP_V2 = Path("/sys/fs/cgroup")
#: what a start raises when the forkserver ends during the hand-off (killed, or out of
#: memory): it never answered with the new process's pid
_FORKSERVER_GONE = (EOFError, BrokenPipeError, ConnectionResetError, ConnectionRefusedError)
#: seconds a cancelled start gives its hand-off to the forkserver to end by itself before
#: the forkserver is taken to be stuck and killed (a hand-off that works takes milliseconds)
_CANCEL_GRACE = 1.0
#: the most the soft descriptor limit is raised to: "unlimited" hard limits (some containers)
#: would make programs that close every possible descriptor before an exec crawl
_MAX_SOFT_FDS = 1 << 20

#: seconds a stack dump may take to appear in the actor's .stderr log
_DUMP_WAIT = 1.0
#: seconds more the tasks' coroutine stacks may take: they need the interpreter, which a
#: thread stuck in C code never gives back (then the threads' stacks are all there is)
_TASKS_WAIT = 0.5
#: how often to look for either
_DUMP_POLL = 0.02
#: the most of a stack dump that goes into the log
_MAX_STACK = 16_000
#: the most of a task dump that is read
_MAX_TASKS_FILE = 1 << 20

_T = TypeVar("_T")

# standard modules that touch the terminal or a display when imported, or are jokes
_NOT_PRELOADED = frozenset(
    {"antigravity", "curses", "idlelib", "pydoc", "readline", "this", "tkinter", "turtle"}
)


#: our own packages: a script's ``from runtime import Runtime`` runs again in each actor
#: process, and finds them loaded (they start no threads when imported)
_OWN = frozenset({"actors", "runtime"})
#: our modules for tools and tests, which bring pytest or rich with them
_OWN_NOT_PRELOADED = ("runtime.pytest_plugin", "runtime.testing", "runtime.trace")


def script_modules() -> list[str]:
    """Modules the script has imported that actor processes would import again.

    The standard library's, the runtime's own, and the script's own: those whose file is
    under the current directory or the script's, outside any site-packages. Third-party
    packages are left out (some start threads when imported, and the forkserver must stay
    single-threaded), except numpy (see ``ProcessHost``).
    """
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    roots = {os.path.realpath(os.getcwd())}
    if main_file:
        roots.add(os.path.dirname(os.path.realpath(main_file)))
    sites = {os.path.realpath(p) for p in sys.path if p.endswith("-packages")}
    chosen = []
    for name, module in list(sys.modules.items()):
        if module is None or "__main__" in name or name.startswith("_"):
            continue
        top = name.partition(".")[0]
        if top in _OWN:
            if not name.startswith(_OWN_NOT_PRELOADED):
                chosen.append(name)
            continue
        if top in sys.stdlib_module_names:
            if top not in _NOT_PRELOADED:
                chosen.append(name)
            continue
        file = getattr(module, "__file__", None)
        if not file:
            continue
        real = os.path.realpath(file)
        inside = any(real.startswith(root + os.sep) for root in roots)
        if inside and not any(real.startswith(site + os.sep) for site in sites):
            chosen.append(name)
    return sorted(chosen)


def main_origin() -> dict[str, object]:
    """Where actor processes load the script's ``__main__`` from, as multiprocessing says.

    The forkserver runs it once, if it can (``_main_import.prerun_main``).
    """
    data = multiprocessing.spawn.get_preparation_data("actor")
    return {
        "path": data.get("init_main_from_path"),
        "name": data.get("init_main_from_name"),
        "argv": data.get("sys_argv"),
    }


class _NoManager:
    """Stands in for the SyncManager process aiomultiprocess would start.

    ``Process`` only stores the namespace it asks for; only ``Worker`` reads it.
    """

    @staticmethod
    def Namespace() -> types.SimpleNamespace:  # noqa: N802 - mirrors SyncManager's API
        return types.SimpleNamespace()


def install_no_manager() -> None:
    """Keep aiomultiprocess from starting its hidden manager process (call before Process)."""
    if aiomultiprocess.core._manager is None:
        aiomultiprocess.core._manager = _NoManager()


class _ProcessIncarnation:
    """``HostedIncarnation`` for an actor running in a local process."""

    def __init__(
        self,
        proc: aiomultiprocess.Process,
        lock: threading.Lock,
        control: ControlChannel,
        spec: ActorSpec,
    ) -> None:
        self._proc = proc
        self._lock = lock
        self._control = control
        self._spec = spec
        pid: int | None = proc.pid
        if pid is None:  # multiprocessing sets it in start(), which returned
            raise RuntimeError("an actor process started without a pid")
        self._pid: int = pid
        self._code: int | None = None
        self._account: Counts | None = None
        self._liveness: LivenessReader | None = None
        self._stderr = spec.log.log_dir / f"{log_stem(spec.name, spec.actor_id, pid)}.stderr"
        # where runtime.actor.stacks writes the tasks' coroutine stacks
        self._tasks = self._stderr.with_suffix(".tasks.json")

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def control(self) -> ControlChannel:
        return self._control

    @property
    def account(self) -> Counts | None:
        return self._account

    async def wait(self) -> int:
        if self._code is None:
            inner = self._proc.aio_process
            # no polling: the sentinel becomes readable when the process has ended
            await anyio.wait_readable(inner.sentinel)
            with self._lock:
                inner.join()
                code: int | None = inner.exitcode
                inner.close()
            if code == _NO_STATUS:
                # the forkserver, which reports its children's ends, may have died: the
                # actor itself may well be running still, so its end is watched directly
                await _wait_for_end(self._pid)
            with self._lock:
                # its descendants end with it; under the lock, no start of ours can take
                # the group's number for a new actor meanwhile
                _kill_group(self._pid)
            self._code = 255 if code is None else code
            self._clean_up()
        return self._code

    def liveness(self) -> Liveness | None:
        if self._code is not None:
            return None
        if self._liveness is None:
            try:
                self._liveness = LivenessReader(account_path(self._spec.run_dir, self._spec.box))
            except OSError:  # it made no account (it never got that far)
                return None
        return self._liveness.read()

    def _clean_up(self) -> None:
        """Take its account; remove what it may have left: its socket file and segments."""
        spec = self._spec
        if self._liveness is not None:
            self._liveness.close()
            self._liveness = None
        self._account = read_account(account_path(spec.run_dir, spec.box))
        if spec.log.trace and self._code != 0:
            # killed or exited mid-way: its log, where users look, is the record
            log = spec.log.log_dir / f"{log_stem(spec.name, spec.actor_id, self._pid)}.jsonl"
            self._account = counts_from_log(log) or self._account
        with contextlib.suppress(FileNotFoundError):
            os.unlink(spec.address)
        run_id = spec.log.run_id
        # large arrays sent to it and never read: nobody else will map them
        unlink_segments(segments_of(run_id, message_prefix(spec.box)))
        # and the segments it lent out: free ones go now, lent ones when their reader is done
        orphan_pool(run_id, spec.box)

    def _signal(self, sig: signal.Signals) -> None:
        if self._code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, sig)

    def terminate(self) -> None:
        """SIGTERM the actor alone: it may stop its descendants in order (``wait`` kills
        what is left of its process group once it has ended)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the actor and its process group: its descendants with it."""
        self._signal(signal.SIGKILL)
        if self._code is None:
            _kill_group(self._pid)

    async def dump_stacks(self) -> StackDump:
        """Have the actor dump its threads' stacks (faulthandler, to its ``.stderr`` log)
        and its asyncio tasks' coroutine stacks (to its ``.tasks.json``); return both."""
        with contextlib.suppress(OSError):  # an earlier dump's, which would pass for this one
            os.unlink(self._tasks)
        before = _size(self._stderr)
        last = [before]

        def threads() -> str | None:
            size = _size(self._stderr)
            if size > before and size == last[0]:  # unchanged for a poll: written whole
                stack = _read_from(self._stderr, before)
                if "File" in stack:
                    return stack
            last[0] = size
            return None

        self._signal(signal.SIGUSR1)
        # faulthandler writes first, from the signal handler itself; the tasks follow
        # once the interpreter runs Python again
        stack = await _poll(threads, _DUMP_WAIT) or ""
        tasks = await _poll(lambda: _read_tasks(self._tasks), _TASKS_WAIT if stack else 0)
        coroutines = tuple(tasks or ())
        if coroutines:
            stack = f"{stack}\n{format_tasks(coroutines)[:_MAX_STACK]}".lstrip("\n")
        return StackDump(stack, str(self._stderr), coroutines)


class ProcessHost:
    """Starts each actor in its own process (forkserver with preloaded modules)."""

    def __init__(
        self,
        start_method: str = "forkserver",
        *,
        uvloop: bool = False,
        fork: bool = True,
        hand_off_timeout: float = 30.0,
    ) -> None:
        install_no_manager()
        #: seconds a start's hand-off to the forkserver may take: ``start_timeout``
        self._hand_off_timeout = hand_off_timeout
        #: how many forks the cgroup's process limit had refused when the run began
        self._refused_before = _forks_refused()
        self._uvloop = uvloop
        #: why this host did not make the forkserver a copy of the script (None: it did)
        self.fresh_forkserver: str | None = None
        if start_method == "forkserver":
            # numpy is slow to import in every process: preload it when the script uses it;
            # likewise uvloop when actors run on it (the forkserver skips what is missing)
            extra = ["numpy"] if "numpy" in sys.modules else []
            if uvloop:
                extra.append("uvloop")
            preload = [PRELOAD, *extra]
            multiprocessing.get_context("forkserver").set_forkserver_preload(preload)
            if fork:
                refusal = start_forkserver(preload)
            else:
                retire_copy()
                refusal = "asked for"
            self.fresh_forkserver = refusal
            # a live one was set up when it started (a copy needs none of what follows)
            if refusal is not None and refusal != RUNNING_ALREADY:
                # a fresh interpreter: it imports the script's own modules (where its actor
                # classes live) and the standard library modules it uses, which each actor
                # process would import again, and runs the script's top level if it can
                os.environ[PRELOAD_ENV] = ",".join(script_modules())
                os.environ[PRELOAD_MAIN_ENV] = json.dumps(main_origin())
                # it boots (an interpreter, then the preloads) while the runtime sets up
                # the rest, instead of at the first spawn; starting it does not wait
                multiprocessing.forkserver.ensure_running()
        aiomultiprocess.set_start_method(start_method)
        # multiprocessing's bookkeeping is not meant for concurrent starts and reaps
        self._lock = threading.Lock()
        # starts take turns anyway (the lock, and the forkserver forks one at a time): one
        # worker thread serves them all, instead of a new thread for each concurrent one.
        # A start's hand-off is timed from its turn, not from the queue before it.
        self._turn = anyio.Lock()
        self._starts = anyio.CapacityLimiter(1)

    async def start(self, name: str, spec: ActorSpec) -> _ProcessIncarnation:
        """Start ``spec``'s process; return it once it runs (not yet ready).

        If the forkserver ends during the hand-off, the start is made once more, from the
        forkserver multiprocessing then starts afresh.

        Raises:
            DescriptorLimitError: this process (or the system) is out of file descriptors;
                nothing was started, and the forkserver and every actor keep running.
            ActorStartError: the forkserver ended during the hand-off twice
                (``ForkserverEnded``), did not answer within the hand-off timeout and
                was killed (``ForkserverUnresponsive``), or the system's limit on
                processes and threads refused the start (``ProcessLimitReached``).
        """
        data = pickle.dumps(spec)
        try:
            return await self._start_once(name, spec, data)
        except _FORKSERVER_GONE:
            pass  # multiprocessing starts another forkserver for the next hand-off
        try:
            return await self._start_once(name, spec, data)
        except _FORKSERVER_GONE as exc:
            if _forks_refused() > self._refused_before:
                # the forkserver's fork failed, which ends it: the limit is the reason
                raise _process_limit_reached(spec.name) from exc
            raise ActorStartError(
                spec.name,
                "ForkserverEnded",
                "the forkserver, which forks every actor process, ended while starting "
                "this one, twice; nothing of it is left and running actors keep running "
                f"({type(exc).__name__}: {exc}); see the script's stderr for why the "
                "forkserver ended, then spawn again",
            ) from exc

    async def _start_once(self, name: str, spec: ActorSpec, data: bytes) -> _ProcessIncarnation:
        made: list[socket.socket] = []  # our end of the control socket, once made
        try:
            proc = await self._hand_off(name, spec.name, data, made)
            control = ControlChannel(await UNIXSocketStream.from_socket(made[0]))
        except BaseException as exc:
            for sock in made:  # a started process sees it hang up, and exits
                sock.close()
            if isinstance(exc, OSError) and exc.errno in _OUT_OF_DESCRIPTORS:
                limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
                raise DescriptorLimitError(spec.name, limit, exc.errno, str(exc)) from exc
            if isinstance(exc, OSError) and exc.errno == errno.EAGAIN:
                # no process for a new forkserver
                raise _process_limit_reached(spec.name) from exc
            raise
        return _ProcessIncarnation(proc, self._lock, control, spec)

    async def _hand_off(
        self, name: str, actor: str, data: bytes, made: list[socket.socket]
    ) -> aiomultiprocess.Process:
        """Start the process in the worker thread, where it blocks on the forkserver.

        A forkserver that does not answer within the hand-off timeout (stopped, or stuck
        in what it imports) is killed, which ends the hand-off; so is one that does not
        answer within ``_CANCEL_GRACE`` of the start being cancelled. Either way the next
        start gets a fresh forkserver, and running actors run on.
        """
        ended = anyio.Event()
        killed: list[int | None] = []  # the forkserver's pid, once killed for its silence

        async def unstick() -> None:
            try:
                await anyio.sleep(self._hand_off_timeout)
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True), anyio.move_on_after(_CANCEL_GRACE):
                    await ended.wait()
                if not ended.is_set():
                    kill_forkserver()
                raise
            killed.append(kill_forkserver())

        failure: Exception | None = None
        async with self._turn, anyio.create_task_group() as tg:
            tg.start_soon(unstick)
            try:
                # it blocks on the forkserver; the event loop stays free meanwhile
                proc = await anyio.to_thread.run_sync(
                    self._start_process, name, data, made, limiter=self._starts
                )
            except Exception as exc:  # raised below, not wrapped in the group's
                failure = exc
            finally:
                ended.set()
                tg.cancel_scope.cancel()
        if killed and isinstance(failure, _FORKSERVER_GONE):
            raise ActorStartError(
                actor,
                "ForkserverUnresponsive",
                "the forkserver, which forks every actor process, did not fork this one "
                f"within start_timeout={self._hand_off_timeout:g} s, and was killed "
                f"(pid {killed[0]}: stopped, or stuck); the next spawn starts a new one, "
                "and running actors keep running. A forkserver started afresh first "
                "imports the modules the script had imported: raise start_timeout if "
                "those imports are slow",
            ) from failure
        if failure is not None:
            raise failure
        return proc

    def _start_process(
        self, name: str, spec: bytes, made: list[socket.socket]
    ) -> aiomultiprocess.Process:
        """Start the process (in a worker thread); put our end of its control socket in
        ``made``."""
        # one start at a time, from before its first descriptor: a concurrent start could
        # use up the room the headroom check found
        with self._lock:
            ours, theirs = socket.socketpair()
            made.append(ours)
            try:
                _check_headroom(ours.fileno())
                proc = aiomultiprocess.Process(
                    target=actor_main,
                    args=(spec, theirs),
                    kwargs={LOOP_OPTION: self._uvloop},
                    name=name,
                    daemon=True,
                    process_target=bootstrap,
                )
                proc.start()
            finally:
                theirs.close()
            # multiprocessing polls every child it tracks at each start: with many actors,
            # each start would cost more than the last. We reap ours ourselves (``wait``).
            multiprocessing.process._children.discard(proc.aio_process)  # type: ignore[attr-defined]
        _close_parent_alive_pipe(proc)
        return proc


def _process_limit_reached(actor: str) -> ActorStartError:
    """The error of a start the system refused a process for, saying which limits apply."""
    limits = []
    soft = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    if soft != resource.RLIM_INFINITY and os.geteuid() != 0:  # root is exempt
        limits.append(f"ulimit -u is {soft}")
    for cgroup in _pids_cgroups():
        maximum, current = _read(cgroup / "pids.max"), _read(cgroup / "pids.current")
        limits.append(f"{cgroup}/pids.max is {maximum}, with {current} running")
    return ActorStartError(
        actor,
        "ProcessLimitReached",
        "the system refused a new process: its limit on processes and threads is reached "
        f"({'; '.join(limits) or 'no limit found here: the system may be out of memory'}); "
        "each actor process counts two. Nothing of it is left and running actors keep "
        "running: raise the limit, or stop actors you no longer need",
    )


def _forks_refused() -> int:
    """How many forks the process limits of this process's cgroups have refused so far."""
    refused = 0
    for cgroup in _pids_cgroups():
        for line in _read(cgroup / "pids.events").splitlines():
            name, _, count = line.partition(" ")
            if name == "max" and count.isdigit():
                refused += int(count)
    return refused


def _pids_cgroups() -> list[Path]:
    """This process's cgroup and its ancestors that limit their number of processes."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":
            root = _CGROUP_V2
        elif "pids" in controllers.split(","):
            root = _PIDS_V1
        else:
            continue
        cgroup = root / path.lstrip("/")
        while cgroup != root and root in cgroup.parents:
            if _read(cgroup / "pids.max") not in ("", "max"):
                found.append(cgroup)
            cgroup = cgroup.parent
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def raise_descriptor_limit() -> tuple[int, int] | None:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (at most ``_MAX_SOFT_FDS``).

    Each actor holds descriptors in the script's process, and a common soft limit of 1024
    would stop a run at a few hundred actors. Returns ``(before, after)`` if it raised the
    limit, else None (already there, or the system refused).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _MAX_SOFT_FDS if hard == resource.RLIM_INFINITY else min(hard, _MAX_SOFT_FDS)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):  # e.g. above a system-wide cap: keep what we have
        return None
    return soft, target


def _check_headroom(fd: int) -> None:
    """Raise OSError (EMFILE) unless ``_HAND_OFF_FDS`` descriptors can be opened now."""
    spare: list[int] = []
    try:
        # extend appends each as it is made: those made before a failure are closed too
        spare.extend(os.dup(fd) for _ in range(_HAND_OFF_FDS))
    finally:
        for each in spare:
            os.close(each)


def _close_parent_alive_pipe(proc: aiomultiprocess.Process) -> None:
    """Close the driver's copy of the pipe that would tell the child its parent is alive.

    multiprocessing keeps it open for the child's whole life, one descriptor per actor;
    actors watch their control socket instead (nothing calls ``parent_process()``). Left
    as it is if multiprocessing's internals are not as expected.
    """
    popen = getattr(proc.aio_process, "_popen", None)
    finalizer = getattr(popen, "finalizer", None)
    ours = getattr(popen, "sentinel", None)
    if finalizer is None or ours is None:
        return
    match getattr(finalizer, "_args", None):
        case (int() as parent_w, int() as sentinel) if sentinel == ours:
            finalizer._args = (sentinel,)  # the finalizer closes only the sentinel now
            os.close(parent_w)
        case _:
            pass


def _kill_group(pgid: int) -> None:
    """SIGKILL what is left of an actor's process group (bootstrap makes each actor lead
    its own): the processes it forked or started, unless they left the group."""
    if pgid == os.getpgrp():  # never the script's own group (an actor that did not lead)
        return
    # gone already, or the actor never led a group (killed before it could): nothing left
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


#: the exit code multiprocessing gives when the forkserver reported no status
_NO_STATUS = 255


async def _wait_for_end(pid: int) -> None:
    """Return once process ``pid`` (not our child: the forkserver's) has ended."""
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return  # gone already (or no pidfd here: then as before)
    try:
        await anyio.wait_readable(fd)
    finally:
        os.close(fd)


def _read_from(path: Path, offset: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(_MAX_STACK).decode(errors="replace")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


async def _poll(read: Callable[[], _T | None], seconds: float) -> _T | None:
    """What ``read`` returns once it is not None, trying for ``seconds`` at most.

    For files another process writes: there is nothing to wait on.
    """
    with anyio.move_on_after(seconds):
        while True:
            found = read()
            if found is not None:
                return found
            await anyio.sleep(_DUMP_POLL)
    return read()


def _read_tasks(path: Path) -> list[dict[str, Any]] | None:
    """The tasks of a dump ``runtime.actor.stacks`` wrote whole, with only their names and
    frames (file, line, function); None while there is none."""
    try:
        with open(path, "rb", opener=private_file) as f:  # never through a symlink
            dump = json.loads(f.read(_MAX_TASKS_FILE))
    except (OSError, ValueError):
        return None
    found = dump.get("tasks") if isinstance(dump, dict) else None
    tasks = []
    for task in found if isinstance(found, list) else ():
        if not isinstance(task, dict) or not isinstance(task.get("frames"), list):
            continue
        frames = [
            {"file": str(f.get("file")), "line": f.get("line"), "function": str(f.get("function"))}
            for f in task["frames"]
            if isinstance(f, dict)
        ]
        entry: dict[str, Any] = {"task": str(task.get("task")), "frames": frames}
        for key in ("awaiting", "omitted", "running"):
            if task.get(key):
                entry[key] = task[key]
        tasks.append(entry)
    return tasks


def format_tasks(tasks: tuple[dict[str, Any], ...]) -> str:
    """Task stacks as faulthandler writes thread stacks, but most recent call last."""
    lines = ["Asyncio tasks (most recent call last):"]
    for task in tasks:
        state = " (running)" if task.get("running") else ""
        lines.append(f"\nTask {task['task']!r}{state}:")
        if task.get("omitted"):
            lines.append(f"  ... {task['omitted']} outer frames left out")
        lines.extend(
            f'  File "{f["file"]}", line {f["line"]} in {f["function"]}' for f in task["frames"]
        )
        if task.get("awaiting"):
            lines.append(f"  awaiting a {task['awaiting']}")
    return "\n".join(lines) + "\n"
