"""Flushing the script's standard streams before a process ends or forks without Python's
own teardown (``os._exit``, ``os.fork``): what they buffer would be lost, or written twice.
"""

from __future__ import annotations

import contextlib
import sys

__all__ = ["flush_stdio"]


def flush_stdio() -> None:
    """Flush ``sys.stdout`` and ``sys.stderr``; one that is gone, closed or broken is left."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.flush()
