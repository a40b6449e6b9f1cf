"""Trace context: which message is being handled, so that what it causes points back to it.

A message sent while message M is handled inherits M's trace id and records M's id as its
``parent_id``, across processes: traced frames carry both ids ahead of the pickle. A
message sent outside any handler (by the script, a timer...) starts a new trace named
after itself. With tracing off nothing is carried and nothing is looked up.
"""

from __future__ import annotations

import struct
from contextvars import ContextVar

__all__ = ["CURRENT", "pack_ids", "unpack_ids"]

#: (msg_id, trace_id) of the message whose handler is running in this task
CURRENT: ContextVar[tuple[str, str] | None] = ContextVar("actors_current_message", default=None)

_LENGTHS = struct.Struct("<BB")


def pack_ids(trace_id: str, parent_id: str, body: bytes) -> bytes:
    """Prefix ``body`` with the two ids (each at most 255 bytes of ASCII)."""
    t, p = trace_id.encode(), parent_id.encode()
    return _LENGTHS.pack(len(t), len(p)) + t + p + body


def unpack_ids(data: bytes) -> tuple[str, str, bytes]:
    """Split a traced body into ``(trace_id, parent_id, body)``.

    Raises:
        ValueError: the prefix is malformed.
    """
    if len(data) < _LENGTHS.size:
        raise ValueError("traced frame too short")
    lt, lp = _LENGTHS.unpack_from(data)
    start = _LENGTHS.size
    end = start + lt + lp
    if end > len(data):
        raise ValueError("traced frame ids run past its end")
    return (
        data[start : start + lt].decode("ascii"),
        data[start + lt : end].decode("ascii"),
        data[end:],
    )
