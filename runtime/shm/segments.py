"""Shared-memory segments: files in /dev/shm, created with their pages reserved.

We use ``/dev/shm`` directly (``shm_open`` on Linux is an ``open`` there) rather than
``multiprocessing.shared_memory``: on Python 3.11 every attach registers the segment with a
resource tracker, which unlinks it under everyone when an unrelated attacher exits, and
whose documented work-around removes the owner's registration (design notes 4.2). Here no
tracker is involved: names carry the run id, the runtime unlinks what it owns when the
run ends, and a later runtime sweeps what a killed run left.

A mapping is an ``mmap`` object with its file descriptor closed right away. numpy arrays
built on it with ``np.frombuffer`` keep it alive, so the memory is unmapped when the last
array goes, and never while one still points into it.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from actors import SharedMemoryFullError, StaleHandleError

__all__ = [
    "SHM_DIR",
    "PREFIX",
    "message_prefix",
    "pool_prefix",
    "segment_name",
    "message_segment",
    "attach_segment",
    "create_segment",
    "run_of_segment",
    "segments_of",
    "sweep_stale_segments",
    "unlink_segment",
    "unlink_segments",
    "write_segment",
]

SHM_DIR = Path("/dev/shm")
PREFIX = "actors_"
_NAME = re.compile(r"actors_[0-9]+-[0-9a-f]+_[A-Za-z0-9_.\-]{1,120}\Z")


def _path(name: str) -> Path:
    if not _NAME.match(name):
        raise StaleHandleError(f"segment {name!r}", "that is not a segment name of this runtime")
    return SHM_DIR / name


def free_bytes() -> int:
    """Bytes free in /dev/shm now."""
    st = os.statvfs(SHM_DIR)
    return st.f_bavail * st.f_frsize


@contextlib.contextmanager
def _new_segment(name: str, size: int) -> Iterator[int]:
    """Create segment ``name`` (mode 0600) and yield its fd to fill it.

    A full /dev/shm (checked first, then ENOSPC from the kernel) becomes
    ``SharedMemoryFullError``; on any failure the half-made segment is removed.
    """
    path = _path(name)
    available = free_bytes()
    if size > available:
        raise SharedMemoryFullError(size, available, str(SHM_DIR))
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        try:
            yield fd
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.ENOMEM, errno.EFBIG):
                raise SharedMemoryFullError(size, free_bytes(), str(SHM_DIR)) from None
            raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    finally:
        os.close(fd)


def create_segment(name: str, nbytes: int) -> mmap.mmap:
    """Create segment ``name`` (mode 0600) with ``nbytes`` reserved; return it mapped.

    Raises:
        SharedMemoryFullError: /dev/shm cannot hold it; nothing is left behind.
        FileExistsError: the name is taken.
    """
    size = max(nbytes, 1)  # an empty array still needs something to map
    with _new_segment(name, size) as fd:
        # reserve every page now: on a full tmpfs this fails cleanly here, where an
        # ftruncate would succeed and the first write would crash the writer (SIGBUS)
        os.posix_fallocate(fd, 0, size)
        return mmap.mmap(fd, size)


def write_segment(name: str, data: memoryview) -> None:
    """Create segment ``name`` (mode 0600) holding a copy of ``data`` (a byte view).

    The kernel copies straight into the segment's pages: no mapping, so no page fault per
    page, and a full /dev/shm fails the write with ENOSPC (a clean error, never SIGBUS).

    Raises:
        SharedMemoryFullError: /dev/shm cannot hold it; nothing is left behind.
    """
    size = data.nbytes
    with _new_segment(name, size) as fd:
        written = 0
        while written < size:
            written += os.pwrite(fd, data[written:], written)
        if size == 0:
            os.ftruncate(fd, 1)  # an empty buffer still needs something to map


def attach_segment(name: str, nbytes: int, what: str) -> mmap.mmap:
    """Map existing segment ``name``, checking that it is ours and large enough.

    Raises:
        StaleHandleError: it no longer exists (freed, or its run ended), or is not ours.
    """
    path = _path(name)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise StaleHandleError(what, "its memory was freed or its run has ended") from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid():
            raise StaleHandleError(what, f"{path} belongs to another user")
        if st.st_size < max(nbytes, 1):
            raise StaleHandleError(what, f"{path} holds {st.st_size} bytes, not {nbytes}")
        return mmap.mmap(fd, max(nbytes, 1))
    finally:
        os.close(fd)


def unlink_segment(name: str) -> bool:
    """Remove ``name`` from /dev/shm; mappings stay valid. Return False if it was gone."""
    try:
        os.unlink(_path(name))
    except FileNotFoundError:
        return False
    return True


def segment_name(run_id: str, kind: str) -> str:
    """The ``/dev/shm`` name of the run's segment ``kind`` (e.g. ``a3``, ``p<box>.<n>``)."""
    return f"{PREFIX}{run_id}_{kind}"


def pool_prefix(owner: str) -> str:
    """The kind prefix of the pooled segments lent by incarnation ``owner``."""
    return f"p{owner}."


def message_prefix(box: str) -> str:
    """The kind prefix of segments holding arrays sent to incarnation ``box``."""
    return f"m{box}_"


def message_segment(run_id: str, box: str, sender_id: str, n: int) -> str:
    """The name of the ``n``-th segment ``sender_id`` writes for incarnation ``box``."""
    return segment_name(run_id, f"{message_prefix(box)}{sender_id}.{n}")


def segments_of(run_id: str, kind: str = "") -> list[str]:
    """Names of the segments of run ``run_id`` (of one kind, if given) now in /dev/shm."""
    start = f"{PREFIX}{run_id}_{kind}"
    try:
        names = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return []
    return [n for n in names if n.startswith(start)]


def unlink_segments(names: Iterable[str]) -> int:
    """Unlink every name; return how many existed."""
    return sum(1 for name in names if unlink_segment(name))


def run_of_segment(name: str) -> str | None:
    """The run id a segment name belongs to, or None if it is not one of ours."""
    if not _NAME.match(name):
        return None
    return name[len(PREFIX) :].split("_", 1)[0]


def all_segments() -> list[str]:
    """Every segment name of ours (any run) in /dev/shm owned by this user."""
    try:
        entries = list(os.scandir(SHM_DIR))
    except FileNotFoundError:
        return []
    uid = os.getuid()
    found = []
    for entry in entries:
        if not entry.name.startswith(PREFIX) or run_of_segment(entry.name) is None:
            continue
        with contextlib.suppress(OSError):
            if entry.stat(follow_symlinks=False).st_uid == uid:
                found.append(entry.name)
    return found


def sweep_stale_segments(live_runs: set[str]) -> list[str]:
    """Unlink our segments whose run is over: no run directory, and its process is gone.

    A run whose directory exists is never touched: several runtimes may run at once.
    """
    swept = []
    for name in all_segments():
        run = run_of_segment(name)
        if run is None or run in live_runs:
            continue
        if os.path.exists(f"/proc/{run.split('-', 1)[0]}"):
            continue  # its runtime (or a process that reused its pid) lives: be safe
        if unlink_segment(name):
            swept.append(name)
    return swept
