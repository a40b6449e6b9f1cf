"""The stack dump of a hung actor (its ``actor.hung`` event), read back: where your code was.

The dump's text holds the threads' stacks as faulthandler writes them (most recent call
first), then each asyncio task's chain of awaits (most recent call last); the event's
``coroutines`` key, where present, holds the tasks as data.
"""

from __future__ import annotations

import ast
import os
import re
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import actors
import runtime

__all__ = ["Frame", "Stack", "hang_stacks", "is_yours", "short_path"]

_THREAD = re.compile(r"^(Current thread|Thread) (0x[0-9a-fA-F]+) \(most recent call first\):$")
_TASK = re.compile(r"^Task (.+?)( \(running\))?:$")
_FRAME = re.compile(r'^  File "(.*)", line (\d+|\?+) in (.*)$')
_AWAITING = re.compile(r"^  awaiting an? (.+)$")
#: the standard library's own directory, on POSIX and in virtual environments alike
_STDLIB = re.compile(r"[/\\]lib[/\\]python\d+\.\d+[/\\]")
_PACKAGES = ("site-packages", "dist-packages")
#: the directories of the runtime's packages, as this process has them
_RUNTIME_DIRS = tuple(
    os.path.join(os.path.dirname(os.path.abspath(package.__file__ or "")), "")
    for package in (actors, runtime)
)
#: where the actor process's main thread starts: it runs the event loop
_LOOP_THREAD = ("runtime/actor/bootstrap.py", "bootstrap")


@dataclass(frozen=True)
class Frame:
    file: str
    line: int | None
    function: str


@dataclass
class Stack:
    """One thread's or task's frames, outermost first."""

    kind: str  # "thread" or "task"
    name: str
    frames: list[Frame] = field(default_factory=list)
    #: what the innermost frame awaits when that has no frame of its own (a future...)
    awaiting: str | None = None
    #: a task: it was running (the thread was blocked in it); a thread: the signal's
    running: bool = False

    @property
    def runs_the_loop(self) -> bool:
        """A thread that runs the actor's event loop (its main thread)."""
        path, function = _LOOP_THREAD
        return self.kind == "thread" and any(
            f.function == function and f.file.replace("\\", "/").endswith(path) for f in self.frames
        )


def is_yours(frame: Frame) -> bool:
    """Whether ``frame`` is in the user's code: not the runtime's, a package's or Python's."""
    file = frame.file
    if file.startswith("<") or any(part in _PACKAGES for part in Path(file).parts):
        return False
    if _STDLIB.search(file) or file.startswith(_stdlib_dirs()):
        return False
    return not file.startswith(_RUNTIME_DIRS)


def _stdlib_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(os.path.join(paths[k], "") for k in ("stdlib", "platstdlib") if k in paths)


def short_path(file: str) -> str:
    """``file`` from its package on (an installed one's, or Python's), or relative to the
    current directory: shorter."""
    parts = Path(file).parts
    for marker in _PACKAGES:
        if marker in parts:
            return "/".join(parts[parts.index(marker) + 1 :])
    if match := _STDLIB.search(file):
        return file[match.end() :]
    here = os.path.join(os.getcwd(), "")
    return file[len(here) :] if file.startswith(here) else file


def hang_stacks(hung: dict[str, Any]) -> list[Stack]:
    """The tasks' and threads' stacks in an ``actor.hung`` event, tasks first."""
    stacks = parse_dump(str(hung.get("stack") or ""))
    data = hung.get("coroutines")
    if isinstance(data, list):
        stacks = [s for s in stacks if s.kind != "task"] + _tasks_from_data(data)
    return sorted(stacks, key=lambda s: s.kind != "task")


def parse_dump(text: str) -> list[Stack]:
    """The stacks in a dump's text; threads' frames turned outermost first."""
    stacks: list[Stack] = []
    current: Stack | None = None
    for line in text.splitlines():
        if m := _THREAD.match(line):
            current = Stack("thread", m[2], running=m[1] == "Current thread")
            stacks.append(current)
        elif m := _TASK.match(line):
            current = Stack("task", _unquote(m[1]), running=bool(m[2]))
            stacks.append(current)
        elif current is not None and (m := _FRAME.match(line)):
            number = int(m[2]) if m[2].isdigit() else None
            current.frames.append(Frame(m[1], number, m[3]))
        elif current is not None and (m := _AWAITING.match(line)):
            current.awaiting = m[1]
    for stack in stacks:
        if stack.kind == "thread":
            stack.frames.reverse()
    return stacks


def _unquote(name: str) -> str:
    try:
        value = ast.literal_eval(name)
    except (ValueError, SyntaxError):
        return name
    return value if isinstance(value, str) else name


def _tasks_from_data(data: list[Any]) -> list[Stack]:
    stacks = []
    for task in data:
        if not isinstance(task, dict):
            continue
        frames = [
            Frame(
                str(f.get("file")),
                f["line"] if isinstance(f.get("line"), int) else None,
                str(f.get("function")),
            )
            for f in task.get("frames") or ()
            if isinstance(f, dict)
        ]
        awaiting = task.get("awaiting")
        stacks.append(
            Stack(
                "task",
                str(task.get("task")),
                frames,
                str(awaiting) if awaiting else None,
                bool(task.get("running")),
            )
        )
    return stacks
