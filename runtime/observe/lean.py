"""Importing structlog without rich and colorama, which it loads for features we never use.

structlog imports rich, when installed, for pretty console tracebacks and the reprs of
local variables, and colorama for colours on Windows consoles. Our logs are JSON lines
without locals, and these are a large part of structlog's import time, paid by every
script before its first actor can start. So when neither is loaded yet, structlog is
imported as if they were absent (colorama only off Windows, where structlog's colours
do not need it). The cost to a script that also renders its own structlog output to a
console: its exceptions there are formatted plainly, unless it imports structlog (or
rich) before ``runtime``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["without_rich"]


@contextmanager
def without_rich() -> Iterator[None]:
    """Within the block, ``import rich`` (and ``import colorama`` off Windows) raises
    ImportError, unless structlog or that package is loaded already; afterwards they
    import as usual (our viewer uses rich)."""
    if "structlog" in sys.modules:
        yield
        return
    hidden = [name for name in ("rich", "colorama") if name not in sys.modules]
    if sys.platform == "win32" and "colorama" in hidden:
        hidden.remove("colorama")
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system's "absent"
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
