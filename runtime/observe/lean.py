"""Importing structlog without rich, which it would load for features we never use.

structlog imports rich, when installed, for pretty console tracebacks and the reprs of
local variables. Our logs are JSON lines without locals, and rich is the larger part of
structlog's import time, paid by the script and by the forkserver before the first actor
can start. So when neither is loaded yet, structlog is imported as if rich were absent.
The cost to a script that also renders its own structlog output to a console: its
exceptions there are formatted plainly, unless it imports structlog (or rich) before
``runtime``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["without_rich"]


@contextmanager
def without_rich() -> Iterator[None]:
    """Within the block, ``import rich`` raises ImportError, unless rich or structlog is
    loaded already; afterwards rich imports as usual (our viewer uses it)."""
    if "rich" in sys.modules or "structlog" in sys.modules:
        yield
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # the import system's "absent"
    try:
        yield
    finally:
        if sys.modules.get("rich", 0) is None:
            del sys.modules["rich"]
