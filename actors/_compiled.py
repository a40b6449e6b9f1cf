"""The methods that class decorators write as source, compiled once per installation.

A dataclass compiles its methods from source text as its class is defined, and so does a
``record``'s ``__init__``. Importing the runtime defines dozens of such classes (ours,
anyio's and structlog's), each time a script starts, and compiling their methods is a
large share of the import's own work, the same work at every start.

So within ``compiled_methods()``, which wraps the imports of ``actors`` and of the
runtime, a source text compiled once is kept with its code object, and the collection is
written next to our ``.pyc`` files, as Python writes those: not when
``sys.dont_write_bytecode`` is set, and in ``sys.pycache_prefix`` if one is. A later
process loads it instead of compiling. The code is keyed by its exact source text and the
interpreter's bytecode magic number, so it is always what ``compile`` would make, in
every process that reads it; an unreadable, foreign or stale-format file is ignored. It
is trusted as a ``.pyc`` is, and so only read when it belongs to us or to root and nobody
else may write it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import marshal
import os
import sys
from collections.abc import Iterator
from types import CodeType
from typing import Any

__all__ = ["compiled", "compiled_methods"]

#: the file's first bytes: our format, then the bytecode's (``.pyc`` files' magic number)
_HEADER = b"actors-compiled-1\n" + importlib.util.MAGIC_NUMBER
#: past this many entries the file keeps only those the last process used
_MAX_ENTRIES = 2000

_code: dict[str, CodeType] | None = None  # loaded on first use
_used: set[str] = set()
_added = False
_depth = 0
_real_exec: Any = None


def compiled(source: str) -> CodeType:
    """``compile(source, "<string>", "exec", dont_inherit=True)``, kept."""
    global _added
    cache = _cache()
    code = cache.get(source)
    if code is None:
        code = cache[source] = compile(source, "<string>", "exec", dont_inherit=True)
        _added = True
    _used.add(source)
    return code


@contextlib.contextmanager
def compiled_methods() -> Iterator[None]:
    """Within the block, dataclasses compile their methods through ``compiled``; at the
    end of the outermost block, new code is written for the next process."""
    global _depth, _real_exec
    if _depth == 0:
        _real_exec = dataclasses.__dict__.get("exec")  # none: the builtin
        # the module's own name first, then builtins: this shadows exec there alone
        dataclasses.exec = _exec  # type: ignore[attr-defined]
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            if _real_exec is None:
                del dataclasses.exec  # type: ignore[attr-defined]
            else:
                dataclasses.exec = _real_exec  # type: ignore[attr-defined]
            _save()


def _exec(source: Any, globals: Any = None, locals: Any = None, /) -> None:
    # dataclasses.py has no __future__ imports: its exec compiles with no flags
    exec(compiled(source) if type(source) is str else source, globals, locals)


def _path() -> str | None:
    try:
        pyc = importlib.util.cache_from_source(__file__)
    except (NotImplementedError, ValueError):  # no cache tag: this interpreter keeps none
        return None
    return pyc[: -len(".pyc")] + ".methods"


def _cache() -> dict[str, CodeType]:
    global _code
    if _code is None:
        _code = _load()
    return _code


def _load() -> dict[str, CodeType]:
    path = _path()
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_uid not in (0, os.getuid()) or st.st_mode & 0o022:
                return {}  # someone else could have written it
            data = f.read()
        if not data.startswith(_HEADER):
            return {}
        code = marshal.loads(data[len(_HEADER) :])
    except (OSError, ValueError, EOFError, TypeError):  # absent, unreadable or truncated
        return {}
    return code if isinstance(code, dict) else {}


def _save() -> None:
    global _added
    path = _path()
    if not _added or path is None or sys.dont_write_bytecode:
        return
    _added = False
    code = _cache()
    if len(code) > _MAX_ENTRIES:  # what older versions of our modules or deps made
        code = {key: value for key, value in code.items() if key in _used}
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with open(fd, "wb") as f:
            f.write(_HEADER + marshal.dumps(code))
        os.replace(temporary, path)  # whole or not at all, for concurrent readers
    except (OSError, ValueError):  # a read-only installation: compile each time
        with contextlib.suppress(OSError):
            os.unlink(temporary)
