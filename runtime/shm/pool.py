"""A sender's pool of shared-memory segments for the large arrays of its messages.

A fresh segment costs the kernel a zero-filled page per 4 KiB: for a large array that
is most of the hand-off time, more than the copy itself. So a sender keeps the segments it
has sent and lends them again once their reader is done with them.

Each segment starts with a header page: its state and the pid of the process it is lent
to. The data follows the header page.

- The sender copies an array in and marks the segment LENT to the receiving process.
- The receiver maps it. When the last array viewing it is collected, it marks the segment
  FREE again. It does not unlink it.
- A LENT segment whose holder process has died is free as well: a killed receiver gives
  nothing back.
- When the sender ends, or is killed (then the runtime does it), FREE segments are
  unlinked and LENT ones are marked ORPHANED: their reader unlinks them when done. These
  changes of state take a ``flock`` on the segment, so a reader giving one back and an
  ending sender never both miss the unlink.

The pool is bounded (``MAX_SEGMENTS``, ``MAX_BYTES``). Past that, and for arrays no
segment fits, a message gets a one-off segment that its reader unlinks.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import re
import struct
import time
from collections.abc import Callable
from pathlib import Path

from actors._record import record

from .segments import (
    SHM_DIR,
    create_segment,
    pool_prefix,
    segment_name,
    segments_of,
    unlink_segment,
)

__all__ = [
    "DATA_OFFSET",
    "SegmentPool",
    "give_back",
    "orphan_pool",
    "segment_state",
]

DATA_OFFSET = mmap.PAGESIZE
FREE, LENT, ORPHANED = 0, 1, 2
_STATE = struct.Struct("<qq")  # state, holder pid
#: a pool holds at most this many segments, and this many bytes
MAX_SEGMENTS = 8
MAX_BYTES = 1 << 30
#: a free segment unused this long is unlinked (seconds; see ``trim``)
IDLE_UNLINK = 10.0
_GRAIN = 1 << 16
# actors_<run>_p<box>.<n>.<random>: names arrive in messages; nothing else is opened
_POOL_NAME = re.compile(r"actors_[0-9]+-[0-9a-f]+_pa[0-9]+\.[0-9]+\.[0-9]+\.[0-9a-f]+")


@record(frozen=False)
class _Segment:
    name: str
    capacity: int  # data bytes it holds
    mapping: mmap.mmap
    last_used: float


def _reusable(segment: _Segment) -> bool:
    """Free, or lent to a process that has died (a killed reader gives nothing back)."""
    state, holder = _STATE.unpack_from(segment.mapping, 0)
    return state == FREE or (state == LENT and not _alive(holder))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SegmentPool:
    """The segments one process lends to the receivers of its large arrays."""

    def __init__(self, run_id: str, owner: str) -> None:
        self.run_id = run_id
        self.owner = owner  # the sender's box: pool segments are named after it
        self._segments: list[_Segment] = []
        self._ids = 0
        #: called when the pool makes a segment (its owner then trims it now and then)
        self.on_grow: Callable[[], None] | None = None

    @property
    def holding(self) -> bool:
        """Whether it holds any segment."""
        return bool(self._segments)

    def lend(self, data: memoryview, receiver_pid: int) -> str | None:
        """Copy ``data`` into a free segment lent to ``receiver_pid``; return its name.

        None when the pool is full and every segment is in use: send a one-off segment.

        Raises:
            SharedMemoryFullError: /dev/shm has no room for a new segment.
        """
        nbytes = data.nbytes
        now = time.monotonic()
        segment = self._free_segment(nbytes, now)
        if segment is None:
            segment = self._new_segment(nbytes)
            if segment is None:
                return None
        mapping = segment.mapping
        mapping[DATA_OFFSET : DATA_OFFSET + nbytes] = data
        _STATE.pack_into(mapping, 0, LENT, receiver_pid)
        segment.last_used = now
        return segment.name

    def trim(self) -> int:
        """Unlink free segments unused for ``IDLE_UNLINK`` seconds; return how many.

        Called now and then (the actor's heartbeat, the runtime's housekeeping), so that
        memory a sender no longer needs goes back to /dev/shm even if it sends no more.
        """
        now = time.monotonic()
        idle = [
            s
            for s in self._segments
            if now - s.last_used > IDLE_UNLINK and _STATE.unpack_from(s.mapping, 0)[0] == FREE
        ]
        for segment in idle:
            self._drop(segment)
        return len(idle)

    def give_back(self, name: str) -> None:
        """A message that was not sent: its segment is free again."""
        for segment in self._segments:
            if segment.name == name:
                _STATE.pack_into(segment.mapping, 0, FREE, 0)

    def owns(self, name: str) -> bool:
        return any(segment.name == name for segment in self._segments)

    def close(self) -> None:
        """Unmap; unlink free segments, leave lent ones to their readers to unlink."""
        for segment in self._segments:
            with contextlib.suppress(BufferError):
                segment.mapping.close()
        self._segments.clear()
        orphan_pool(self.run_id, self.owner)

    def _free_segment(self, nbytes: int, now: float) -> _Segment | None:
        best: _Segment | None = None
        for segment in list(self._segments):
            if not _reusable(segment):
                continue
            # the smallest that fits, and not one far larger than the array
            fits = nbytes <= segment.capacity <= 4 * nbytes + _GRAIN
            if not fits:
                if now - segment.last_used > IDLE_UNLINK:
                    self._drop(segment)
                continue
            if best is None or segment.capacity < best.capacity:
                best = segment
        return best

    def _new_segment(self, nbytes: int) -> _Segment | None:
        capacity = -(-nbytes // _GRAIN) * _GRAIN
        held = sum(s.capacity for s in self._segments)
        while len(self._segments) >= MAX_SEGMENTS or held + capacity > MAX_BYTES:
            victim = self._largest_free()
            if victim is None:
                return None
            held -= victim.capacity
            self._drop(victim)
        self._ids += 1
        stem = segment_name(self.run_id, f"{pool_prefix(self.owner)}{self._ids}")
        name, mapping = create_segment(stem, DATA_OFFSET + capacity)
        segment = _Segment(name, capacity, mapping, time.monotonic())
        self._segments.append(segment)
        if self.on_grow is not None:
            self.on_grow()
        return segment

    def _largest_free(self) -> _Segment | None:
        free = [s for s in self._segments if _reusable(s)]
        return max(free, key=lambda s: s.capacity, default=None)

    def _drop(self, segment: _Segment) -> None:
        self._segments.remove(segment)
        with contextlib.suppress(BufferError):
            segment.mapping.close()
        unlink_segment(segment.name)


def _pool_path(name: str) -> Path | None:
    """Where pool segment ``name`` lives; None for a name that is not one (from the wire)."""
    if not _POOL_NAME.fullmatch(name):
        return None
    return SHM_DIR / name


def _restate(path: Path, change: Callable[[int, int], tuple[int, int] | None]) -> bool:
    """Under the segment's ``flock``: give it the state ``change`` returns, or unlink it.

    ``change`` gets the state and holder pid, and returns the new ones, or None to
    unlink. Return whether it was unlinked. Errors are swallowed: this runs in
    finalizers, and the run's end unlinks whatever is left.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False  # gone: its run is over, or another reader unlinked it
    try:
        if os.fstat(fd).st_uid != os.getuid():
            return False  # another user's file under one of our names: not ours to change
        fcntl.flock(fd, fcntl.LOCK_EX)
        new = change(*_STATE.unpack(os.pread(fd, _STATE.size, 0)))
        if new is None:
            os.unlink(path)
            return True
        os.pwrite(fd, _STATE.pack(*new), 0)
    except OSError:
        pass
    finally:
        os.close(fd)
    return False


def give_back(name: str) -> None:
    """The reader is done with lent segment ``name``: free it, or unlink it if orphaned."""
    path = _pool_path(name)
    if path is not None:
        _restate(path, lambda state, _: None if state == ORPHANED else (FREE, 0))


def orphan_pool(run_id: str, owner: str) -> int:
    """The pool of ``owner`` has ended: unlink its free segments, orphan the lent ones.

    Called by the owner as it stops, and by the runtime when the owner was killed.
    Returns how many segments were unlinked.
    """

    def orphan(state: int, holder: int) -> tuple[int, int] | None:
        return (ORPHANED, holder) if state == LENT and _alive(holder) else None

    return sum(_restate(SHM_DIR / name, orphan) for name in segments_of(run_id, pool_prefix(owner)))


def segment_state(name: str) -> str | None:
    """``"free"``, ``"lent"`` or ``"orphaned"`` for pool segment ``name``; None if gone."""
    path = _pool_path(name)
    if path is None:
        return None
    try:
        with open(path, "rb") as file:
            state, _ = _STATE.unpack(file.read(_STATE.size))
    except FileNotFoundError:
        return None
    return {FREE: "free", LENT: "lent", ORPHANED: "orphaned"}.get(state, f"unknown {state}")
