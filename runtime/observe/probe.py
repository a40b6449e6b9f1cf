"""EventProbe: await the runtime's lifecycle events in a script or a test.

In the spirit of Akka's ``TestProbe.expectTerminated`` and OTP's monitors: subscribe
first, cause something (kill a process, send a message), then wait for the event under a
deadline, instead of sleeping and hoping.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .logging import Log

__all__ = ["EventProbe", "PublishingLog"]

Event = tuple[str, dict[str, Any]]


class EventProbe:
    """The runtime's events (``actor.exited``, ``actor.restarted``...) from subscription on.

    Example::

        async with rt.probe() as probe:
            os.kill(pid, signal.SIGKILL)
            await probe.expect("actor.restarted", actor="worker")
    """

    def __init__(self, publisher: PublishingLog) -> None:
        self._publisher = publisher
        send: MemoryObjectSendStream[Event]
        receive: MemoryObjectReceiveStream[Event]
        send, receive = anyio.create_memory_object_stream[Event](math.inf)
        self._send = send
        self._receive = receive
        self.seen: list[Event] = []

    def _put(self, event: Event) -> None:
        self._send.send_nowait(event)

    async def expect(self, event: str, *, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """Wait for ``event`` whose fields equal ``match``; return its fields.

        Raises:
            TimeoutError: it did not come within ``timeout`` seconds (the message lists
                the events that did).
        """
        try:
            with anyio.fail_after(timeout):
                async for name, fields in self._receive:
                    self.seen.append((name, fields))
                    if name == event and all(fields.get(k) == v for k, v in match.items()):
                        return fields
        except TimeoutError:
            got = ", ".join(name for name, _ in self.seen[-20:]) or "nothing"
            raise TimeoutError(
                f"no {event} {match or ''} within {timeout:g} s; saw: {got}"
            ) from None
        raise RuntimeError("the probe was closed")

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._receive.__aiter__()

    async def __aenter__(self) -> EventProbe:
        self._publisher.probes.add(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._publisher.probes.discard(self)
        self._send.close()
        self._receive.close()


class PublishingLog:
    """The runtime's logger, which also hands each event to the probes listening."""

    def __init__(self, log: Log) -> None:
        self._log = log
        self.probes: set[EventProbe] = set()

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        getattr(self._log, level)(event, **fields)
        for probe in self.probes:
            probe._put((event, fields))

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)
