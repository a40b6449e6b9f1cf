"""``record``: the frozen, slotted value classes of the runtime's internals.

A frozen slotted dataclass compiles half a dozen methods from source as its class is
defined, and a script that imports the runtime defines dozens of them before its first
line runs. A record compiles only its ``__init__`` and shares the rest, which makes it
several times cheaper to define. It behaves as ``@dataclass(frozen=True, slots=True)``
for what the runtime uses (construction, equality and hashing by value, ``repr``, class
patterns, pickling, ``FrozenInstanceError``), but it is not a dataclass:
``dataclasses.fields`` and ``replace`` do not apply. Public types stay dataclasses.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import FrozenInstanceError
from typing import Any, TypeVar, dataclass_transform, overload

__all__ = ["record", "replace"]

T = TypeVar("T", bound=type)
R = TypeVar("R")


@overload
def record(cls: T, /) -> T: ...
@overload
def record(*, kw_only: bool = False) -> Callable[[T], T]: ...


@dataclass_transform(frozen_default=True)
def record(cls: T | None = None, /, *, kw_only: bool = False) -> T | Callable[[T], T]:
    """Make ``cls`` a frozen record of the fields it annotates, in their order.

    A field's class attribute is its default; fields without one come first, unless
    ``kw_only``, where every field is passed by name.
    """

    def make(cls: T) -> T:
        return _make(cls, kw_only)

    return make if cls is None else make(cls)


def _make(cls: T, kw_only: bool) -> T:
    names = tuple(inspect.get_annotations(cls))
    defaults = {name: cls.__dict__[name] for name in names if name in cls.__dict__}
    namespace = {
        key: value
        for key, value in cls.__dict__.items()
        if key not in defaults and key not in ("__dict__", "__weakref__")
    }
    namespace["__slots__"] = names
    namespace["__match_args__"] = () if kw_only else names
    namespace["__init__"] = _init(cls.__qualname__, names, defaults, kw_only)
    namespace.update(
        __setattr__=_setattr,
        __delattr__=_delattr,
        __eq__=_eq,
        __hash__=_hash,
        __repr__=_repr,
        __reduce__=_reduce,
    )
    made: T = type(cls)(cls.__name__, cls.__bases__, namespace)
    return made


def _init(
    qualname: str, names: tuple[str, ...], defaults: dict[str, Any], kw_only: bool
) -> Callable[..., None]:
    parameters = [f"{name}=_defaults[{name!r}]" if name in defaults else name for name in names]
    if kw_only and parameters:
        parameters.insert(0, "*")
    body = "".join(f"\n    _set(self, {name!r}, {name})" for name in names) or "\n    pass"
    source = f"def __init__(self, {', '.join(parameters)}) -> None:{body}"
    scope: dict[str, Any] = {"_set": object.__setattr__, "_defaults": defaults}
    exec(source, scope)  # the names are a class body's annotations: identifiers
    init: Callable[..., None] = scope["__init__"]
    init.__qualname__ = f"{qualname}.__init__"
    return init


def _values(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, name) for name in self.__slots__)


def _setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _eq(self: Any, other: object) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _values(self) == _values(other)


def _hash(self: Any) -> int:
    return hash(_values(self))


def _repr(self: Any) -> str:
    fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
    return f"{self.__class__.__qualname__}({fields})"


def _reduce(self: Any) -> tuple[Any, ...]:
    return _rebuild, (self.__class__, _values(self))


def _rebuild(cls: type, values: tuple[Any, ...]) -> Any:
    made: Any = object.__new__(cls)
    for name, value in zip(cls.__slots__, values, strict=True):  # type: ignore[attr-defined]
        object.__setattr__(made, name, value)
    return made


def replace(made: R, /, **changes: Any) -> R:
    """A copy of record ``made`` with ``changes``, as ``dataclasses.replace`` makes."""
    values = {name: getattr(made, name) for name in made.__slots__}  # type: ignore[attr-defined]
    values.update(changes)
    return type(made)(**values)
