"""Cross-process locks that free themselves when their holder dies: ``flock`` on lock files.

``multiprocessing.Lock`` and ``Semaphore`` stay held forever when their holder is killed.
A ``flock`` belongs to an open file description, and the kernel drops it when the holder's
process ends, however it ends (design notes 5.2). Each lock file also records who holds it
and whether a write is under way, so the next holder can tell that the previous one died
mid-write: a lock that is free while the record says "held" was freed by a death.

Waiting polls ``LOCK_NB`` with a short backoff under a deadline, so it never blocks the
event loop and a cancelled wait never leaves a lock taken behind our back.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from pathlib import Path

import anyio

from actors import LockTimeoutError, StaleHandleError

__all__ = ["DIRTY", "FREED", "LockFile", "LockState", "poll_until"]

_STATE = struct.Struct("<qqq")  # holder pid, completed writes (epoch), flags
#: flag: a holder is writing; still set when the lock is free means that holder died
DIRTY = 1
#: flag: the array or semaphore was freed; the handle is stale
FREED = 2

_FIRST_DELAY = 0.0001
_MAX_DELAY = 0.005

LockState = tuple[int, int, int]


class LockFile:
    """One lock file as opened by this process (one open file description per process)."""

    def __init__(self, path: Path, what: str, *, create: bool = False) -> None:
        self.path = path
        self.what = what
        flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
        if create:
            flags |= os.O_CREAT | os.O_EXCL
        try:
            self.fd = os.open(path, flags, 0o600)
        except FileNotFoundError:
            raise StaleHandleError(what, "it was freed or its run has ended") from None
        if create:
            os.pwrite(self.fd, _STATE.pack(0, 0, 0), 0)
        #: tasks of this process holding or waiting for the lock (flock is per process)
        self.local = anyio.Lock(fast_acquire=True)
        self.held = False

    def try_lock(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        self.held = True
        return True

    def unlock(self) -> None:
        self.held = False
        fcntl.flock(self.fd, fcntl.LOCK_UN)

    def read(self) -> LockState:
        data = os.pread(self.fd, _STATE.size, 0)
        if len(data) < _STATE.size:
            return (0, 0, 0)
        pid, epoch, flags = _STATE.unpack(data)
        return pid, epoch, flags

    def write(self, pid: int, epoch: int, flags: int) -> None:
        os.pwrite(self.fd, _STATE.pack(pid, epoch, flags), 0)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # also drops a flock still held by this process
            self.fd = -1


async def poll_until(
    attempt: LockFile | list[LockFile], what: object, timeout: float, asked: float | None = None
) -> LockFile:
    """Take one of the lock files (the first free one), waiting up to ``timeout`` seconds.

    Raises:
        LockTimeoutError: none was free in time (naming ``asked``, the caller's timeout).
    """
    files = attempt if isinstance(attempt, list) else [attempt]
    delay = _FIRST_DELAY
    try:
        with anyio.fail_after(timeout):
            while True:
                for lock in files:
                    if not lock.held and lock.try_lock():
                        return lock
                await anyio.sleep(delay)
                delay = min(delay * 2, _MAX_DELAY)
    except TimeoutError:
        raise LockTimeoutError(repr(what), timeout if asked is None else asked) from None
