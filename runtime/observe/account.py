"""Account: an incarnation's message counts and signs of life, in a file both sides map.

The actor process maps a small file in the run directory and stores each count there as
it changes; the driver reads the file once the process has ended, however it ended. So
the report's counts include incarnations that were killed, with no message to the driver.

The same file tells the driver, while the actor runs, whether its event loop is waiting
for something to do, how many turns it has made, and which message it is handling: the
hang watchdog reads these instead of heartbeats, so an idle actor is never woken.
"""

from __future__ import annotations

import functools
import mmap
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from actors._record import record

__all__ = [
    "DEAD_LETTERED",
    "FAILED",
    "HANDLED",
    "HANDLING",
    "IN_DOUBT",
    "LOOP_TURNS",
    "LOOP_WAITING",
    "Account",
    "Counts",
    "Liveness",
    "LivenessReader",
    "account_path",
    "counts_from_log",
    "read_account",
]

#: the cells of an account, in order: the counts, then the signs of life (``Liveness``)
HANDLED, FAILED, DEAD_LETTERED, IN_DOUBT, LOOP_WAITING, LOOP_TURNS, HANDLING = range(7)
_COUNTS = 4
_CELLS = 7
_SIZE = 8 * _CELLS


@record
class Counts:
    """What one incarnation counted."""

    handled: int = 0
    failed: int = 0
    dead_lettered: int = 0
    in_doubt: int = 0


def account_path(run_dir: str | os.PathLike[str], box: str) -> Path:
    """Where incarnation ``box`` keeps its account."""
    return Path(run_dir) / "accounts" / box


class Account:
    """The writing side, in the actor process: ``cells[HANDLED] = n`` and so on."""

    def __init__(self, path: Path | None) -> None:
        """``path`` None: counts kept in memory only (nobody reads them after the end)."""
        if path is None:
            self._map = mmap.mmap(-1, _SIZE)
        else:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                # its page taken now: in a full /dev/shm a first store would be a SIGBUS
                os.posix_fallocate(fd, 0, _SIZE)
                self._map = mmap.mmap(fd, _SIZE)
            finally:
                os.close(fd)
        #: one signed 64-bit cell per count; a store is all a count costs
        self.cells = memoryview(self._map).cast("q")

    def counts(self) -> Counts:
        return Counts(*self.cells[:_COUNTS])


@record
class Liveness:
    """What an actor's account says of its event loop and its handler, right now."""

    #: its event loop waits for something to do (in epoll): it cannot be hung
    waiting: bool
    #: turns its event loop has made: a loop stuck in one callback makes none
    turns: int
    #: the number of the message its handler is on (from 1), or 0 between messages
    handling: int


class LivenessReader:
    """The driver's read-only view of a running actor's account.

    The driver holds one per running local actor, so it maps the file without keeping a
    descriptor: Python's ``mmap`` keeps a duplicate of the file's descriptor for as long
    as the map lives, one more descriptor per actor (``trackfd=False`` from 3.13 only).
    """

    def __init__(self, path: Path) -> None:
        """Raises OSError if the account is not there (the actor made none)."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._map: _ReadOnlyMap | None = _ReadOnlyMap(fd)
        finally:
            os.close(fd)

    def read(self) -> Liveness:
        if self._map is None:
            raise ValueError("this account reader is closed")
        cells = self._map.cells
        return Liveness(bool(cells[LOOP_WAITING]), cells[LOOP_TURNS], cells[HANDLING])

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None


class _ReadOnlyMap:
    """An account's cells, mapped read-only and shared, holding no descriptor."""

    #: indexed like the account's cells; empty once closed
    cells: Any

    def __init__(self, fd: int) -> None:
        if sys.version_info >= (3, 13):
            self._mmap = mmap.mmap(fd, _SIZE, prot=mmap.PROT_READ, trackfd=False)
            self._view = memoryview(self._mmap).cast("q")
            self.cells = self._view
            return
        import ctypes

        libc = _libc()
        address = libc.mmap(None, _SIZE, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address is None or address == ctypes.c_void_p(-1).value:
            errno = ctypes.get_errno()
            raise OSError(errno, f"mapping the account: {os.strerror(errno)}")
        self._address: int = address
        self.cells = (ctypes.c_int64 * _CELLS).from_address(address)

    def close(self) -> None:
        if sys.version_info >= (3, 13):
            self._view.release()
            self._mmap.close()
        else:
            # the cells go first: read after the unmap, they would crash the process
            self.cells = ()
            _libc().munmap(self._address, _SIZE)


@functools.cache
def _libc() -> Any:
    """The C library's ``mmap`` and ``munmap``, typed (on Python before 3.13)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    )
    libc.munmap.restype = ctypes.c_int
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    return libc


def read_account(path: Path, *, remove: bool = True) -> Counts | None:
    """The counts an ended incarnation left at ``path`` (None if it made no account)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if remove:
        path.unlink(missing_ok=True)
    if len(data) != _SIZE:
        return None
    return Counts(*memoryview(data).cast("q")[:_COUNTS])


def counts_from_log(path: Path) -> Counts | None:
    """Count what an incarnation's own log says it handled, failed and dead-lettered.

    For an incarnation that was killed with tracing on: its log, which users inspect, is
    then the record, and a kill between writing a line and storing a count cannot make
    the two disagree. A line cut short by the kill is skipped, as the viewer skips it.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    handled = failed = dead = in_doubt = 0
    for line in data.splitlines():
        if b'"message.' not in line:
            continue
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        name = event.get("event")
        if name == "message.handled":
            handled += 1
        elif name == "message.failed":
            failed += 1
        elif name == "message.dead_lettered":
            if event.get("reason") == "in_doubt":
                in_doubt += 1
            else:
                dead += 1
    return Counts(handled, failed, dead, in_doubt)
