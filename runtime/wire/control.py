"""ControlChannel: the private line between the runtime and one actor process.

It is a ``socketpair`` created by the runtime and handed to the child at spawn, so both
ends are authenticated by construction. Lifecycle (ready, stop, stopped) and requests
(spawn, lookup, stop, peer checks) travel on it. EOF on it means the other side is gone.
"""

from __future__ import annotations

import pickle
import socket
from collections import deque
from typing import Any

from anyio.abc import SocketAttribute, SocketStream

from .connection import ConnectionLostError, FramedConnection
from .frames import Kind, ProtocolError

__all__ = ["ControlChannel", "ControlClosedError"]

_MAX_CONTROL = 1 << 26


class ControlClosedError(Exception):
    """The other end of the control channel is gone."""


class ControlChannel(FramedConnection):
    """Sends and receives pickled tuples over a framed socket."""

    def __init__(self, stream: SocketStream) -> None:
        super().__init__(stream, _MAX_CONTROL)
        self._inbox: deque[tuple[Any, ...]] = deque()

    def send(self, *item: object) -> None:
        """Queue ``item`` (a tuple of picklable values) for the other end."""
        self.push_frame(Kind.CONTROL, 0, pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))

    async def receive(self) -> tuple[Any, ...]:
        """Return the next item.

        Raises:
            ControlClosedError: the other end closed the channel or died.
        """
        while not self._inbox:
            try:
                frames = await self.read_frames()
            except (ConnectionLostError, ProtocolError) as exc:
                raise ControlClosedError(str(exc)) from None
            for kind, _ident, body in frames:
                if kind != Kind.CONTROL:
                    raise ControlClosedError(f"unexpected frame kind {kind} on the control channel")
                self._inbox.append(pickle.loads(body))
        return self._inbox.popleft()

    def fileno(self) -> int:
        sock: socket.socket = self.stream.extra(SocketAttribute.raw_socket)
        return sock.fileno()
