"""The seam between refs and the machinery that delivers their messages.

``actors`` never imports ``runtime``: the runtime installs a router for the process it runs
in (the script's process, or an actor's process), and refs look it up when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ._errors import RuntimeClosedError

if TYPE_CHECKING:
    from ._ref import ActorRef

__all__ = ["Router", "collecting_refs", "current_router", "install_router", "note_unpickled_ref"]


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


def current_router() -> Router:
    """Return this process's router, or explain why there is none."""
    if _router is None:
        raise RuntimeClosedError("no actor runtime is running in this process")
    return _router


_collected: list[ActorRef] | None = None


def note_unpickled_ref(ref: ActorRef) -> None:
    """Called when a ref is unpickled, so the runtime can connect to it ahead of use."""
    if _collected is not None:
        _collected.append(ref)


class collecting_refs:  # noqa: N801 - used like a function: with collecting_refs() as refs
    """Collect the refs unpickled inside the ``with`` block (not reentrant).

    A class rather than a generator context manager: it runs once per received message.
    """

    __slots__ = ("refs",)

    def __init__(self) -> None:
        self.refs: list[ActorRef] = []

    def __enter__(self) -> list[ActorRef]:
        global _collected
        _collected = self.refs
        return self.refs

    def __exit__(self, *exc_info: object) -> None:
        global _collected
        _collected = None
