"""Importing dependencies without the parts of them we never use.

What every script imports is the runtime's fixed cost, paid before its first actor can
start, and the forkserver's copy and every actor process inherit it. Two dependencies
load large parts we have no use for:

- structlog imports rich, when installed, for pretty console tracebacks and the reprs of
  local variables, and colorama for colours on Windows consoles. Our logs are JSON lines
  without locals. So when neither is loaded yet, structlog is imported as if they were
  absent (colorama only off Windows, where structlog's colours do not need it). The cost
  to a script that also renders its own structlog output to a console: its exceptions
  there are formatted plainly, unless it imports structlog (or rich) before ``runtime``.
  Only a process with one thread hides them: another thread would find them absent too.
- aiomultiprocess imports ``multiprocessing.managers`` (and with it
  ``multiprocessing.shared_memory``, ``secrets`` and ``hashlib``) for the manager process
  of its pools and queues, and for one return annotation. We use its ``Process`` alone and
  start no manager (``driver.process_host.install_no_manager``). So while aiomultiprocess
  is imported, and only then, that module is a stand-in; a later
  ``import multiprocessing.managers`` loads the real one, as usual. Only a process with one
  thread gets the stand-in: another thread importing that module meanwhile would keep it.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["without_managers", "without_rich"]

_MANAGERS = "multiprocessing.managers"


@contextmanager
def without_rich() -> Iterator[None]:
    """Within the block, ``import rich`` (and ``import colorama`` off Windows) raises
    ImportError, unless structlog or that package is loaded already, or another thread
    runs (it would get the ImportError too); afterwards they import as usual (our viewer
    uses rich)."""
    if "structlog" in sys.modules or threading.active_count() > 1:
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


class _NoSyncManager:
    """What aiomultiprocess's ``get_manager`` annotation names instead of ``SyncManager``."""


@contextmanager
def without_managers() -> Iterator[None]:
    """Within the block, ``multiprocessing.managers`` is a stand-in, unless aiomultiprocess
    or the real module is loaded already, or another thread runs; afterwards neither
    ``sys.modules`` nor the ``multiprocessing`` package holds the stand-in."""
    loaded = _MANAGERS in sys.modules or "aiomultiprocess" in sys.modules
    if loaded or threading.active_count() > 1:
        yield
        return
    stand_in = types.ModuleType(_MANAGERS, "a stand-in while aiomultiprocess is imported")
    stand_in.SyncManager = _NoSyncManager  # type: ignore[attr-defined]
    sys.modules[_MANAGERS] = stand_in
    # ``import a.b`` of a module found in sys.modules does not set the attribute on ``a``
    multiprocessing.managers = stand_in
    try:
        yield
    finally:
        if sys.modules.get(_MANAGERS) is stand_in:
            del sys.modules[_MANAGERS]
        if getattr(multiprocessing, "managers", None) is stand_in:
            del multiprocessing.managers
