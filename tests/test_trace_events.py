"""Per-message events are serialised without a dict: the same JSON, and ids checked."""

from __future__ import annotations

import orjson
import pytest

from runtime._tracing import (
    handled_keys,
    json_str,
    pack_ids,
    received_keys,
    sent_keys,
    unpack_ids,
)


def test_event_keys_parse_to_the_same_object_as_the_dict_they_replace() -> None:
    odd = 'wörker "7"\\n\t'  # a name needing escapes
    cases = [
        (
            sent_keys(
                "a0.1.5", "a0.1.5", "", json_str(odd), json_str("sink"), json_str("int"), True, 9
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
            received_keys("a3.2.7", "a0.1.5", "a1.1.2", json_str("main"), json_str(odd), 3),
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
            handled_keys(
                "a0.1.5", "", "", json_str("m"), json_str("s"), json_str("tuple:x"), 1.5e-05
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
    for keys, expected in cases:
        assert orjson.loads(keys + b"}") == expected


@pytest.mark.parametrize("bad", ['a0.1.5"', "x", "a0.1", 'a0.1.5","level":"x'])
def test_a_traced_frame_whose_ids_are_not_message_ids_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not message ids"):
        unpack_ids(pack_ids(bad, "", b"body"))
    with pytest.raises(ValueError, match="not message ids"):
        unpack_ids(pack_ids("a0.1.5", bad, b"body"))
    assert unpack_ids(pack_ids("a0.1.5", "a2.3.4", b"body")) == ("a0.1.5", "a2.3.4", b"body")
