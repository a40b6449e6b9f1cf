"""Loading the script's ``__main__`` inside actor processes, guard or no guard.

Actor classes defined in the user's script must exist in each actor process, so the
script is run there again, as multiprocessing does, under the name ``__mp_main__``. Unlike
multiprocessing, a script without an ``if __name__ == "__main__":`` guard works too: its
top level runs in a thread of its own, and when it enters ``Runtime()`` that thread
parks for good. The actor process goes on with everything defined until then, and no
code after that point runs there, whatever the script catches: no ``except`` handler, no
``finally`` block, no later line.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.machinery
import importlib.util
import multiprocessing.spawn
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

__all__ = [
    "MainImportStop",
    "importing_main",
    "in_actor_process_main_import",
    "install_main_import_hooks",
    "park_script",
    "prerun_main",
]

_importing_main = False
#: set by the thread re-running the script once it has parked, or ended
_rerun_done: threading.Event | None = None
_rerun_thread: threading.Thread | None = None


class MainImportStop(BaseException):
    """Raised by ``Runtime()`` where a module is imported only to define its classes.

    That is the forkserver importing the script's own modules ahead of the actor
    processes. A BaseException, so that ``except Exception`` cannot swallow it.
    """


def in_actor_process_main_import() -> bool:
    """Whether the script's top level (or one of its modules) is being run again here."""
    return _importing_main


def park_script() -> None:
    """Stop the script's re-run where it enters ``Runtime()``; never returns there.

    In the thread re-running the script's top level, tell the actor process that
    everything it needs is defined, and block that thread for good. Elsewhere (the
    forkserver importing the script's modules) raise ``MainImportStop``.
    """
    if threading.current_thread() is _rerun_thread and _rerun_done is not None:
        _rerun_done.set()
        threading.Event().wait()  # parked: nothing after this point runs here
    raise MainImportStop


@contextlib.contextmanager
def importing_main() -> Iterator[None]:
    """Inside: ``Runtime()`` raises ``MainImportStop`` (as while re-running the script)."""
    global _importing_main
    _importing_main = True
    try:
        yield
    finally:
        _importing_main = False


def _rerun(code: types.CodeType, namespace: dict[str, Any]) -> None:
    """Run ``code`` in ``namespace`` in a thread; return once it ended or parked."""
    global _importing_main, _rerun_done, _rerun_thread
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            exec(code, namespace)
        except MainImportStop:
            pass
        except BaseException as exc:  # the main thread raises it, as a plain run would
            failure.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=run, name="script-rerun", daemon=True)
    _rerun_done, _rerun_thread = done, thread
    _importing_main = True
    try:
        try:
            thread.start()
        except RuntimeError:
            # no thread to be had (the limit on processes and threads): here, then, where
            # a Runtime() at the top level stops the run rather than parks it
            run()
        done.wait()
    finally:
        _importing_main = False
    if failure:
        raise failure[0]


#: whether this forkserver is a copy of the script (``keep_inherited_main``)
_inherited_main = False


def keep_inherited_main() -> None:
    """In a forkserver that is a copy of the script: its actor processes keep the script's
    own ``__main__``, which they inherit, and load nothing again (a script read from stdin
    or given with ``-c`` has no file to load it from)."""
    global _inherited_main
    _inherited_main = True


def _fixup_main_from_path(main_path: str) -> None:
    if _inherited_main:
        return
    current_main = sys.modules["__main__"]
    if main_path.endswith(("__main__.py", "__main__.pyc")):
        return
    if getattr(current_main, "__file__", None) == main_path:
        return
    module = _main_module(None, main_path)
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module
    with open(main_path, "rb") as f:
        code = compile(f.read(), main_path, "exec")
    _rerun(code, module.__dict__)


def _fixup_main_from_name(mod_name: str) -> None:
    if _inherited_main:
        return
    if mod_name == "__main__" or mod_name.endswith(".__main__"):
        return
    current = getattr(sys.modules["__main__"], "__spec__", None)
    if current is not None and current.name == mod_name:
        return
    spec = importlib.util.find_spec(mod_name)
    if spec is None or spec.loader is None:
        raise ImportError(f"the script's module {mod_name} cannot be found in the actor process")
    code = spec.loader.get_code(mod_name)  # type: ignore[attr-defined]
    if code is None:
        raise ImportError(f"the script's module {mod_name} has no code to run")
    module = _main_module(spec, None)
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module
    _rerun(code, module.__dict__)


def _main_module(spec: importlib.machinery.ModuleSpec | None, path: str | None) -> types.ModuleType:
    """An empty ``__mp_main__`` for the script, from its module's spec or its file's path."""
    module = types.ModuleType("__mp_main__")
    if spec is not None:
        module.__dict__.update(
            __file__=spec.origin,
            __cached__=spec.cached,
            __loader__=spec.loader,
            __package__=spec.parent,
            __spec__=spec,
        )
    else:
        module.__file__ = path
    return module


def install_main_import_hooks() -> None:
    """Replace multiprocessing's main-module loaders in this (forkserver) process."""
    multiprocessing.spawn._fixup_main_from_path = _fixup_main_from_path  # type: ignore[attr-defined]
    multiprocessing.spawn._fixup_main_from_name = _fixup_main_from_name  # type: ignore[attr-defined]


def prerun_main(origin: dict[str, Any]) -> bool:
    """In the forkserver: run the script's top level once, if all it does is define.

    ``origin`` holds what multiprocessing gives each actor process about the script
    (``path`` or ``name``, and ``argv``). Every actor process forked afterwards finds the
    script run, and its own loader leaves it alone: nothing to read, compile, or run
    again, and no thread to run it in. A top level that does more than define (a call
    such as ``anyio.run(main)``, a loop, an import of a module not loaded here yet) is
    left to each actor process, as before: here it could start work or threads. Return
    whether the script ran here.
    """
    path, name = origin.get("path"), origin.get("name")
    spec = None
    try:
        if name:
            if name == "__main__" or name.endswith(".__main__"):
                return False  # multiprocessing runs these in no actor process either
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None or not spec.origin:
                return False
            source = spec.loader.get_source(name)  # type: ignore[attr-defined]
            filename = spec.origin
        elif path and not path.endswith(("__main__.py", "__main__.pyc")):
            with open(path, "rb") as f:
                source = f.read()
            filename = path
        else:
            return False
        tree = ast.parse(source, filename)
    except Exception:  # unreadable here: each actor process reports it as before
        return False
    if not _only_defines(tree.body):
        return False
    module = _main_module(spec, path)
    saved_main, saved_argv = sys.modules["__main__"], sys.argv
    sys.argv = list(origin.get("argv") or [filename])
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module
    try:
        with importing_main():
            exec(compile(tree, filename, "exec"), module.__dict__)
    except BaseException:  # MainImportStop or a failure: each actor process runs it
        sys.modules["__main__"] = saved_main
        sys.modules.pop("__mp_main__", None)
        return False
    finally:
        sys.argv = saved_argv
    return True


def _only_defines(body: list[ast.stmt]) -> bool:
    """Whether these statements only import loaded modules and define names."""
    for node in body:
        match node:
            case (
                ast.FunctionDef()
                | ast.AsyncFunctionDef()
                | ast.ClassDef()
                | ast.Assign()
                | ast.AnnAssign()
                | ast.Pass()
                | ast.Expr(value=ast.Constant())
            ):
                continue
            case ast.Import(names=names):
                if not all(_loaded(alias.name) for alias in names):
                    return False
            case ast.ImportFrom(module=str(module), names=names, level=0):
                if not _loaded(module) or not all(
                    alias.name == "*"
                    or hasattr(sys.modules[module], alias.name)
                    or _loaded(f"{module}.{alias.name}")
                    for alias in names
                ):
                    return False
            case ast.If(test=test, body=then, orelse=orelse):
                if _is_main_guard(test):
                    if not _only_defines(orelse):  # the guarded block never runs here
                        return False
                elif any(isinstance(n, ast.Call) for n in ast.walk(test)) or not (
                    _only_defines(then) and _only_defines(orelse)
                ):
                    return False
            case ast.Try(body=tried, handlers=handlers, orelse=orelse, finalbody=final):
                blocks = [tried, orelse, final, *(h.body for h in handlers)]
                if not all(_only_defines(block) for block in blocks):
                    return False
            case _:
                return False
    return True


def _loaded(name: str) -> bool:
    return sys.modules.get(name) is not None


def _is_main_guard(test: ast.expr) -> bool:
    """``__name__ == "__main__"``, either way round."""
    match test:
        case ast.Compare(left=left, ops=[ast.Eq()], comparators=[right]):
            sides = {type(left), type(right)}
            if sides != {ast.Name, ast.Constant}:
                return False
            name, constant = (left, right) if isinstance(left, ast.Name) else (right, left)
            return bool(
                name.id == "__name__"  # type: ignore[attr-defined]
                and constant.value == "__main__"  # type: ignore[attr-defined]
            )
    return False
