"""A sender's pool of shared-memory segments, driven directly (no actors)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

from runtime.shm import pool as _pool
from runtime.shm.pool import SegmentPool, give_back, orphan_pool, segment_state
from runtime.shm.segments import segments_of

MiB = 1 << 20


@pytest.fixture
def pool() -> Iterator[SegmentPool]:
    pool = SegmentPool(f"{os.getpid()}-abc123", "a9.1")
    yield pool
    pool.close()  # free ones unlinked, lent ones orphaned: this test is their reader
    for name in segments_of(pool.run_id):
        give_back(name)
    assert segments_of(pool.run_id) == []


def _data(value: int, nbytes: int = 2 * MiB) -> memoryview:
    return memoryview(np.full(nbytes, value, dtype=np.uint8)).cast("B")


def test_a_segment_given_back_is_lent_again_and_one_in_use_never_is(pool: SegmentPool) -> None:
    me = os.getpid()
    first = pool.lend(_data(1), me)
    second = pool.lend(_data(2), me)  # the first is still lent
    assert first is not None
    assert second not in (None, first)
    give_back(first)
    assert segment_state(first) == "free"
    assert pool.lend(_data(3), me) == first


def test_a_segment_lent_to_a_dead_process_is_free_again(pool: SegmentPool) -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    name = pool.lend(_data(1), pid)
    assert segment_state(name) == "lent"
    assert pool.lend(_data(2), os.getpid()) == name


def test_idle_free_segments_are_unlinked_by_trim(
    pool: SegmentPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = pool.lend(_data(1), os.getpid())
    assert name is not None
    assert pool.trim() == 0  # lent, and just used
    give_back(name)
    monkeypatch.setattr(_pool, "IDLE_UNLINK", 0.0)
    assert pool.trim() == 1
    assert segment_state(name) is None


def test_an_ended_pool_unlinks_free_segments_and_orphans_lent_ones_until_given_back(
    pool: SegmentPool,
) -> None:
    lent = pool.lend(_data(1), os.getpid())
    free = pool.lend(_data(2), os.getpid())
    assert lent is not None
    assert free is not None
    give_back(free)
    assert orphan_pool(pool.run_id, pool.owner) == 1
    assert segment_state(free) is None
    assert segment_state(lent) == "orphaned"
    give_back(lent)  # its reader is done: the last one out unlinks it
    assert segment_state(lent) is None


def test_a_full_pool_lends_nothing_and_the_sender_falls_back(
    pool: SegmentPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_pool, "MAX_SEGMENTS", 2)
    me = os.getpid()
    assert pool.lend(_data(1), me) is not None
    assert pool.lend(_data(2), me) is not None
    assert pool.lend(_data(3), me) is None  # both still lent: a one-off segment is used


@pytest.mark.parametrize("name", ["../../etc/passwd", "actors_1-ab_x", "actors_1-ab_pa1.1.1/../x"])
def test_names_that_are_not_pool_segments_are_never_opened(name: str) -> None:
    give_back(name)  # a name from the wire: ignored, nothing raised, nothing touched
    assert segment_state(name) is None
