"""The first code an actor process runs: logging, fault handler, then the incarnation."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import os
import select
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

import anyio
from anyio.abc import SocketStream, UNIXSocketStream

from .._entry import HANGUP_ENV, LOOP_OPTION
from .._process_name import restore_name
from .._stdio import flush_stdio
from ..observe.logging import Log, emitter, log_stem, open_log, private_file
from ..observe.loop_noise import install_noise_filter
from ..wire import protocol
from ..wire.control import ControlChannel
from .incarnation import LOCAL, Incarnation, load_spec
from .stacks import install_task_dump, tasks_path

__all__ = ["actor_main", "bootstrap"]


def bootstrap(unit: Any) -> None:
    """aiomultiprocess ``process_target``: run the actor on a fresh anyio loop and exit.

    Never lets an exception escape: multiprocessing would print it to the shared terminal.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the forkserver ignores both; the incarnation soon handles SIGTERM itself
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if os.environ.pop(HANGUP_ENV, "") == "default":
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    restore_name()
    # before anything here can fork: every descendant is in this group, which the driver
    # kills once this process has ended (ProcessHost)
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    _keep_from_programs()
    code = 1
    try:
        options = {"use_uvloop": True} if unit.kwargs.pop(LOOP_OPTION, False) else {}
        code = anyio.run(unit.target, *unit.args, backend="asyncio", backend_options=options)
    except BaseException as exc:  # last resort: the incarnation logs what it can catch
        sys.stderr.write(f"actor process {os.getpid()} crashed: {type(exc).__name__}: {exc}\n")
    sys.stdout.flush()
    sys.exit(code)


def _keep_from_programs() -> None:
    """Make every descriptor but stdio close on exec.

    Python opens its own that way, but those the forkserver handed over (the control
    socket, multiprocessing's pipes) come inheritable: a program started with
    ``close_fds=False`` would hold them, and the driver would not see this process end.
    """
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):  # the listing's own descriptor, now closed
                os.set_inheritable(fd, False)


def _hide_from_forks(run_dir: str, control_fd: int) -> None:
    """Have every child forked from this process give up the runtime's descriptors.

    A child that kept the control socket, the listener or a connection would keep them
    open after this process dies: peers would see no end of stream, and their asks would
    wait for their timeout. Only forks made through Python's ``os.fork`` are covered;
    the driver's kill of the process group covers the rest (``ProcessHost``).
    """
    prefixes = tuple({os.path.join(run_dir, ""), os.path.join(os.path.realpath(run_dir), "")})

    def ours(fd: int) -> bool:
        if fd == control_fd:
            return True
        target = os.readlink(f"/proc/self/fd/{fd}")
        if not target.startswith("socket:"):
            return target.startswith(prefixes)  # lock and account files
        # the listener and accepted connections are bound to a socket file of the run
        # directory, and connections to other actors lead to one
        sock = socket.socket(fileno=fd)
        try:
            if sock.family != socket.AF_UNIX:
                return False
            names = [sock.getsockname()]
            with contextlib.suppress(OSError):  # not connected
                names.append(sock.getpeername())
        finally:
            sock.detach()
        return any(isinstance(n, str) and n.startswith(prefixes) for n in names)

    def after_in_child() -> None:
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            for name in os.listdir("/proc/self/fd"):
                fd = int(name)
                if fd <= 2 or fd == null:
                    continue
                with contextlib.suppress(OSError):  # gone, or not ours to judge
                    if ours(fd):
                        # /dev/null in its place, not a close: the socket objects the
                        # child inherited close this number later, and must not close
                        # whatever the child opens meanwhile
                        os.dup2(null, fd, inheritable=False)
        finally:
            os.close(null)

    os.register_at_fork(after_in_child=after_in_child)


def _orphaned(control_fd: int) -> bool:
    """Whether the driver's end of the control socket has hung up: the script is gone."""
    poller = select.poll()
    poller.register(control_fd, select.POLLRDHUP)
    return any(ev & (select.POLLRDHUP | select.POLLHUP) for _, ev in poller.poll(0))


def _kill_rest_of_group() -> None:
    """SIGKILL every other process of this actor's process group: its descendants.

    For when the script died: nobody else is left to do it (``ProcessHost`` does it
    otherwise, once this process has ended).
    """
    me = os.getpid()
    if os.getpgrp() != me:  # leads no group: never signal the script's
        return
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):  # ended meanwhile
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
            # the command name may hold spaces and parentheses: split after the last ")"
            if int(data[data.rindex(b")") + 2 :].split()[2]) == me:  # state, ppid, pgrp
                os.kill(int(name), signal.SIGKILL)


def _flush_before_exit(
    real_exit: Callable[[int], NoReturn], control_fd: int
) -> Callable[[int], NoReturn]:
    """``os._exit`` that first writes the events this step has queued (main thread only),
    and kills this actor's descendants if the script is gone.

    A handler that ends its process with ``os._exit`` would otherwise lose the events of
    the messages handled earlier in the same step of the event loop.
    """

    def _exit(code: int) -> NoReturn:
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(Exception):  # exiting must not fail
                emitter().flush()
        with contextlib.suppress(Exception):
            if _orphaned(control_fd):  # as the lifeline's forced exit finds it
                _kill_rest_of_group()
        real_exit(code)

    return _exit


async def actor_main(spec_data: bytes, control_sock: socket.socket) -> int:
    """Run one actor incarnation; return the process exit code."""
    install_noise_filter(asyncio.get_running_loop())
    os._exit = _flush_before_exit(os._exit, control_sock.fileno())  # type: ignore[assignment]
    spec = load_spec(spec_data)
    _hide_from_forks(spec.run_dir, control_sock.fileno())
    stem = log_stem(spec.name, spec.actor_id, os.getpid())
    log, log_file = open_log(
        spec.log,
        stem,
        {"source": spec.name, "actor": spec.name, "actor_id": spec.actor_id},
        configure_global=True,
    )
    # C-level crashes and hang dumps go to a per-actor file, not the shared terminal
    stderr_path = spec.log.log_dir / f"{stem}.stderr"
    fault_file = open(stderr_path, "w", opener=private_file)  # noqa: SIM115, ASYNC230 - once
    faulthandler.enable(fault_file, all_threads=True)
    # the hang dump: threads from faulthandler (even with the main thread stuck in C),
    # then, chained, the tasks' coroutine stacks (a handler awaiting forever shows there)
    undo_task_dump = install_task_dump(
        signal.SIGUSR1, tasks_path(stderr_path), asyncio.get_running_loop()
    )
    faulthandler.register(signal.SIGUSR1, fault_file, all_threads=True, chain=True)
    code = 1
    try:
        stream: SocketStream = await UNIXSocketStream.from_socket(control_sock)
        control = ControlChannel(stream)
        async with anyio.create_task_group() as tg:
            tg.start_soon(control.run_writer)
            try:
                incarnation = Incarnation(spec, control, log, LOCAL)
            except Exception as exc:
                await _report_start_failure(control, log, exc)
            else:
                code = await incarnation.run()
            tg.cancel_scope.cancel()
    except Exception as exc:
        log.error("actor.crashed", error_type=type(exc).__name__, exc_info=exc)
    finally:
        with contextlib.suppress(OSError):
            if _orphaned(control_sock.fileno()):
                _kill_rest_of_group()
        faulthandler.disable()
        # a late dump signal must not write to the closed file's number, reused by now
        faulthandler.unregister(signal.SIGUSR1)
        undo_task_dump()
        fault_file.close()
        if stderr_path.stat().st_size == 0:
            stderr_path.unlink()
        emitter().flush()
        log_file.close()
    if _nothing_left_to_finish():
        flush_stdio()
        os._exit(code)
    return code


async def _report_start_failure(control: ControlChannel, log: Log, exc: Exception) -> None:
    """Tell the driver why this incarnation will never be ready (its account or mailbox
    could not be made: a full disk, say), as a failing ``__init__`` does."""
    log.error("actor.start_failed", error_type=type(exc).__name__, exc_info=exc)
    tb = "".join(traceback.format_exception(exc))
    control.send(protocol.StartFailed(type(exc).__name__, str(exc), tb))
    with anyio.move_on_after(1.0):
        control.send_eof_after_flush()
        await control.wait_flushed()


def _nothing_left_to_finish() -> bool:
    """Whether ending the process now skips nothing but bookkeeping.

    Returning from ``actor_main`` would tear down the event loop, then multiprocessing's
    process object, which only matters if the actor's code left tasks, async generators,
    non-daemon threads, an executor or multiprocessing finalizers behind: each of them
    gets its orderly end that way. Without them, that teardown is pure CPU, and stopping
    many actors at once is bound by CPU.
    """
    import multiprocessing.util

    loop = asyncio.get_running_loop()
    main = threading.main_thread()
    return (
        len(asyncio.all_tasks()) == 1  # this one
        and not getattr(loop, "_asyncgens", True)
        and getattr(loop, "_default_executor", True) is None
        and all(t.daemon or t is main for t in threading.enumerate())
        and not getattr(multiprocessing.util, "_finalizer_registry", True)
    )
