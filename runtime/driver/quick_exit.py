"""The script's own exit: one garbage collection, then none in the interpreter's teardown.

Runs in the script's process. At exit CPython collects the whole heap two or three times
while it tears the modules down, and after a run the heap holds asyncio, anyio, structlog
and the runtime: that teardown was the slowest step of a short job's exit. So, once the
script's own ``atexit`` handlers have run, the heap is collected once, which finalizes
every object that is garbage by then, and the survivors are frozen out of the later
collections. Python does not promise to finalize objects that are still alive at exit;
``ACTORS_QUICK_EXIT=0`` keeps the interpreter's own collections for a script that relies on
it anyway (an object in a reference cycle that flushes a file in ``__del__``, say).
"""

from __future__ import annotations

import atexit
import gc
import os

__all__ = ["ENV_QUICK_EXIT", "arrange_quick_exit", "quick_exit_is_on"]

ENV_QUICK_EXIT = "ACTORS_QUICK_EXIT"

_arranged = False


def arrange_quick_exit() -> None:
    """Collect once and freeze the heap at exit, unless ``ACTORS_QUICK_EXIT`` is off.

    Registered by the first runtime of the process, so ``atexit`` handlers registered
    later, the script's among them, run before it; the variable is read at exit.
    """
    global _arranged
    if not _arranged:
        _arranged = True
        atexit.register(_collect_then_freeze)


def quick_exit_is_on() -> bool:
    """Whether ``ACTORS_QUICK_EXIT`` lets the runtime freeze the script's heap (at exit, and
    when the runtime is imported: ``driver.import_heap``)."""
    return os.environ.get(ENV_QUICK_EXIT, "").strip().lower() not in {"0", "false", "no", "off"}


def _collect_then_freeze() -> None:
    if not quick_exit_is_on():
        return
    gc.collect()
    gc.freeze()
