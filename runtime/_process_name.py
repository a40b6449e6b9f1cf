"""The name a process goes by in ``ps -o comm``, ``top`` and ``/proc/<pid>/comm``.

The copies of the script the runtime makes (``driver/forkserver.py``) rename themselves,
so that they are not taken for the script; actor processes forked from the forkserver take
the script's name back (``ENV`` carries it).
"""

from __future__ import annotations

import contextlib
import os

__all__ = ["ENV", "restore_name", "set_name"]

#: the name actor processes take back: the script's, set by the forkserver it copied
ENV = "_ACTORS_PROCESS_NAME"


def set_name(name: str) -> None:
    """Rename the calling thread (a process's only one, where this is used); Linux keeps the
    first 15 bytes. Elsewhere, or if refused, the name stays."""
    with contextlib.suppress(OSError), open("/proc/thread-self/comm", "w") as comm:
        comm.write(name[:15])


def restore_name() -> None:
    """Take back the name ``ENV`` holds, if any (in an actor process)."""
    name = os.environ.pop(ENV, None)
    if name:
        set_name(name)
