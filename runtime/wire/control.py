"""ControlChannel: the private line between the driver and one local actor process.

It is a ``socketpair`` created by the driver and handed to the child at spawn, so both
ends are authenticated by construction. The messages of ``protocol`` travel on it, one
pickled dataclass per frame. EOF on it means the other side is gone.
"""

from __future__ import annotations

import pickle
import socket
from collections import deque

from anyio.abc import SocketAttribute, SocketStream

from .connection import ConnectionLostError, FramedConnection
from .frames import Kind, ProtocolError
from .protocol import Answer, ControlMessage, Heartbeat, Ready, Request, StartFailed, Stop, Stopped

__all__ = ["ControlChannel", "ControlClosedError"]

_MAX_CONTROL = 1 << 26


class ControlClosedError(Exception):
    """The other end of the control channel is gone."""


_MESSAGE_TYPES = (Ready, Heartbeat, StartFailed, Stopped, Request, Answer, Stop)


class ControlChannel(FramedConnection):
    """Sends and receives ``protocol`` messages over a framed socket."""

    def __init__(self, stream: SocketStream) -> None:
        super().__init__(stream, _MAX_CONTROL)
        self._inbox: deque[ControlMessage] = deque()

    def send(self, message: ControlMessage) -> None:
        """Queue ``message`` for the other end; never blocks."""
        self.push_frame(Kind.CONTROL, 0, pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    async def receive(self) -> ControlMessage:
        """Return the next message.

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
                message = pickle.loads(body)
                if not isinstance(message, _MESSAGE_TYPES):
                    raise ControlClosedError(
                        f"unexpected {type(message).__name__} on the control channel"
                    )
                self._inbox.append(message)
        return self._inbox.popleft()

    async def run(self) -> None:
        """Keep sending what ``send`` queued, until cancelled."""
        await self.run_writer()

    def fileno(self) -> int:
        sock: socket.socket = self.stream.extra(SocketAttribute.raw_socket)
        return sock.fileno()
