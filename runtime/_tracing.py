"""Trace context: which message is being handled, so that what it causes points back to it.

A message sent while message M is handled inherits M's trace id and records M's id as its
``parent_id``, across processes: traced frames carry both ids ahead of the pickle. A
message sent outside any handler (by the script, a timer...) starts a new trace named
after itself. With tracing off nothing is carried and nothing is looked up.
"""

from __future__ import annotations

import re
import struct
from contextvars import ContextVar

import orjson

__all__ = [
    "CURRENT",
    "handled_keys",
    "json_str",
    "pack_ids",
    "received_keys",
    "sent_keys",
    "unpack_ids",
]

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
    if len(data) < 2:
        raise ValueError("traced frame too short")
    lt = data[0]  # the two lengths (_LENGTHS), read as bytes: once per traced message
    end = 2 + lt + data[1]
    if end > len(data):
        raise ValueError("traced frame ids run past its end")
    ids = data[2:end].decode("ascii")
    # ids go into log lines unescaped (see *_keys): they must be ours; one match for both
    found = _TWO_IDS.fullmatch(ids)
    if found is None or found.end(1) != lt:
        raise ValueError("traced frame ids are not message ids")
    return ids[:lt], ids[lt:], data[end:]


# -- the keys of per-message events, serialised without a dict ---------------------------
#
# These three events are most of a traced run's log. Each is built with one %-format:
# message ids are checked to be ``<box>.<n>`` (``_MSG_ID``, on the wire by
# ``unpack_ids``, in HELLO by the mailbox), names and types are JSON-encoded once and
# cached. The result is the same JSON object as ``orjson.dumps`` of the dict gives, without
# its closing brace (the emitter adds event, level, timestamp and the static keys).

_MSG_ID = re.compile(r"a[0-9]+\.[0-9]+\.[0-9]+")
#: a trace id, then a parent id or nothing (``unpack_ids``)
_TWO_IDS = re.compile(rf"({_MSG_ID.pattern})((?:{_MSG_ID.pattern})?)")
BOX = re.compile(r"a[0-9]+\.[0-9]+")
_json_cache: dict[str, str] = {}


def json_str(text: str) -> str:
    """``text`` as a JSON string literal, cached (names and message types repeat)."""
    found = _json_cache.get(text)
    if found is None:
        if len(_json_cache) > 10_000:
            _json_cache.clear()
        found = _json_cache[text] = orjson.dumps(text).decode()
    return found


def sent_keys(
    msg_id: str,
    trace_id: str,
    parent_id: str,
    sender: str,
    receiver: str,
    msg_type: str,
    ask: bool,
    size: int,
) -> bytes:
    """``message.sent``; names and type already JSON (``json_str``)."""
    parent = f'"{parent_id}"' if parent_id else "null"
    flag = "true" if ask else "false"
    return (
        f'{{"msg_id":"{msg_id}","trace_id":"{trace_id}","parent_id":{parent},'
        f'"sender":{sender},"receiver":{receiver},"msg_type":{msg_type},"ask":{flag},'
        f'"size":{size}'
    ).encode()


def received_keys(
    msg_id: str, trace_id: str, parent_id: str, sender: str, receiver: str, depth: int
) -> bytes:
    """``message.received``; names already JSON (``json_str``)."""
    parent = f'"{parent_id}"' if parent_id else "null"
    return (
        f'{{"msg_id":"{msg_id}","trace_id":"{trace_id}","parent_id":{parent},'
        f'"sender":{sender},"receiver":{receiver},"depth":{depth}'
    ).encode()


def handled_keys(
    msg_id: str,
    trace_id: str,
    parent_id: str,
    sender: str,
    receiver: str,
    msg_type: str,
    duration_s: float,
) -> bytes:
    """``message.handled``; names and type already JSON (``json_str``), to the microsecond."""
    trace = f'"{trace_id}"' if trace_id else "null"
    parent = f'"{parent_id}"' if parent_id else "null"
    return (
        f'{{"msg_id":"{msg_id}","trace_id":{trace},"parent_id":{parent},'
        f'"sender":{sender},"receiver":{receiver},"msg_type":{msg_type},'
        f'"duration_s":{duration_s:.6f}'
    ).encode()
