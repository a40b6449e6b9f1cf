"""Length-prefixed frames: the wire format of mailbox and control connections.

A frame is a fixed little-endian header (body length u32, kind u8, ident u64) followed by
the body. Headers are parsed without pickle; bodies are unpickled only on connections whose
peer was authenticated when it connected.
"""

from __future__ import annotations

import enum
import struct

__all__ = ["HEADER", "FrameDecoder", "Kind", "ProtocolError", "encode"]

HEADER = struct.Struct("<IBQ")


class Kind(enum.IntEnum):
    """What a frame carries; ``ident`` is given per kind."""

    HELLO = 1  # sender -> receiver, first frame: body = JSON sender description
    CREDIT = 2  # receiver -> sender: ident = mailbox slots granted
    TELL = 3  # sender -> receiver: body = pickled message
    ASK = 4  # sender -> receiver: ident = request id, body = pickled message
    REPLY = 5  # receiver -> sender: ident = request id, body = pickled result
    FAIL = 6  # receiver -> sender: ident = request id, body = pickled error
    DEMAND = 7  # sender -> receiver: out of credit, a tell is waiting
    REVOKE = 8  # receiver -> sender: give back unused credit, others are waiting
    RETURN = 9  # sender -> receiver: ident = credit given back
    CLOSING = 10  # receiver -> sender: the actor stops; send nothing more
    CONTROL = 11  # control channel: body = pickled tuple
    ACK = 12  # receiver -> sender: ident = this sender's messages finished so far (total)
    BOUNCE = 13  # receiver -> sender: ident = request id of an ask it ends without handling
    TRACED_TELL = 14  # as TELL; body = trace id and parent id, then the pickle (_tracing)
    TRACED_ASK = 15  # as ASK, likewise


class ProtocolError(Exception):
    """A peer sent bytes that are not a valid frame; its connection is closed."""


def encode(kind: Kind, ident: int = 0, body: bytes = b"") -> bytes:
    """Return one frame as bytes."""
    return HEADER.pack(len(body), kind, ident) + body


_FIRST_KIND = int(min(Kind))
_LAST_KIND = int(max(Kind))


class FrameDecoder:
    """Cuts a byte stream into frames, whatever the chunk boundaries.

    Frames are sliced straight out of each chunk read; only a frame cut by the end of a
    chunk is copied aside, and it is joined once it is complete.
    """

    __slots__ = ("_buf", "_max_body", "_need")

    def __init__(self, max_body: int) -> None:
        self._buf = bytearray()
        self._need = 0  # bytes the held partial frame needs before it can be parsed
        self._max_body = max_body

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """Add ``data`` and return every complete ``(kind, ident, body)`` frame.

        Raises:
            ProtocolError: a header announces a body above the limit or an unknown kind.
        """
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                return []
            data = bytes(buf)
            buf.clear()
        frames: list[tuple[int, int, bytes]] = []
        pos = 0
        end = len(data)
        hsize = HEADER.size
        unpack = HEADER.unpack_from
        max_body = self._max_body
        need = hsize
        while end - pos >= hsize:
            length, kind, ident = unpack(data, pos)
            if length > max_body:
                raise ProtocolError(f"frame of {length} bytes is above the {max_body} limit")
            if not _FIRST_KIND <= kind <= _LAST_KIND:
                raise ProtocolError(f"unknown frame kind {kind}")
            stop = pos + hsize + length
            if stop > end:
                need = hsize + length
                break
            frames.append((kind, ident, data[pos + hsize : stop]))
            pos = stop
        if pos < end:
            buf += memoryview(data)[pos:]
            self._need = need
        return frames

    def clear(self) -> None:
        """Forget a partial frame held, and free its memory."""
        self._buf = bytearray()
        self._need = 0
