"""``record``: the slotted value and state classes of the runtime's internals.

A dataclass compiles half a dozen methods from source as its class is defined, and a
script that imports the runtime defines dozens of them before its first line runs. A
record compiles only its ``__init__`` and shares the rest, which makes it several times
cheaper to define. It behaves as ``@dataclass(frozen=True, slots=True)`` for what the
runtime uses (construction, equality and hashing by value, ``repr``, class patterns,
pickling, ``FrozenInstanceError``), or, with ``frozen=False``, as
``@dataclass(slots=True, eq=False)``: assignable fields, compared by identity. A field's
default may be ``dataclasses.field(default_factory=...)``. It is not a dataclass:
``dataclasses.fields`` and ``replace`` do not apply. Public types stay dataclasses.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import MISSING, Field, FrozenInstanceError, field
from typing import Any, TypeVar, dataclass_transform, overload

from ._compiled import compiled

__all__ = ["record", "replace"]

T = TypeVar("T", bound=type)
R = TypeVar("R")


@overload
def record(cls: T, /) -> T: ...
@overload
def record(*, kw_only: bool = False, frozen: bool = True) -> Callable[[T], T]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(
    cls: T | None = None, /, *, kw_only: bool = False, frozen: bool = True
) -> T | Callable[[T], T]:
    """Make ``cls`` a record of the fields it annotates, in their order.

    A field's class attribute is its default (a ``field(default_factory=...)`` makes a
    new one for each instance); fields without one come first, unless ``kw_only``, where
    every field is passed by name. Unless ``frozen``, fields can be assigned, and
    instances compare by identity.
    """

    def make(cls: T) -> T:
        return _make(cls, kw_only, frozen)

    return make if cls is None else make(cls)


def _make(cls: T, kw_only: bool, frozen: bool) -> T:
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
    namespace["__repr__"] = _repr
    if frozen:
        namespace.update(
            __setattr__=_setattr,
            __delattr__=_delattr,
            __eq__=_eq,
            __hash__=_hash,
            __reduce__=_reduce,
        )
    made: T = type(cls)(cls.__name__, cls.__bases__, namespace)
    return made


def _init(
    qualname: str, names: tuple[str, ...], defaults: dict[str, Any], kw_only: bool
) -> Callable[..., None]:
    factories: dict[str, Callable[[], Any]] = {}
    values: dict[str, Any] = {}
    for name, default in defaults.items():
        if isinstance(default, Field):
            if default.default_factory is not MISSING:
                factories[name] = default.default_factory
            elif default.default is not MISSING:
                values[name] = default.default
            else:
                raise TypeError(f"field {name!r} of {qualname}: give a default or a factory")
        else:
            values[name] = default
    parameters = ["*"] if kw_only and names else []
    lines = []
    for name in names:
        value = name
        if name in values:
            parameters.append(f"{name}=_defaults[{name!r}]")
        elif name in factories:
            parameters.append(f"{name}=_made")
            value = f"_factories[{name!r}]() if {name} is _made else {name}"
        else:
            parameters.append(name)
        lines.append(f"_set(self, {name!r}, {value})")
    body = "".join(f"\n    {line}" for line in lines or ["pass"])
    source = f"def __init__(self, {', '.join(parameters)}):{body}"
    scope: dict[str, Any] = {
        "_set": object.__setattr__,
        "_defaults": values,
        "_factories": factories,
        "_made": _MADE,
    }
    exec(compiled(source), scope)  # the names are a class body's annotations: identifiers
    init: Callable[..., None] = scope["__init__"]
    init.__qualname__ = f"{qualname}.__init__"
    return init


#: the default of a parameter whose field has a factory: the factory makes the value
_MADE: Any = object()


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
