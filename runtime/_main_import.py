"""Loading the script's ``__main__`` inside actor processes, guard or no guard.

Actor classes defined in the user's script must exist in each actor process, so the
script is run there again, as multiprocessing does, under the name ``__mp_main__``. Unlike
multiprocessing, a script without an ``if __name__ == "__main__":`` guard works too: when
its top level reaches ``Runtime()``, the run stops there, keeping everything it defined.
"""

from __future__ import annotations

import contextlib
import multiprocessing.spawn
import runpy
import sys
import types
from collections.abc import Iterator

__all__ = [
    "MainImportStop",
    "importing_main",
    "in_actor_process_main_import",
    "install_main_import_hooks",
]

_importing_main = False


class MainImportStop(BaseException):
    """Raised by ``Runtime()`` in an actor process that is re-running the user's script.

    A BaseException, so that the script's own ``except Exception`` cannot swallow it.
    """


def in_actor_process_main_import() -> bool:
    return _importing_main


@contextlib.contextmanager
def importing_main() -> Iterator[None]:
    """Inside: ``Runtime()`` raises ``MainImportStop`` (as while re-running the script)."""
    global _importing_main
    _importing_main = True
    try:
        yield
    finally:
        _importing_main = False


def _fixup_main_from_path(main_path: str) -> None:
    global _importing_main
    current_main = sys.modules["__main__"]
    if main_path.endswith(("__main__.py", "__main__.pyc")):
        return
    if getattr(current_main, "__file__", None) == main_path:
        return
    module = types.ModuleType("__mp_main__")
    module.__file__ = main_path
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module
    with open(main_path, "rb") as f:
        code = compile(f.read(), main_path, "exec")
    _importing_main = True
    try:
        exec(code, module.__dict__)
    except MainImportStop:
        pass
    finally:
        _importing_main = False


def _fixup_main_from_name(mod_name: str) -> None:
    global _importing_main
    if mod_name == "__main__" or mod_name.endswith(".__main__"):
        return
    if getattr(sys.modules["__main__"], "__spec__", None) is not None and (
        sys.modules["__main__"].__spec__.name == mod_name  # type: ignore[union-attr]
    ):
        return
    module = types.ModuleType("__mp_main__")
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module
    _importing_main = True
    try:
        module.__dict__.update(runpy.run_module(mod_name, run_name="__mp_main__", alter_sys=False))
    except MainImportStop:
        pass
    finally:
        _importing_main = False


def install_main_import_hooks() -> None:
    """Replace multiprocessing's main-module loaders in this (forkserver) process."""
    multiprocessing.spawn._fixup_main_from_path = _fixup_main_from_path  # type: ignore[attr-defined]
    multiprocessing.spawn._fixup_main_from_name = _fixup_main_from_name  # type: ignore[attr-defined]
