"""The forkserver that actor processes are forked from: a copy of the script, when safe.

multiprocessing's own forkserver is a fresh interpreter, which must import asyncio, anyio
and the runtime before it can fork the first actor: most of a short script's run. The
script's process has imported most of that already. So when the runtime starts,
``start_forkserver`` forks the script's process once, and the copy becomes the
forkserver. It serves multiprocessing's forkserver protocol, so starting an actor does
not change. multiprocessing's resource tracker, which the protocol hands every actor and
which would be one more fresh interpreter starting beside them, is made the same way.
Only a copy's first steps differ from a fresh one's, in ``_become``, which runs in the
copy alone:

- it takes the place of every descriptor of the script's but its stdio with /dev/null,
  so it holds none of the script's files, pipes or sockets open, and the script's
  objects that still name them can only reach /dev/null;
- it puts the script's signal handlers and wake-up descriptor back to the defaults;
- it freezes the collector, so that no finalizer of the script's objects ever runs there;
- the forkserver imports what actors need that the script had not loaded (the actor
  side).

The tracker copy also removes the run's directories that are still there when it ends,
which is once the script and every actor have ended (``track_directory``): a script killed
mid-run (SIGKILL, the kernel's out-of-memory killer) leaves no socket or lock file behind.

A copy never returns into the script's code, and it ends by ``os._exit``: none of the script's
exit handlers run there. Actor processes are forked from the forkserver's, so they start
as the script was at that moment: the script's top level is not run again.

Forking is safe only from a process with one thread: a lock held by another thread at the
fork would stay held in the copy. So copies are made only when the script runs one thread
(numpy's BLAS pool aside: ``_blas_pool_at_most``), from its main thread, and is small (the
copy and every actor would otherwise keep the script's memory alive); otherwise
multiprocessing starts its fresh interpreter, as it does with ``forkserver="fresh"``.
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import importlib
import multiprocessing.forkserver
import os
import select
import shutil
import signal
import socket
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator
from multiprocessing import connection, resource_tracker
from typing import Any, NoReturn

from actors._compiled import compiled_methods

from .. import _process_name as process_name
from .._entry import PRELOAD_ENV, PRELOAD_MAIN_ENV
from .._main_import import keep_inherited_main
from .._stdio import flush_stdio

__all__ = [
    "RUNNING_ALREADY",
    "fork_refusal",
    "forkserver_is_a_copy",
    "kill_forkserver",
    "retire_copy",
    "start_forkserver",
    "track_directory",
    "untrack_directory",
]

#: the most resident memory the script may have for the forkserver to be forked from it.
#: Every actor maps all of the copy's pages, so each fork and each exit costs more the
#: larger it is: past this, a fresh forkserver, smaller and started once, costs less over a
#: run of many actors. The copy also keeps those pages alive for the whole run.
MAX_FORKED_RSS = 64 << 20
#: ``start_forkserver``'s answer when a live forkserver, copy or fresh, is there to use
RUNNING_ALREADY = "running already"
#: seconds a retired copy may take to end before it is left to end with the script
_RETIRE_WAIT = 1.0
#: the names the copies go by in ``ps -o comm`` and ``top`` (their command line is the
#: script's)
_FORKSERVER = "actors-forksrv"
_TRACKER = "actors-tracker"
#: signals a copy must not get before it has set its own handlers (as multiprocessing does
#: for its tracker): Ctrl-C, or SIGTERM or a hang-up to the script's process group
_HELD = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
#: stdin, stdout and stderr: the forkserver shares them with the script, as actors do
_STDIO = (0, 1, 2)


#: the resource types the tracker copy knows besides multiprocessing's: a directory it
#: removes with all it holds, and one it removes if empty (where runs' directories live).
#: Trees go first: the tracker cleans up in this order.
_TREE = "actors_tree"
_EMPTY = "actors_empty"
#: what a tracker's message may hold: its protocol splits lines on ":", in ASCII, and
#: only a write of at most 512 bytes reaches it whole
_MAX_TRACKER_MESSAGE = 512

#: the pid of the last copy made (multiprocessing may have replaced it since)
_copy_pid: int | None = None
#: the pid of the tracker copy, and the directories it was given and not taken back
_tracker_pid: int | None = None
_tracked: set[tuple[str, str]] = set()


def forkserver_is_a_copy() -> bool:
    """Whether the forkserver in use is a copy of this process made by ``start_forkserver``."""
    server: Any = multiprocessing.forkserver._forkserver
    return _copy_pid is not None and server._forkserver_pid == _copy_pid


def fork_refusal() -> str | None:
    """Why the forkserver cannot be forked from this process now, or None if it can."""
    if sys.platform != "linux":
        return "not Linux"
    # the protocol's internals this module fills in, as they are from 3.11 to 3.13
    if sys.version_info >= (3, 14):
        return "Python 3.14 forkserver"
    if threading.current_thread() is not threading.main_thread():
        return "not in the main thread"
    try:
        threads = len(os.listdir("/proc/self/task"))  # native threads too
    except OSError:
        return "threads unknown"
    python_threads = threading.active_count()
    unknown = threads - python_threads  # started by C code
    if python_threads > 1 or (unknown > 0 and not _blas_pool_at_most(unknown)):
        return f"{max(threads, python_threads)} threads"
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return "memory unknown"
    if resident > MAX_FORKED_RSS:
        return f"{resident >> 20} MiB resident"
    return None


def _blas_pool_at_most(threads: int) -> bool:
    """Whether ``threads`` threads unknown to Python may be numpy's BLAS pool: its size at
    most, with numpy loaded. OpenBLAS stops its pool around a fork (its own pthread_atfork
    handler) and starts it again when next used; a fresh forkserver, which preloads numpy
    when the script has it, runs that pool too. Other libraries' threads (an OpenMP
    pool) would come on top of it, and be refused."""
    return "numpy" in sys.modules and threads <= (os.cpu_count() or 1) - 1


def start_forkserver(preload: list[str]) -> str | None:
    """Make multiprocessing's forkserver a copy of this process, importing ``preload``.

    Returns why it did not (a forkserver runs already, or ``fork_refusal``'s reason);
    then ``multiprocessing.forkserver.ensure_running`` starts a fresh one as usual.
    """
    server: Any = multiprocessing.forkserver._forkserver
    with server._lock:
        if server._forkserver_pid is not None:
            pid, _status = os.waitpid(server._forkserver_pid, os.WNOHANG)
            if not pid:
                return RUNNING_ALREADY
            _forget(server)  # dead: as ensure_running would before starting another
        refusal = fork_refusal()
        if refusal is not None:
            return refusal
        # the protocol hands every actor the tracker's descriptor: started first, so that
        # the forkserver does not hold the tracker's pipe
        _start_tracker()
        with socket.socket(socket.AF_UNIX) as listener:
            address = connection.arbitrary_address("AF_UNIX")  # type: ignore[attr-defined]
            listener.bind(address)
            os.chmod(address, 0o600)
            listener.listen()
            alive_r, alive_w = os.pipe()
            try:
                with _forking():
                    pid = os.fork()
                    if pid == 0:
                        # held here, by this thread, at the fork: the copy's children would
                        # inherit it held, and any use of a forkserver in an actor would hang
                        server._lock = threading.Lock()
                        listener_fd = listener.fileno()
                        keep = {*_STDIO, listener_fd, alive_r}
                        _become(_FORKSERVER, keep, _serve, preload, listener_fd, alive_r)
            except BaseException:
                os.close(alive_w)
                raise
            finally:
                os.close(alive_r)
        server._forkserver_address = address
        server._forkserver_alive_fd = alive_w
        server._forkserver_pid = pid
    global _copy_pid
    _copy_pid = pid
    return None


def retire_copy() -> None:
    """Let the forkserver go if it is a copy of this process, so that the next start is
    fresh (``forkserver="fresh"`` after a runtime that made a copy).

    Called between runtimes: the copy ends once no actor of the last one is left, which
    is by then; it is reaped if it ends within a second (else the script's exit ends it).
    """
    server: Any = multiprocessing.forkserver._forkserver
    with server._lock:
        if not forkserver_is_a_copy():
            return
        pid = server._forkserver_pid
        _forget(server)  # the copy ends when it sees the end of its alive pipe
    try:
        ended = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if select.select([ended], [], [], _RETIRE_WAIT)[0]:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    finally:
        os.close(ended)


def kill_forkserver() -> int | None:
    """SIGKILL the forkserver in use, copy or fresh; return its pid (None if there is none).

    For one that does not answer: the start waiting on it gets the end of its stream, the
    actors it forked run on, and multiprocessing starts a fresh one for the next start.
    """
    server: Any = multiprocessing.forkserver._forkserver
    pid: int | None = server._forkserver_pid
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pid


def track_directory(path: str, *, only_if_empty: bool = False) -> bool:
    """Have the tracker copy remove ``path`` once the script and every actor have ended,
    with what it holds (or only if empty). True if it will; False when the tracker is not
    our copy (multiprocessing's own knows no directories) or the path cannot be sent."""
    kind = _EMPTY if only_if_empty else _TREE
    if (path, kind) in _tracked:
        return True
    if _tell_tracker("REGISTER", path, kind):
        _tracked.add((path, kind))
        return True
    return False


def untrack_directory(path: str) -> None:
    """Take back ``track_directory(path)``: the script removed it itself."""
    for kind in (_TREE, _EMPTY):
        if (path, kind) in _tracked:
            _tracked.discard((path, kind))
            _tell_tracker("UNREGISTER", path, kind)


def _tell_tracker(command: str, path: str, kind: str) -> bool:
    tracker: Any = resource_tracker._resource_tracker
    fd = tracker._fd
    if fd is None or _tracker_pid is None or tracker._pid != _tracker_pid:
        return False
    message = f"{command}:{path}:{kind}\n"
    if ":" in path or "\n" in path or not message.isascii():
        return False
    data = message.encode("ascii")
    if len(data) > _MAX_TRACKER_MESSAGE:
        return False
    try:
        # straight to its pipe: multiprocessing's register() would start a fresh tracker
        # if ours had died, and that one would refuse these types with a traceback
        return os.write(fd, data) == len(data)
    except OSError:  # it has died: the next runtime sweeps what it would have removed
        return False


def _remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _remove_if_empty(path: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)


def _track(fd: int) -> None:
    """The tracker copy: multiprocessing's tracker loop, also knowing our directories."""
    resource_tracker._CLEANUP_FUNCS[_TREE] = _remove_tree  # type: ignore[attr-defined]
    resource_tracker._CLEANUP_FUNCS[_EMPTY] = _remove_if_empty  # type: ignore[attr-defined]
    # what is left at its end is the run of a script that did not leave its runtime:
    # removing it is the point, not a leak to warn of
    warnings.filterwarnings("ignore", message=r"resource_tracker: .* leaked actors_")
    resource_tracker.main(fd)


def _forget(server: Any) -> None:
    """Make multiprocessing forget its forkserver, closing our end of its alive pipe."""
    os.close(server._forkserver_alive_fd)
    server._forkserver_address = None
    server._forkserver_alive_fd = None
    server._forkserver_pid = None


def _start_tracker() -> None:
    """Start multiprocessing's resource tracker as a copy of this process, unless one runs.

    What it runs is multiprocessing's own tracker loop: it records the shared memory and
    semaphores processes register, and removes what is left of them once every holder of
    its pipe (the script, the forkserver, the actors) has ended.
    """
    tracker: Any = resource_tracker._resource_tracker
    if tracker._fd is not None:
        resource_tracker.ensure_running()  # its own check: alive, or started afresh
        return
    r, w = os.pipe()
    try:
        with _forking():
            pid = os.fork()
            if pid == 0:
                # no stdout: it writes nothing there, and must not hold a pipeline's pipe
                # open; and it ends when the script does, not when told to
                keep = {0, 2, r}
                _become(_TRACKER, keep, _track, r, deaf=True)
    except BaseException:
        os.close(w)
        raise
    finally:
        os.close(r)
    with tracker._lock:
        tracker._fd = w
        tracker._pid = pid
    global _tracker_pid
    _tracker_pid = pid
    _tracked.clear()  # the last tracker's, if any, ended with its directories


@contextlib.contextmanager
def _forking() -> Iterator[None]:
    """Around a fork: flush stdio, and hold off Ctrl-C and SIGTERM until the copy has set
    its own handlers (it unblocks them in ``_become``)."""
    # what the script wrote but did not flush would be written again by the copy
    flush_stdio()
    signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)


def _become(
    name: str,
    keep: set[int],
    run: Callable[..., object],
    *args: Any,
    deaf: bool = False,
) -> NoReturn:
    """Turn this copy into ``name``, holding only the descriptors in ``keep``, and
    ``run(*args)`` (in the copy only); never return."""
    code = 1
    script = os.getppid()
    try:
        _drop_the_script(name, keep, deaf)
        # an empty context: actors must not inherit the script's context variables
        contextvars.Context().run(run, *args)
        code = 0
    except SystemExit:  # the forkserver's end: the script has ended (its alive pipe)
        code = 0
    except BaseException:
        # once the script is gone (killed mid-request, say), the why is the script's end,
        # and a traceback from inside multiprocessing would only hide it
        if os.getppid() == script:
            with contextlib.suppress(Exception):
                traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(code)


def _drop_the_script(name: str, keep: set[int], deaf: bool) -> None:
    """Let go of what the script holds (see the module's docstring)."""
    signal.set_wakeup_fd(-1)
    for signum in signal.valid_signals():
        with contextlib.suppress(OSError, ValueError, TypeError):
            if callable(signal.getsignal(signum)):
                signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the script's to handle
    if deaf:  # it ends once the script and every actor have, whatever ended the script
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal's, to the script's group
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)
    gc.freeze()
    null = os.open(os.devnull, os.O_RDWR)
    for entry in os.listdir("/proc/self/fd"):
        fd = int(entry)
        if fd != null and fd not in keep:
            with contextlib.suppress(OSError):  # the listing's own, closed already
                os.fstat(fd)
                os.dup2(null, fd, inheritable=False)
    os.close(null)
    # the fresh forkserver's variables: they would make the actor side run the script
    os.environ.pop(PRELOAD_ENV, None)
    os.environ.pop(PRELOAD_MAIN_ENV, None)
    with contextlib.suppress(OSError):
        with open("/proc/self/comm") as comm:
            os.environ[process_name.ENV] = comm.read().strip()
        process_name.set_name(name)


def _serve(preload: list[str], listener_fd: int, alive_r: int) -> None:
    """The forkserver: import ``preload``, then serve."""
    with compiled_methods():
        for name in preload:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
    keep_inherited_main()
    # the fresh forkserver's main loop, unchanged: it forks each actor on request
    multiprocessing.forkserver.main(listener_fd, alive_r, [])
