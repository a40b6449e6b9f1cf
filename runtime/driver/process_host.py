"""ProcessHost: each incarnation in its own local OS process (the ``Host`` seam's default).

``ProcessHost`` starts each actor in its own process with aiomultiprocess's ``Process``
and our own bootstrap, from a forkserver that has the runtime's modules preloaded.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import socket
import sys
import threading
import types
from pathlib import Path

import aiomultiprocess
import aiomultiprocess.core
import anyio
from anyio.abc import UNIXSocketStream

from .._entry import LOOP_OPTION, PRELOAD, PRELOAD_ENV, actor_main, bootstrap
from ..observe.account import Counts, account_path, counts_from_log, read_account
from ..observe.logging import log_stem
from ..shm.pool import orphan_pool
from ..shm.segments import message_prefix, segments_of, unlink_segments
from ..wire.control import ControlChannel
from ..wire.protocol import ActorSpec
from .hosting import StackDump

__all__ = ["ProcessHost", "install_no_manager", "script_modules"]

#: seconds a stack dump may take to appear in the actor's .stderr log
_DUMP_WAIT = 1.0
#: the most of a stack dump that goes into the log
_MAX_STACK = 16_000

# standard modules that touch the terminal or a display when imported, or are jokes
_NOT_PRELOADED = frozenset(
    {"antigravity", "curses", "idlelib", "pydoc", "readline", "this", "tkinter", "turtle"}
)


def script_modules() -> list[str]:
    """Modules the script has imported that actor processes would import again.

    The standard library's, and the script's own: those whose file is under the current
    directory or the script's, outside any site-packages. Third-party packages are left
    out (some start threads when imported, and the forkserver must stay single-threaded),
    except numpy (see ``ProcessHost``).
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
        self._stderr = spec.log.log_dir / f"{log_stem(spec.name, spec.actor_id, pid)}.stderr"

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
            self._code = 255 if code is None else code
            self._clean_up()
        return self._code

    def _clean_up(self) -> None:
        """Take its account; remove what it may have left: its socket file and segments."""
        spec = self._spec
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
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    async def dump_stacks(self) -> StackDump:
        """Have faulthandler write every thread's stack to the actor's ``.stderr`` log."""
        before = _size(self._stderr)
        self._signal(signal.SIGUSR1)
        with anyio.move_on_after(_DUMP_WAIT):
            while True:
                await anyio.sleep(0.02)
                size = _size(self._stderr)
                if size > before and size == _size(self._stderr):
                    stack = _read_from(self._stderr, before)
                    if "File" in stack:
                        return StackDump(stack, str(self._stderr))
        return StackDump("", str(self._stderr))


class ProcessHost:
    """Starts each actor in its own process (forkserver with preloaded modules)."""

    def __init__(self, start_method: str = "forkserver", *, uvloop: bool = False) -> None:
        install_no_manager()
        self._uvloop = uvloop
        if start_method == "forkserver":
            # numpy is slow to import in every process: preload it when the script uses it;
            # likewise uvloop when actors run on it (the forkserver skips what is missing)
            extra = ["numpy"] if "numpy" in sys.modules else []
            if uvloop:
                extra.append("uvloop")
            multiprocessing.get_context("forkserver").set_forkserver_preload([PRELOAD, *extra])
            # and the script's own modules (where its actor classes live) and the standard
            # library modules it uses: each actor process would import them again
            os.environ[PRELOAD_ENV] = ",".join(script_modules())
        aiomultiprocess.set_start_method(start_method)
        # multiprocessing's bookkeeping is not meant for concurrent starts and reaps
        self._lock = threading.Lock()

    async def start(self, name: str, spec: ActorSpec) -> _ProcessIncarnation:
        ours, theirs = socket.socketpair()
        try:
            proc = await self._start_process(name, pickle.dumps(spec), theirs)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        control = ControlChannel(await UNIXSocketStream.from_socket(ours))
        return _ProcessIncarnation(proc, self._lock, control, spec)

    async def _start_process(
        self, name: str, spec: bytes, control: socket.socket
    ) -> aiomultiprocess.Process:
        proc = aiomultiprocess.Process(
            target=actor_main,
            args=(spec, control),
            kwargs={LOOP_OPTION: self._uvloop},
            name=name,
            daemon=True,
            process_target=bootstrap,
        )

        def start() -> None:
            with self._lock:
                proc.start()

        # starting blocks on the forkserver hand-off; keep the event loop free meanwhile
        await anyio.to_thread.run_sync(start)
        return proc


def _read_from(path: Path, offset: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(_MAX_STACK).decode(errors="replace")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
