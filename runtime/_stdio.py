"""The script's standard streams: flushed before a process ends or forks without Python's
own teardown (``os._exit``, ``os.fork``), where what they buffer would be lost or written
twice; and held open, so that no file or socket of the runtime takes their numbers.
"""

from __future__ import annotations

import contextlib
import os
import sys

__all__ = ["flush_stdio", "hold_stdio"]


def hold_stdio() -> None:
    """Open /dev/null on whichever of descriptors 0, 1 and 2 is closed.

    A script started with one closed (``2>&-``, some daemons and cron set-ups) would give
    that number to the next file or socket anything opens: the event loop's, or one of
    the runtime's sockets, which every actor process and child process would then
    inherit as its stdin, stdout or stderr, and C code, a child process or a crash report
    would write into. Called when the runtime is imported (normally before the event
    loop exists) and when it starts.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        null = os.open(os.devnull, os.O_RDWR)
        if null == fd:
            os.set_inheritable(fd, True)  # a child's stdio, as it would have been
        else:
            os.dup2(null, fd)
            os.close(null)


def flush_stdio() -> None:
    """Flush ``sys.stdout`` and ``sys.stderr``; one that is gone, closed or broken is left."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.flush()
