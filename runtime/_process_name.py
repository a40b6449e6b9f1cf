"""The name a process goes by in ``ps -o comm``, ``top`` and ``/proc/<pid>/comm``.

The forkserver copied from the script renames itself, so that it is not taken for the
script; actor processes forked from it take the script's name back (``ENV`` carries it).
"""

from __future__ import annotations

import contextlib
import os

__all__ = ["ENV", "restore_name", "set_name"]

#: the name actor processes take back: the script's, set by the forkserver it copied
ENV = "_ACTORS_PROCESS_NAME"
#: Linux's prctl option that names the calling thread (a process's only one, here)
_PR_SET_NAME = 15


def set_name(name: str) -> None:
    """Rename this process (its calling thread); Linux keeps the first 15 bytes."""
    with contextlib.suppress(Exception):  # not Linux, or no libc to call: keep the name
        import ctypes  # here: only the forkserver and its actors rename themselves

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def restore_name() -> None:
    """Take back the name ``ENV`` holds, if any (in an actor process)."""
    name = os.environ.pop(ENV, None)
    if name:
        set_name(name)
