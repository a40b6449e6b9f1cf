"""On the hang-dump signal: write where every asyncio task of this process is waiting.

faulthandler's dump shows threads; a handler that ``await``\\ s forever leaves the loop
idle, and its thread shows only the selector. This walks each task's chain of awaited
coroutines instead (``Task.get_stack`` shows only the outermost frame of a suspended
one), and writes it as JSON next to the actor's ``.stderr`` log for the driver to read.
Frames carry file, line and function only: never locals, so never message payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..observe.logging import private_file

__all__ = ["MAX_FRAMES", "MAX_TASKS", "install_task_dump", "task_stacks", "tasks_path"]

#: the most tasks, and frames per task, a dump holds (innermost frames kept)
MAX_TASKS = 200
MAX_FRAMES = 64

Frame = dict[str, Any]


def tasks_path(stderr_path: Path) -> Path:
    """Where the task dump goes for an actor whose fault log is ``stderr_path``."""
    return stderr_path.with_suffix(".tasks.json")


def install_task_dump(
    signum: int, path: Path, loop: asyncio.AbstractEventLoop
) -> Callable[[], None]:
    """Have ``signum`` write ``loop``'s task stacks to ``path``; return the undo, after
    which ``signum`` is ignored (by default it would end the process).

    A plain Python signal handler, not ``loop.add_signal_handler``: it runs in the main
    thread as soon as the interpreter gets control, with the loop idle in its selector or
    stuck in a handler's sleep alike; the loop's callback would wait for the loop. Install
    it *before* ``faulthandler.register(signum, ..., chain=True)``, which calls it after
    its own dump; installed after, it would replace faulthandler's.
    """

    owner = os.getpid()

    def on_signal(_signum: int, frame: types.FrameType | None) -> None:
        if os.getpid() != owner:  # a child forked by a handler: the file is its parent's
            return
        # runs between two bytecodes of whatever was running: it must never raise
        with contextlib.suppress(Exception):
            try:
                dump: dict[str, Any] = {"pid": os.getpid(), "tasks": task_stacks(loop, frame)}
            except Exception as exc:
                dump = {"pid": os.getpid(), "tasks": [], "error": type(exc).__name__}
            _write_atomically(path, json.dumps(dump).encode())

    signal.signal(signum, on_signal)

    def undo() -> None:
        signal.signal(signum, signal.SIG_IGN)

    return undo


def task_stacks(
    loop: asyncio.AbstractEventLoop, interrupted: types.FrameType | None = None
) -> list[dict[str, Any]]:
    """Each task of ``loop``: its name and its frames, outermost first.

    ``interrupted`` is the frame a signal interrupted: the running task's frames are read
    from it, since a running coroutine's chain of awaits is on the thread's stack.
    """
    running = asyncio.current_task(loop) if loop.is_running() else None
    tasks = sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name())[:MAX_TASKS]
    out = []
    for task in tasks:
        coro = task.get_coro()
        frames, awaiting = _awaited(coro)
        if task is running and interrupted is not None:
            frames = _running(coro, interrupted) or frames
            awaiting = None
        entry: dict[str, Any] = {"task": task.get_name(), "frames": frames[-MAX_FRAMES:]}
        if len(frames) > MAX_FRAMES:
            entry["omitted"] = len(frames) - MAX_FRAMES
        if awaiting:
            entry["awaiting"] = awaiting
        if task is running:
            entry["running"] = True
        out.append(entry)
    return out


def _frame(frame: types.FrameType) -> Frame:
    code = frame.f_code
    return {"file": code.co_filename, "line": frame.f_lineno, "function": code.co_name}


def _awaited(coro: object) -> tuple[list[Frame], str | None]:
    """The frames of a suspended coroutine and of those it awaits, and the type of the
    innermost thing awaited that has no frame (a future, say)."""
    frames: list[Frame] = []
    current: object = coro
    seen: set[int] = set()
    while current is not None and id(current) not in seen and len(frames) < 4 * MAX_FRAMES:
        seen.add(id(current))
        if isinstance(current, types.CoroutineType):
            frame, after = current.cr_frame, current.cr_await
        elif isinstance(current, types.GeneratorType):  # @types.coroutine, yield from
            frame, after = current.gi_frame, current.gi_yieldfrom
        else:  # a future's iterator, an awaitable object...
            name = type(current).__name__
            return frames, "Future" if name == "FutureIter" else name
        if frame is None:  # finished, or running (then ``_running`` reads it)
            break
        frames.append(_frame(frame))
        current = after
    return frames, None


def _running(coro: object, interrupted: types.FrameType) -> list[Frame]:
    """The running coroutine's frames: from its own down to the interrupted one."""
    top = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
    frames = []
    frame: types.FrameType | None = interrupted
    while frame is not None:
        frames.append(_frame(frame))
        if frame is top:
            return frames[::-1]
        frame = frame.f_back
    return []  # interrupted outside it: the loop between two steps


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all, as the driver may read it any moment."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb", opener=private_file) as f:
        f.write(data)
    os.replace(temporary, path)
