"""Shared-memory segments: files in /dev/shm, created with their pages reserved.

We use ``/dev/shm`` directly (``shm_open`` on Linux is an ``open`` there) rather than
``multiprocessing.shared_memory``: on Python 3.11 every attach registers the segment with a
resource tracker, which unlinks it under everyone when an unrelated attacher exits, and
whose documented work-around removes the owner's registration (design notes 4.2). Here no
tracker is involved: names carry the run id, the runtime unlinks what it owns when the
run ends, and a later runtime sweeps what a killed run left.

/dev/shm is shared by every user, and the run id shows in its listing. So every segment's
name ends in a random part chosen when it is created (``O_EXCL``, a new one on a
collision): nobody can create a segment's name before us. Readers learn a name from the
message or handle that carries it. Cleanup lists and unlinks only segments this user owns:
a file another user made under one of our names is left alone.

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
#: the random part of a segment name: 64 bits, so nobody can create the name first
_RANDOM_BYTES = 8
#: how many random names to try before giving up (a collision is already near-impossible)
_TRIES = 16
_CREATE = os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW


def _path(name: str) -> Path:
    if not _NAME.match(name):
        raise StaleHandleError(f"segment {name!r}", "that is not a segment name of this runtime")
    return SHM_DIR / name


def _random_hex(nbytes: int) -> str:
    # what secrets.token_hex does, without loading secrets (and hashlib) in every script
    return os.urandom(nbytes).hex()


def free_bytes() -> int:
    """Bytes free in /dev/shm now."""
    st = os.statvfs(SHM_DIR)
    return st.f_bavail * st.f_frsize


def _open_new(stem: str) -> tuple[Path, int]:
    """Create a new segment ``<stem>.<random>`` (mode 0600); return its path and fd.

    A name taken already (by chance, or by someone who made it first) is skipped: the next
    try has a new random part.
    """
    for _ in range(_TRIES):
        path = _path(f"{stem}.{_random_hex(_RANDOM_BYTES)}")
        try:
            return path, os.open(path, _CREATE, 0o600)
        except FileExistsError:
            continue
    raise FileExistsError(f"{_TRIES} random names {stem}.* in {SHM_DIR} were all taken")


@contextlib.contextmanager
def _new_segment(stem: str, size: int) -> Iterator[tuple[str, int]]:
    """Create a segment named ``stem`` plus a random part (mode 0600); yield its name and
    fd to fill it.

    A full /dev/shm (checked first, then ENOSPC from the kernel) becomes
    ``SharedMemoryFullError``; on any failure the half-made segment is removed.
    """
    available = free_bytes()
    if size > available:
        raise SharedMemoryFullError(size, available, str(SHM_DIR))
    path, fd = _open_new(stem)
    try:
        try:
            yield path.name, fd
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


def create_segment(stem: str, nbytes: int) -> tuple[str, mmap.mmap]:
    """Create a segment (mode 0600) with ``nbytes`` reserved; return its name and mapping.

    Its name is ``stem`` (from ``segment_name``) plus a random part.

    Raises:
        SharedMemoryFullError: /dev/shm cannot hold it; nothing is left behind.
    """
    size = max(nbytes, 1)  # an empty array still needs something to map
    with _new_segment(stem, size) as (name, fd):
        # reserve every page now: on a full tmpfs this fails cleanly here, where an
        # ftruncate would succeed and the first write would crash the writer (SIGBUS)
        os.posix_fallocate(fd, 0, size)
        return name, mmap.mmap(fd, size)


def write_segment(stem: str, data: memoryview) -> str:
    """Create a segment (mode 0600) holding a copy of ``data`` (a byte view); return its
    name: ``stem`` (from ``message_segment``) plus a random part.

    The kernel copies straight into the segment's pages: no mapping, so no page fault per
    page, and a full /dev/shm fails the write with ENOSPC (a clean error, never SIGBUS).

    Raises:
        SharedMemoryFullError: /dev/shm cannot hold it; nothing is left behind.
    """
    size = data.nbytes
    with _new_segment(stem, size) as (name, fd):
        written = 0
        while written < size:
            written += os.pwrite(fd, data[written:], written)
        if size == 0:
            os.ftruncate(fd, 1)  # an empty buffer still needs something to map
    return name


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
    """Remove ``name`` from /dev/shm; mappings stay valid.

    Return False if it was gone, or is another user's that we may not remove (in the
    sticky /dev/shm only its owner may): cleanup goes on either way.
    """
    try:
        os.unlink(_path(name))
    except (FileNotFoundError, PermissionError):
        return False
    return True


def segment_name(run_id: str, kind: str) -> str:
    """The stem of the names of the run's segments ``kind`` (e.g. ``a3``, ``p<box>.<n>``).

    ``create_segment`` and ``write_segment`` add a random part to it.
    """
    return f"{PREFIX}{run_id}_{kind}"


def pool_prefix(owner: str) -> str:
    """The kind prefix of the pooled segments lent by incarnation ``owner``."""
    return f"p{owner}."


def message_prefix(box: str) -> str:
    """The kind prefix of segments holding arrays sent to incarnation ``box``."""
    return f"m{box}_"


def message_segment(run_id: str, box: str, sender_id: str, n: int) -> str:
    """The name stem of the ``n``-th segment ``sender_id`` writes for incarnation ``box``."""
    return segment_name(run_id, f"{message_prefix(box)}{sender_id}.{n}")


def segments_of(run_id: str, kind: str = "") -> list[str]:
    """Names of the segments of run ``run_id`` (of one kind, if given) now in /dev/shm.

    Only those this user owns: a file another user made under the run's names is theirs.
    """
    start = f"{PREFIX}{run_id}_{kind}"
    return [name for name in _owned(start) if _NAME.match(name)]


def _owned(start: str) -> list[str]:
    """Names in /dev/shm starting with ``start`` whose file this user owns (not followed)."""
    try:
        entries = list(os.scandir(SHM_DIR))
    except FileNotFoundError:
        return []
    uid = os.getuid()
    found = []
    for entry in entries:
        if not entry.name.startswith(start):
            continue
        with contextlib.suppress(OSError):  # gone meanwhile
            if entry.stat(follow_symlinks=False).st_uid == uid:
                found.append(entry.name)
    return found


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
    return [name for name in _owned(PREFIX) if run_of_segment(name) is not None]


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
