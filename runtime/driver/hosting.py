"""The Host seam: how the driver gets an incarnation running somewhere, and talks to it.

The tree only uses these protocols. ``ProcessHost`` runs each incarnation in a local OS
process; ``FakeHost`` (``runtime.testing``) runs none, so that supervision policy can be
tested in-process. Another backend implements the same three protocols.
"""

from __future__ import annotations

from typing import Any, Protocol

from actors._record import record

from ..observe.account import Counts, Liveness
from ..wire.protocol import ActorSpec, ControlMessage

__all__ = ["UNKNOWN_EXIT", "ControlLink", "Host", "HostedIncarnation", "StackDump"]

#: what ``HostedIncarnation.wait`` returns when the host cannot tell how it ended (a Ray
#: worker that died without a word): exit codes are 0 to 255, signals negative
UNKNOWN_EXIT = 256


@record
class StackDump:
    """The stacks of an incarnation's threads and asyncio tasks, and where the threads'
    full dump was written."""

    #: the threads' stacks, then the tasks' (as ``coroutines`` says), as text
    text: str
    where: str
    #: each asyncio task: ``{"task": name, "frames": [{"file", "line", "function"}, ...]}``,
    #: outermost frame first (``awaiting``: what the innermost awaits, if it has no frame)
    coroutines: tuple[dict[str, Any], ...] = ()


class ControlLink(Protocol):
    """The driver's end of an incarnation's control link."""

    def send(self, message: ControlMessage) -> None:
        """Queue ``message`` for the incarnation; never blocks."""
        ...

    async def receive(self) -> ControlMessage:
        """Return the next message from the incarnation.

        Raises:
            ControlClosedError: the incarnation's end is gone.
        """
        ...

    async def run(self) -> None:
        """Do the link's background work (sending what was queued) until cancelled."""
        ...

    async def aclose(self) -> None: ...


class HostedIncarnation(Protocol):
    """One running incarnation of an actor, as the driver sees it."""

    @property
    def pid(self) -> int | None:
        """Its OS process id, where it has one on this machine."""
        ...

    @property
    def control(self) -> ControlLink: ...

    async def wait(self) -> int:
        """Wait for it to end, and for what it left behind to be cleaned up.

        Returns its exit code: 0 for an orderly end, -N for signal N.
        """
        ...

    @property
    def account(self) -> Counts | None:
        """What it counted (handled, failed...), once ``wait`` returned; None if unknown.

        Exact however it ended, where the host can tell (a local process keeps its counts
        in a mapped file); otherwise the driver uses the account the incarnation sent.
        """
        ...

    def liveness(self) -> Liveness | None:
        """Its signs of life, read from its account now, where the host can map it (a
        local process's); None otherwise: it then sends heartbeats."""
        ...

    def terminate(self) -> None:
        """Ask it to end now (SIGTERM for a process)."""
        ...

    def kill(self) -> None:
        """End it at once (SIGKILL for a process)."""
        ...

    async def dump_stacks(self) -> StackDump:
        """Dump its threads' and tasks' stacks (``text`` is empty if none could be had)."""
        ...


class Host(Protocol):
    """Starts incarnations."""

    async def start(self, name: str, spec: ActorSpec) -> HostedIncarnation:
        """Start an incarnation running ``spec``; return once it runs (not yet ready)."""
        ...
