"""The frame decoder: whole frames, in order, whatever the chunk boundaries."""

from __future__ import annotations

import random

import pytest

from runtime.wire.codec import Shipper
from runtime.wire.frames import FrameDecoder, Kind, ProtocolError, encode


def test_frames_cut_at_any_chunk_boundary_come_out_whole_and_in_order() -> None:
    rng = random.Random(7)
    frames = [
        (rng.choice([Kind.TELL, Kind.ASK, Kind.REPLY]), rng.randrange(1 << 40), rng.randbytes(n))
        for n in (rng.choice([0, 1, 10, 500, 70_000]) for _ in range(300))
    ]
    stream = b"".join(encode(kind, ident, body) for kind, ident, body in frames)
    for _ in range(20):
        decoder = FrameDecoder(1 << 20)
        out: list[tuple[int, int, bytes]] = []
        pos = 0
        while pos < len(stream):
            size = rng.choice([1, 5, 13, 100, 4096, 1 << 16, 1 << 18])
            out += decoder.feed(stream[pos : pos + size])
            pos += size
        assert out == frames


def test_a_frame_above_the_limit_is_refused_before_its_body_arrives() -> None:
    decoder = FrameDecoder(10)
    with pytest.raises(ProtocolError, match="frame of 11 bytes is above the 10 limit"):
        decoder.feed(encode(Kind.TELL, 1, b"x" * 11)[:13])


def test_an_unknown_frame_kind_is_refused() -> None:
    frame = bytearray(encode(Kind.TELL, 1, b"x"))
    frame[4] = 99
    with pytest.raises(ProtocolError, match="unknown frame kind 99"):
        FrameDecoder(10).feed(bytes(frame))


def test_pickles_of_refs_and_of_large_arrays_carry_the_marks_the_fast_decode_looks_for() -> None:
    # Transport.decode skips ref collection and segment mapping for bodies without them
    import pickle

    import numpy as np

    from actors import ActorRef
    from runtime.wire.transport import UNPICKLE_MARK

    assert UNPICKLE_MARK in pickle.dumps(ActorRef("a1", "n", "/x"), protocol=5)
    encoded = Shipper("1-ab", "a0.1", 1 << 20).encode("m", np.zeros(1 << 18), 1 << 30, "a1.1")
    try:
        assert UNPICKLE_MARK in encoded.body
    finally:
        encoded.discard()


def test_the_plain_pickle_of_a_small_tell_leaves_large_arrays_and_errors_to_encode() -> None:
    # Shipper.plain is the hot path of tell: on None the caller takes encode, which ships
    # the arrays or raises the error that says what is wrong
    import pickle
    import threading

    import numpy as np

    shipper = Shipper("1-ab", "a0.1", 1 << 20)
    small = np.arange(10)
    body = shipper.plain(("x", small), 1 << 30)
    assert body is not None
    value = pickle.loads(body)
    assert value[0] == "x"
    assert (value[1] == small).all()
    assert shipper.plain(np.zeros(1 << 18), 1 << 30) is None  # 2 MiB: for shared memory
    assert shipper.plain(threading.Lock(), 1 << 30) is None  # unpicklable
    assert shipper.plain(b"x" * 2000, 1000) is None  # above the limit
    assert Shipper("1-ab", "a0.1", None).plain(np.zeros(1 << 18), 1 << 30) is not None
