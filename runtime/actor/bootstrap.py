"""The first code an actor process runs: logging, fault handler, then the incarnation."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn

import anyio
from anyio.abc import SocketStream, UNIXSocketStream

from .._entry import LOOP_OPTION
from ..observe.logging import emitter, log_stem, open_log
from ..observe.loop_noise import install_noise_filter
from ..wire.control import ControlChannel
from .incarnation import Incarnation, load_spec

__all__ = ["actor_main", "bootstrap"]


def bootstrap(unit: Any) -> None:
    """aiomultiprocess ``process_target``: run the actor on a fresh anyio loop and exit.

    Never lets an exception escape: multiprocessing would print it to the shared terminal.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    code = 1
    try:
        options = {"use_uvloop": True} if unit.kwargs.pop(LOOP_OPTION, False) else {}
        code = anyio.run(unit.target, *unit.args, backend="asyncio", backend_options=options)
    except BaseException as exc:  # last resort: the incarnation logs what it can catch
        sys.stderr.write(f"actor process {os.getpid()} crashed: {type(exc).__name__}: {exc}\n")
    sys.stdout.flush()
    sys.exit(code)


def _flush_before_exit(real_exit: Callable[[int], NoReturn]) -> Callable[[int], NoReturn]:
    """``os._exit`` that first writes the events this step has queued (main thread only).

    A handler that ends its process with ``os._exit`` would otherwise lose the events of
    the messages handled earlier in the same step of the event loop.
    """

    def _exit(code: int) -> NoReturn:
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(Exception):  # exiting must not fail
                emitter().flush()
        real_exit(code)

    return _exit


async def actor_main(spec_data: bytes, control_sock: socket.socket) -> int:
    """Run one actor incarnation; return the process exit code."""
    install_noise_filter(asyncio.get_running_loop())
    os._exit = _flush_before_exit(os._exit)  # type: ignore[assignment]
    spec = load_spec(spec_data)
    stem = log_stem(spec.name, spec.actor_id, os.getpid())
    log, log_file = open_log(
        spec.log,
        stem,
        {"source": spec.name, "actor": spec.name, "actor_id": spec.actor_id},
        configure_global=True,
    )
    # C-level crashes and hang dumps go to a per-actor file, not the shared terminal
    stderr_path = spec.log.log_dir / f"{stem}.stderr"
    fault_file = open(stderr_path, "w")  # noqa: SIM115, ASYNC230 - once, before serving
    faulthandler.enable(fault_file, all_threads=True)
    faulthandler.register(signal.SIGUSR1, fault_file, all_threads=True)
    code = 1
    try:
        stream: SocketStream = await UNIXSocketStream.from_socket(control_sock)
        control = ControlChannel(stream)
        async with anyio.create_task_group() as tg:
            tg.start_soon(control.run_writer)
            code = await Incarnation(spec, control, log).run()
            tg.cancel_scope.cancel()
    except Exception as exc:
        log.error("actor.crashed", error_type=type(exc).__name__, exc_info=exc)
    finally:
        faulthandler.disable()
        fault_file.close()
        if stderr_path.stat().st_size == 0:
            stderr_path.unlink()
        emitter().flush()
        log_file.close()
    return code
