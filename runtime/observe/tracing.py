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

from ..wire.codec import message_type
from .logging import EVENT_SEQ

__all__ = [
    "CURRENT",
    "handled_line",
    "json_str",
    "pack_ids",
    "pair_json",
    "received_line",
    "sent_line",
    "type_json",
    "unpack_ids",
]

#: (msg_id, trace_id) of the message whose handler is running in this task
CURRENT: ContextVar[tuple[str, str] | None] = ContextVar("actors_current_message", default=None)

_LENGTHS = struct.Struct("<BB")


def pack_ids(trace_id: str, parent_id: str, body: bytes) -> bytes:
    """Prefix ``body`` with the two ids (each at most 255 bytes of ASCII)."""
    t, p = trace_id.encode(), parent_id.encode()
    return _LENGTHS.pack(len(t), len(p)) + t + p + body


def unpack_ids(data: bytes, msg_id: str = "") -> tuple[str, str, bytes]:
    """Split a traced body into ``(trace_id, parent_id, body)``.

    ``msg_id`` is the message's own id (made by the receiver): a message that starts its
    own trace carries just that, which needs no further check.

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
    # ids go into log lines unescaped (see *_line): they must be ours; one match for both
    if not (ids == msg_id and end == 2 + lt) and _checked_ids.get(ids) != lt:
        found = _TWO_IDS.fullmatch(ids)
        if found is None or found.end(1) != lt:
            raise ValueError("traced frame ids are not message ids")
        if len(_checked_ids) > 4096:
            _checked_ids.clear()
        _checked_ids[ids] = lt
    return ids[:lt], ids[lt:], data[end:]


# -- the lines of per-message events, serialised without a dict ---------------------------
#
# These three events are most of a traced run's log. Each line is built with one f-string:
# message ids are checked to be ``<box>.<n>`` (``_MSG_ID``, on the wire by
# ``unpack_ids``, in HELLO by the mailbox), names and types are JSON-encoded once and
# cached (``json_str``, ``pair_json``), and the timestamp with the process's static keys
# comes from the emitter (``stamp``), once per batch where a batch shares it. The result
# parses to the same object as the emitter's line for the dict of the same keys.

_MSG_ID = re.compile(r"a[0-9]+\.[0-9]+\.[0-9]+")
#: a trace id, then a parent id or nothing (``unpack_ids``)
_TWO_IDS = re.compile(rf"({_MSG_ID.pattern})((?:{_MSG_ID.pattern})?)")
BOX = re.compile(r"a[0-9]+\.[0-9]+")
_json_cache: dict[str, str] = {}
#: id pairs from the wire already matched, with the trace id's length (chains repeat them)
_checked_ids: dict[str, int] = {}

_SENT = ',"event":"message.sent","level":"debug","timestamp":"'
_RECEIVED = ',"event":"message.received","level":"debug","timestamp":"'
_HANDLED = ',"event":"message.handled","level":"debug","timestamp":"'


def json_str(text: str) -> str:
    """``text`` as a JSON string literal, cached (names and message types repeat)."""
    found = _json_cache.get(text)
    if found is None:
        if len(_json_cache) > 10_000:
            _json_cache.clear()
        found = _json_cache[text] = orjson.dumps(text).decode()
    return found


_type_json: dict[type, str] = {}


def type_json(message: object) -> str:
    """``message_type(message)`` as JSON; cached per class, tuples aside (tagged by value)."""
    kind = type(message)
    found = _type_json.get(kind)
    if found is None:
        found = json_str(message_type(message))
        if kind is not tuple and len(_type_json) < 1000:
            _type_json[kind] = found
    return found


def pair_json(sender: str, receiver: str) -> str:
    """The ``"sender":..,"receiver":..,`` keys of a connection's events, made once."""
    return f'"sender":{json_str(sender)},"receiver":{json_str(receiver)},'


def sent_line(
    stamp: str,
    msg_id: str,
    trace_id: str,
    parent_id: str,
    pair: str,
    msg_type: str,
    ask: bool,
    size: int,
) -> bytes:
    """``message.sent``; ``pair`` from ``pair_json``, ``msg_type`` already JSON."""
    parent = f'"{parent_id}"' if parent_id else "null"
    flag = "true" if ask else "false"
    return (
        f'{{"msg_id":"{msg_id}","trace_id":"{trace_id}","parent_id":{parent},{pair}'
        f'"msg_type":{msg_type},"ask":{flag},"size":{size}{_SENT}{stamp}{next(EVENT_SEQ)}}}\n'
    ).encode()


def received_line(
    stamp: str, msg_id: str, trace_id: str, parent_id: str, pair: str, depth: int
) -> bytes:
    """``message.received``; ``pair`` from ``pair_json``."""
    parent = f'"{parent_id}"' if parent_id else "null"
    return (
        f'{{"msg_id":"{msg_id}","trace_id":"{trace_id}","parent_id":{parent},{pair}'
        f'"depth":{depth}{_RECEIVED}{stamp}{next(EVENT_SEQ)}}}\n'
    ).encode()


def handled_line(
    stamp: str,
    msg_id: str,
    trace_id: str,
    parent_id: str,
    pair: str,
    msg_type: str,
    duration_s: float,
) -> bytes:
    """``message.handled``; ``pair`` from ``pair_json``, ``msg_type`` already JSON."""
    trace = f'"{trace_id}"' if trace_id else "null"
    parent = f'"{parent_id}"' if parent_id else "null"
    return (
        f'{{"msg_id":"{msg_id}","trace_id":{trace},"parent_id":{parent},{pair}'
        f'"msg_type":{msg_type},"duration_s":{duration_s:.6f}{_HANDLED}{stamp}'
        f"{next(EVENT_SEQ)}}}\n"
    ).encode()
