"""The seam between refs and the machinery that delivers their messages.

``actors`` never imports ``runtime``: the runtime installs a router for the process it runs
in (the script's process, or an actor's process), and refs look it up when used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ._errors import RuntimeClosedError

if TYPE_CHECKING:
    from ._ref import ActorRef

__all__ = [
    "Router",
    "current_router",
    "install_router",
    "note_unpickled_ref",
    "router_installed",
    "unpickling_refs",
]


class Router(Protocol):
    """Delivers messages for every ref used in this process."""

    async def tell(self, ref: ActorRef, message: object) -> None: ...

    def tell_nowait(self, ref: ActorRef, message: object) -> None: ...

    async def ask(self, ref: ActorRef, message: object, timeout: float) -> Any: ...


_router: Router | None = None


def install_router(router: Router | None) -> None:
    """Make ``router`` deliver for every ref in this process (``None`` uninstalls)."""
    global _router
    _router = router


def router_installed() -> bool:
    """Whether a runtime (the script's or an actor's) delivers messages in this process."""
    return _router is not None


def current_router() -> Router:
    """Return this process's router, or explain why there is none."""
    if _router is None:
        raise RuntimeClosedError("no actor runtime is running in this process")
    return _router


_collected: list[ActorRef] | None = None
_T = TypeVar("_T")


def note_unpickled_ref(ref: ActorRef) -> None:
    """Called when a ref is unpickled, so the runtime can connect to it ahead of use."""
    if _collected is not None:
        _collected.append(ref)


def unpickling_refs(load: Callable[[bytes], _T], data: bytes) -> tuple[_T, list[ActorRef]]:
    """Run ``load(data)``; return its result and the refs unpickled meanwhile.

    One call rather than a context manager: it runs once per received message.
    """
    global _collected
    refs: list[ActorRef] = []
    _collected = refs
    try:
        value = load(data)
    finally:
        _collected = None
    return value, refs
