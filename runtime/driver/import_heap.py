"""What loading the runtime's modules does to the script's garbage collector.

Runs in the script's process, once, while ``from runtime import Runtime`` loads the driver.
The import makes some 40,000 objects (asyncio, anyio, structlog, the runtime) that live as
long as their modules, and every full collection after it, the one at exit among them,
walks them all. So the collector is paused while they load, and afterwards:

- when the script is still importing its modules (each frame up the stack is a module's
  top level or the import machinery, down to ``__main__``'s), what exists is the script's
  long-lived set: the garbage is collected once, then the rest is frozen
  (``gc.freeze``), and no later collection walks it again;
- otherwise (a function, a notebook, a test runner, an interactive session), the objects
  are only moved to the oldest generation: the script's older objects may still become
  garbage, and must stay collectable.

A script that froze objects itself, or turned the collector off (it keeps its garbage for
a collection of its own), gets no freeze, and the collector is left on or off as it was.
``ACTORS_QUICK_EXIT=0`` turns the freeze off, as it turns off the quick exit. Frozen objects
are left out of ``gc.get_objects()`` (getting-started.md says so to users).
"""

from __future__ import annotations

import gc
import importlib
import sys
from types import FrameType, ModuleType

from actors._compiled import compiled_methods

from .quick_exit import quick_exit_is_on

__all__ = ["import_quietly"]

#: the import machinery's and runpy's frames (``python -m``) between module bodies
_MACHINERY = ("<frozen importlib", "<frozen runpy>", importlib.__file__)


def import_quietly(name: str, package: str, importer: FrameType | None) -> ModuleType:
    """``importlib.import_module(name, package)`` with the collector paused, then settled
    as the module docstring says; ``importer`` is the frame that asked for it."""
    collecting = gc.isenabled()
    freeze = (
        collecting
        and not gc.get_freeze_count()
        and quick_exit_is_on()
        and _script_is_importing(importer)
    )
    if freeze:
        gc.collect()  # what is garbage already must not be frozen with the rest
    gc.disable()
    try:
        with compiled_methods():
            module = importlib.import_module(name, package)
    finally:
        if freeze:
            gc.freeze()
        elif not gc.get_freeze_count():
            # the young generations' collections would walk it all again: moved to the oldest
            gc.freeze()
            gc.unfreeze()
        if collecting:
            gc.enable()
    return module


def _script_is_importing(frame: FrameType | None) -> bool:
    """Whether every frame from ``frame`` out is a module's top level or the import
    machinery, the outermost being the top level of a script run from a file."""
    main = sys.modules.get("__main__")
    if main is None or not getattr(main, "__file__", None) or sys.flags.interactive:
        return False
    outermost = None
    while frame is not None:
        code = frame.f_code
        if code.co_name != "<module>" and not code.co_filename.startswith(_MACHINERY):
            return False
        if code.co_name == "<module>":
            outermost = frame
        frame = frame.f_back
    return outermost is not None and outermost.f_globals is vars(main)
