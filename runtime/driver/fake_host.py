"""FakeHost and FakeClock: the Host seam and the supervision clock, with no process at all.

A fake incarnation answers the control protocol in memory: it is ready at once (unless
told to fail its start), stops in order when asked, and ends when a test crashes it. With
a ``FakeClock``, restart intensity and backoff run in virtual time, so supervision policy
is tested in-process in milliseconds. Exported by ``runtime.testing``.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..observe.account import Counts, Liveness
from ..wire.control import ControlClosedError
from ..wire.protocol import ActorSpec, ControlMessage, Ready, StartFailed, Stop, Stopped
from .hosting import StackDump

__all__ = ["FakeClock", "FakeHost", "FakeIncarnation", "HostEvent"]


class FakeClock:
    """A clock that only moves when told to, or when supervision sleeps (it jumps ahead)."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        #: every sleep asked for, in order: the backoff delays
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("time can't go backwards")
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._now += seconds
        await anyio.lowlevel.checkpoint()


@dataclass(frozen=True, slots=True)
class HostEvent:
    """One thing that happened to a fake incarnation: ``start``, ``stop`` or ``exit``."""

    kind: str
    name: str
    incarnation: int
    detail: str = ""


class _FakeLink:
    """The driver's end of a fake incarnation's control link."""

    def __init__(self, incarnation: FakeIncarnation) -> None:
        self._inc = incarnation
        self.inbox: MemoryObjectSendStream[ControlMessage]
        self._outbox: MemoryObjectReceiveStream[ControlMessage]
        self.inbox, self._outbox = anyio.create_memory_object_stream[ControlMessage](math.inf)

    def send(self, message: ControlMessage) -> None:
        self._inc.received(message)

    async def receive(self) -> ControlMessage:
        try:
            return await self._outbox.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise ControlClosedError("the fake incarnation ended") from None

    async def run(self) -> None:
        await anyio.sleep_forever()

    async def aclose(self) -> None:
        self._outbox.close()


class FakeIncarnation:
    """A ``HostedIncarnation`` that runs nothing: a test decides when it ends, and how."""

    def __init__(self, host: FakeHost, spec: ActorSpec) -> None:
        self.host = host
        self.spec = spec
        self.name = spec.name
        self.number = spec.incarnation
        self._link = _FakeLink(self)
        self._exited = anyio.Event()
        self.exit_code: int | None = None

    @property
    def pid(self) -> int | None:
        return None

    @property
    def control(self) -> _FakeLink:
        return self._link

    @property
    def account(self) -> Counts | None:
        return None

    def liveness(self) -> Liveness | None:
        return None

    def _say(self, message: ControlMessage) -> None:
        if self.exit_code is None:
            self._link.inbox.send_nowait(message)

    def _end(self, code: int, detail: str) -> None:
        if self.exit_code is not None:
            return
        self.exit_code = code
        self._link.inbox.close()
        self.host.record(HostEvent("exit", self.name, self.number, detail))
        self._exited.set()

    def received(self, message: ControlMessage) -> None:
        if isinstance(message, Stop):
            self.host.record(HostEvent("stop", self.name, self.number, message.reason))
            self._say(Stopped(message.reason, 0, 0, 0, 0, "", ""))
            self._end(0, message.reason)

    def crash(self, code: int = 1) -> None:
        """End by itself with exit code ``code`` (``-signal.SIGKILL`` for a kill)."""
        self._end(code, f"crash:{code}")

    def stop_itself(self) -> None:
        """End in order by itself, as ``self.context.stop()`` does (reason ``requested``)."""
        self._say(Stopped("requested", 0, 0, 0, 0, "", ""))
        self._end(0, "requested")

    async def wait(self) -> int:
        await self._exited.wait()
        return 255 if self.exit_code is None else self.exit_code

    def terminate(self) -> None:
        self._end(-signal.SIGTERM, "terminated")

    def kill(self) -> None:
        self._end(-signal.SIGKILL, "killed")

    async def dump_stacks(self) -> StackDump:
        return StackDump("", "fake")


@dataclass
class FakeHost:
    """A ``Host`` whose incarnations are ``FakeIncarnation``s, recorded for assertions."""

    #: actor names whose next start fails (each entry used once)
    fail_starts: list[str] = field(default_factory=list)
    events: list[HostEvent] = field(default_factory=list)
    incarnations: dict[str, list[FakeIncarnation]] = field(default_factory=dict)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    async def start(self, name: str, spec: ActorSpec) -> FakeIncarnation:
        inc = FakeIncarnation(self, spec)
        self.incarnations.setdefault(spec.name, []).append(inc)
        self.record(HostEvent("start", spec.name, spec.incarnation))
        if spec.name in self.fail_starts:
            self.fail_starts.remove(spec.name)
            inc._say(StartFailed("RuntimeError", "told to fail", ""))
            inc._end(1, "start_failed")
        else:
            inc._say(Ready(0))
        return inc

    def current(self, name: str) -> FakeIncarnation:
        """The newest incarnation of actor ``name``."""
        return self.incarnations[name][-1]

    def starts(self, name: str) -> int:
        return len(self.incarnations.get(name, []))

    def record(self, event: HostEvent) -> None:
        self.events.append(event)
        self._changed.set()
        self._changed = anyio.Event()

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds; it is checked after every recorded event."""
        while not condition():
            await self._changed.wait()
