"""Per-message events are serialised without a dict: the same JSON, and ids checked."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest

from runtime.observe.logging import _Emitter
from runtime.observe.tracing import (
    handled_line,
    json_str,
    pack_ids,
    pair_json,
    received_line,
    sent_line,
    unpack_ids,
)


def _parsed(line: bytes) -> dict[str, Any]:
    assert line.endswith(b"}\n")
    assert line.count(b"\n") == 1
    event: dict[str, Any] = orjson.loads(line)
    assert isinstance(event.pop("seq"), int)
    return event


def test_event_lines_parse_to_the_same_object_as_the_dict_they_replace() -> None:
    odd = 'wörker "7"\\n\t'  # a name needing escapes
    static = {"run_id": "1-ab", "pid": 7, "source": odd}
    written = io.BytesIO()
    emitter = _Emitter(written, static)
    stamp = emitter.stamp(1_700_000_000.25)
    cases = [
        (
            "message.sent",
            sent_line(
                stamp, "a0.1.5", "a0.1.5", "", pair_json(odd, "sink"), json_str("int"), True, 9
            ),
            {
                "msg_id": "a0.1.5",
                "trace_id": "a0.1.5",
                "parent_id": None,
                "sender": odd,
                "receiver": "sink",
                "msg_type": "int",
                "ask": True,
                "size": 9,
            },
        ),
        (
            "message.received",
            received_line(stamp, "a3.2.7", "a0.1.5", "a1.1.2", pair_json("main", odd), 3),
            {
                "msg_id": "a3.2.7",
                "trace_id": "a0.1.5",
                "parent_id": "a1.1.2",
                "sender": "main",
                "receiver": odd,
                "depth": 3,
            },
        ),
        (
            "message.handled",
            handled_line(
                stamp, "a0.1.5", "", "", pair_json("m", "s"), json_str("tuple:x"), 1.5e-05
            ),
            {
                "msg_id": "a0.1.5",
                "trace_id": None,
                "parent_id": None,
                "sender": "m",
                "receiver": "s",
                "msg_type": "tuple:x",
                "duration_s": 1.5e-05,
            },
        ),
    ]
    for event, line, keys in cases:
        expected = {
            **keys,
            "event": event,
            "level": "debug",
            "timestamp": "2023-11-14T22:13:20.250000Z",
            **static,
        }
        assert _parsed(line) == expected
        # the general path (a dict through orjson) makes the same object; with no event
        # loop running, it is written at once
        emitter.later(event, keys)
        general = _parsed(written.getvalue().splitlines(keepends=True)[-1])
        assert general.pop("timestamp").endswith("Z")
        expected.pop("timestamp")
        assert general == expected


@pytest.mark.parametrize("bad", ['a0.1.5"', "x", "a0.1", 'a0.1.5","level":"x'])
def test_a_traced_frame_whose_ids_are_not_message_ids_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not message ids"):
        unpack_ids(pack_ids(bad, "", b"body"))
    with pytest.raises(ValueError, match="not message ids"):
        unpack_ids(pack_ids("a0.1.5", bad, b"body"))
    assert unpack_ids(pack_ids("a0.1.5", "a2.3.4", b"body")) == ("a0.1.5", "a2.3.4", b"body")


def test_ids_a_chain_repeats_are_still_checked_against_their_split() -> None:
    # checked pairs are remembered with the trace id's length: the same bytes cut
    # elsewhere are not message ids
    good = pack_ids("a0.1.5", "a2.3.4", b"body")
    assert unpack_ids(good) == ("a0.1.5", "a2.3.4", b"body")
    assert unpack_ids(good) == ("a0.1.5", "a2.3.4", b"body")  # from the cache
    cut_elsewhere = bytes([3, 9]) + good[2:]
    with pytest.raises(ValueError, match="not message ids"):
        unpack_ids(cut_elsewhere)
    # a message that starts its own trace carries its own id: no match needed
    assert unpack_ids(pack_ids("a0.1.9", "", b"x"), "a0.1.9") == ("a0.1.9", "", b"x")
    with pytest.raises(ValueError, match="not message ids"):
        unpack_ids(pack_ids("a0.1", "", b"x"), "a0.1.9")
