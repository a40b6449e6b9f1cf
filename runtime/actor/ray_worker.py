"""The Ray actor that hosts one incarnation, in a Ray worker process (the Ray backend).

The driver creates one per incarnation, named after the actor id in the run's namespace,
with Ray's own restarts off: our supervisor tree is the only thing that restarts actors.
It runs the same ``Incarnation`` as a local actor process, with a ``RayMailbox`` and a
``RayTransport`` in place of the Unix-socket ones. Its control link to the driver is the
``run`` call, an async streaming generator: every item is one pickled ``protocol``
message, and the generator's failure (the worker died) is how the driver learns the end.
Calls in the ``control`` concurrency group run on a thread of their own, so they answer
even while a handler blocks the event loop: that is where stack dumps come from.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import io
import os
import pickle
import shutil
import sys
import tempfile
import threading
import traceback
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any, NoReturn

import anyio
import anyio.abc
import numpy as np
import numpy.typing as npt
import ray

from ..observe.logging import emitter, log_stem, open_log, private_file
from ..wire import protocol
from ..wire.control import ControlClosedError
from ..wire.protocol import ControlMessage
from ..wire.ray_transport import (
    CLOSING,
    EXIT_NOTE,
    Payload,
    RaySender,
    RayTransport,
    run_namespace,
    unpack_batch,
)
from ..wire.seams import Inbox, Outbox
from .incarnation import Incarnation, Plumbing, load_spec
from .ray_inbox import RayEnvelope, RayMailbox
from .stacks import task_stacks

__all__ = ["END", "IncarnationHost", "collect_logs", "node_log_dir"]

#: the last item of ``run``: ``(END, exit code)``
END = "end"


def _noting_exit(
    real_exit: Callable[[int], NoReturn], file: IO[str], loop_thread: int
) -> Callable[[int], NoReturn]:
    """``os._exit`` that first writes the events queued, and a note of its code: Ray does
    not tell the driver a worker's exit code, and the .stderr file is where it looks."""

    def _exit(code: int) -> NoReturn:
        with contextlib.suppress(Exception):  # exiting must not fail
            if threading.get_ident() == loop_thread:  # the events are this thread's
                emitter().flush()
            file.write(EXIT_NOTE.format(code) + "\n")
            file.flush()
        real_exit(code)

    return _exit


def node_log_dir(run_id: str) -> Path:
    """Where the actors of run ``run_id`` on a machine other than the driver's log."""
    return Path(tempfile.gettempdir()) / f"actors-ray-logs-{os.getuid()}" / run_id


def collect_logs(run_id: str) -> list[tuple[str, bytes]]:
    """A Ray task, run on each machine that hosted actors of the run but the driver's:
    take the run's log files from there (they are removed) for the driver to keep."""
    where = node_log_dir(run_id)
    if not where.is_dir():
        return []
    files = [
        (path.name, path.read_bytes())
        for path in sorted(where.iterdir())
        if path.is_file() and not path.is_symlink()
    ]
    shutil.rmtree(where, ignore_errors=True)
    return files


class _Control:
    """The incarnation's end of its control link: queues that ``run`` and ``control`` serve."""

    def __init__(self) -> None:
        self.up: asyncio.Queue[ControlMessage | None] = asyncio.Queue()
        self.down: asyncio.Queue[ControlMessage | None] = asyncio.Queue()
        self.flushed = anyio.Event()

    def send(self, message: ControlMessage) -> None:
        self.up.put_nowait(message)

    async def receive(self) -> ControlMessage:
        message = await self.down.get()
        if message is None:
            raise ControlClosedError("the driver closed the control link")
        return message

    def send_eof_after_flush(self) -> None:
        self.up.put_nowait(None)

    async def wait_flushed(self) -> None:
        await self.flushed.wait()


class IncarnationHost:
    """Hosts one incarnation; the driver wraps it with ``ray.remote`` and its options."""

    def __init__(self) -> None:
        self._control = _Control()
        self._mailbox: RayMailbox | None = None
        #: set once the mailbox takes senders (or the incarnation ended before it could)
        self._opened = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._fault_file: IO[str] | None = None
        self._fault_path = ""

    # -- the control link ------------------------------------------------------------------

    async def run(self, spec_data: bytes) -> AsyncIterator[bytes]:
        """Run the incarnation; yield its control messages, then ``(END, exit code)``."""
        main = asyncio.get_running_loop().create_task(self._main(spec_data))
        try:
            while True:
                message = await self._control.up.get()
                if message is None:
                    break
                yield pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        finally:
            self._control.flushed.set()
        code = await main
        yield pickle.dumps((END, code))

    async def control(self, data: bytes) -> None:
        """A message from the driver (an answer, a stop request)."""
        message = pickle.loads(data)
        if not isinstance(message, (protocol.Answer, protocol.Stop)):
            raise TypeError(f"unexpected {type(message).__name__} on the control link")
        self._control.down.put_nowait(message)

    @ray.method(concurrency_group="control")
    def dump_stacks(self) -> tuple[str, str, list[dict[str, Any]]]:
        """Every thread's stack and every asyncio task's chain of awaits, from a thread of
        the control group (so even while a handler blocks the event loop).

        Returns the threads' text, the path of the .stderr file it was also written to,
        and the tasks (file, line and function of each frame: never locals).
        """
        buffer = io.StringIO()
        frames = sys._current_frames()
        for thread in threading.enumerate():
            frame = frames.get(thread.ident or -1)
            if frame is None or thread.ident == threading.get_ident():
                continue
            buffer.write(f"Thread {thread.name} ({thread.ident}), most recent call last:\n")
            buffer.write("".join(traceback.format_stack(frame)))
            buffer.write("\n")
        text = buffer.getvalue()
        tasks: list[dict[str, Any]] = []
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(Exception):  # a task set changing under us: no tasks
                tasks = task_stacks(loop, frames.get(self._loop_thread))
        if self._fault_file is not None:
            with contextlib.suppress(Exception):
                self._fault_file.write(text)
                self._fault_file.flush()
        return text, self._fault_path, tasks

    @ray.method(concurrency_group="control")
    def where(self) -> tuple[int, str]:
        """This worker's pid and node id."""
        return os.getpid(), ray.get_runtime_context().get_node_id()

    # -- messages ----------------------------------------------------------------------------

    async def hello(self, box: str, name: str, actor_id: str, pid: int) -> Any:
        """A sender's first call: ``(box, capacity, pid)``, or ``CLOSING``."""
        await self._opened.wait()
        mailbox = self._mailbox
        if mailbox is None or mailbox.closing:
            return CLOSING
        mailbox.hello(box, name, actor_id, pid)
        return mailbox.box, mailbox.capacity, os.getpid()

    async def deliver(
        self, box: str, seq: int, blob: bytes, arrays: list[npt.NDArray[np.uint8]]
    ) -> int:
        """A batch of tells (``pack_batch``), in its sender's order: how many were taken,
        once finished."""
        assert self._mailbox is not None  # a sender said hello first
        return await self._mailbox.deliver(box, seq, unpack_batch(blob, arrays))

    async def ask(
        self, box: str, seq: int, ident: int, body: Payload, trace_id: str, parent_id: str
    ) -> tuple[Any, Any]:
        """An ask, in its sender's order: ``(ok, pickled answer)`` or ``(BOUNCED, None)``."""
        assert self._mailbox is not None
        return await self._mailbox.ask(box, seq, ident, body, trace_id, parent_id)

    # -- the incarnation ---------------------------------------------------------------------

    async def _main(self, spec_data: bytes) -> int:
        spec = load_spec(spec_data)
        node = ray.get_runtime_context().get_node_id()
        stem = log_stem(spec.name, spec.actor_id, os.getpid())
        log_config = spec.log
        if log_config.node and node != log_config.node:
            # the run's log directory is on the driver's machine: log here, and the
            # driver gathers the files when the run ends (collect_logs)
            log_config = spec.log.elsewhere(node_log_dir(spec.log.run_id))
        log, log_file = open_log(
            log_config,
            stem,
            {
                "source": spec.name,
                "actor": spec.name,
                "actor_id": spec.actor_id,
                "node": node[:12],
                "worker": ray.get_runtime_context().get_worker_id()[:12],
            },
            configure_global=True,
        )
        fault_path = log_config.log_dir / f"{stem}.stderr"
        fault_file = open(fault_path, "w", opener=private_file)  # noqa: SIM115, ASYNC230 - once
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._fault_file, self._fault_path = fault_file, str(fault_path)
        faulthandler.enable(fault_file, all_threads=True)
        os._exit = _noting_exit(  # type: ignore[assignment]
            os._exit, fault_file, threading.get_ident()
        )
        code = 1
        host = self

        def mailbox(inc: Incarnation[RayEnvelope]) -> Inbox[RayEnvelope]:
            box = RayMailbox(
                inc.spec.mailbox_size,
                inc.spec.name,
                box=inc.spec.box,
                log=log,
                trace=inc.spec.log.trace,
                on_open=host._opened.set,
            )
            host._mailbox = box
            return box

        def transport(inc: Incarnation[RayEnvelope], tg: anyio.abc.TaskGroup) -> Outbox:
            return RayTransport(
                tg,
                RaySender(inc.spec.name, inc.spec.actor_id, os.getpid(), inc.spec.box),
                namespace=run_namespace(inc.spec.log.run_id),
                max_message_size=inc.spec.config.max_message_size,
                log=log,
                trace=inc.spec.log.trace,
                await_actor=inc._await_actor,
                how_it_ended=inc._how_it_ended,
                on_in_doubt=inc._record_in_doubt,
            )

        try:
            incarnation = Incarnation(
                spec,
                self._control,
                log,
                Plumbing(mailbox, transport, own_process=False, node=node),
            )
            try:
                code = await incarnation.run()
            finally:
                self._opened.set()  # senders still saying hello learn it is closing
        except Exception as exc:
            log.error("actor.crashed", error_type=type(exc).__name__, exc_info=exc)
            self._control.send_eof_after_flush()
        finally:
            faulthandler.disable()
            self._fault_file = None
            fault_file.close()
            with contextlib.suppress(OSError):
                if fault_path.stat().st_size == 0:
                    fault_path.unlink()
            emitter().flush()
            log_file.close()
        return code
