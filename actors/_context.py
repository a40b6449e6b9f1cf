"""ActorContext: what an actor can ask of the runtime that hosts it."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Protocol

import numpy.typing as npt

from ._supervision import Backoff, OnError, RestartType, Strategy, Supervisor

if TYPE_CHECKING:
    from ._actor import Actor
    from ._ref import ActorRef
    from ._shared import SharedArray, SharedSemaphore

__all__ = ["ActorContext", "Timer"]


class Timer(Protocol):
    """A scheduled message to oneself; cancelled by ``cancel()`` or when the actor stops."""

    def cancel(self) -> None:
        """Send nothing more (a message already in the mailbox stays there)."""
        ...


class ActorContext(Protocol):
    """The runtime's services, reachable from inside an actor as ``self.context``.

    The runtime process stays the only one that starts OS processes: ``spawn`` here asks
    it to start the child and returns the ref once the child runs.
    """

    @property
    def run_id(self) -> str:
        """The id of the run this actor belongs to (it names the log directory)."""
        ...

    async def spawn(
        self,
        actor_class: type[Actor],
        *args: Any,
        name: str | None = None,
        mailbox_size: int | None = None,
        restart: RestartType = "permanent",
        on_error: OnError = "crash",
        supervisor: Supervisor | None = None,
        message_deadline: float | None = None,
        hang_timeout: float | None = None,
        **kwargs: Any,
    ) -> ActorRef:
        """Start a new actor, as ``Runtime.spawn`` does.

        Without ``supervisor`` the child belongs to this actor: it is supervised under
        this actor's own ``one_for_one`` supervisor and stopped when this incarnation
        ends (before this actor's own ``on_stop``).
        """
        ...

    async def supervisor(
        self,
        name: str | None = None,
        *,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        period: float = 5.0,
        backoff: Backoff | None = None,
        supervisor: Supervisor | None = None,
    ) -> Supervisor:
        """Create a supervisor owned by this actor (or under ``supervisor``)."""
        ...

    async def lookup(self, name: str) -> ActorRef:
        """Return the ref of the running actor called ``name``."""
        ...

    async def stop(self, ref: ActorRef | None = None) -> None:
        """Stop ``ref``, or this actor itself when ``ref`` is None.

        Stopping itself returns at once: the actor finishes the current message, handles
        what is already in its mailbox, runs ``on_stop`` and exits.
        """
        ...

    async def shared_array(
        self,
        shape: int | tuple[int, ...] | None,
        dtype: npt.DTypeLike | None = None,
        *,
        name: str | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> SharedArray:
        """Create a shared array, as ``Runtime.shared_array`` does; the runtime owns it."""
        ...

    async def share(self, array: npt.ArrayLike, *, name: str | None = None) -> SharedArray:
        """Copy ``array`` into a new shared array, as ``Runtime.share`` does."""
        ...

    async def semaphore(self, value: int, *, name: str | None = None) -> SharedSemaphore:
        """Create a semaphore shared by the run's actors, as ``Runtime.semaphore`` does."""
        ...

    async def free(self, handle: SharedArray | SharedSemaphore) -> None:
        """Free a shared array or semaphore, as ``Runtime.free`` does."""
        ...

    async def watch(self, ref: ActorRef) -> None:
        """Receive ``actors.Terminated(ref, reason)`` once ``ref`` has ended for good.

        Restarts are not reported: a restarted actor is still the same actor. Watching an
        actor that has already ended sends the message at once.
        """
        ...

    async def unwatch(self, ref: ActorRef) -> None:
        """Stop watching ``ref``."""
        ...

    def send_after(self, delay: float, message: object) -> Timer:
        """Send ``message`` to this actor itself after ``delay`` seconds."""
        ...

    def send_every(self, interval: float, message: object) -> Timer:
        """Send ``message`` to this actor every ``interval`` seconds, first after one interval.

        A tick waits while the mailbox is full; ticks missed meanwhile are skipped.
        """
        ...
