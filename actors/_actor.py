"""Actor: the base class a script author subclasses."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._errors import InvalidSpawnError
from ._reply import Reply

if TYPE_CHECKING:
    from ._context import ActorContext
    from ._ref import ActorRef
    from ._supervision import Failure

__all__ = ["Actor"]


class Actor:
    """Base class for actors: state plus a ``receive`` handler, run in its own process.

    Each actor lives in its own OS process with its own event loop and handles one message
    at a time, in arrival order. Override the hooks you need::

        class Counter(Actor):
            def __init__(self, start: int = 0) -> None:
                super().__init__()
                self.value = start

            async def receive(self, message):
                match message:
                    case ("add", int(n)):
                        self.value += n
                    case "get":
                        return self.value      # the return value answers ask()

    The constructor runs in the actor's process with the arguments given to ``spawn``.
    ``self.ref`` and ``self.context`` are available from ``on_start`` on.
    """

    def __init__(self) -> None:
        self.__ref: ActorRef | None = None
        self.__context: ActorContext | None = None
        self.__defer: Callable[[], Reply] | None = None

    @property
    def ref(self) -> ActorRef:
        """This actor's own ref, to hand to others (e.g. inside a message)."""
        if self.__ref is None:
            raise RuntimeError(
                "self.ref is set once the actor runs; use it from on_start() on, not in "
                "__init__ (and did you forget super().__init__()?)"
            )
        return self.__ref

    @property
    def context(self) -> ActorContext:
        """The runtime's services: ``spawn``, ``lookup``, ``stop``."""
        if self.__context is None:
            raise RuntimeError(
                "self.context is set once the actor runs; use it from on_start() on, not "
                "in __init__ (and did you forget super().__init__()?)"
            )
        return self.__context

    async def on_start(self) -> None:
        """Run once before the first message, in every incarnation.

        An exception here fails the ``spawn``; in a restarted incarnation it counts as a
        failed restart.
        """

    async def on_restart(self, failure: Failure) -> None:
        """Run before ``on_start`` in a restarted incarnation, on its fresh instance.

        ``failure`` says why the previous incarnation ended (see ``actors.Failure``).
        """

    async def receive(self, message: Any) -> Any:
        """Handle one message; the return value answers an ``ask``.

        An exception fails the ask with the same type and message (and is logged as
        ``message.failed``). Then, by default, this incarnation ends and its supervisor
        restarts the actor (``on_error="crash"``); spawned with ``on_error="resume"``, it
        keeps serving the next message instead.
        """
        return None

    async def on_stop(self) -> None:
        """Run once at the end of an incarnation: stopped on request, at shutdown, or
        after ``receive`` raised (``on_error="crash"``). Not run when the process is killed.
        """

    def defer_reply(self) -> Reply:
        """Answer the current ask later, without blocking the mailbox.

        Call it inside ``receive``; the handler's return value is then ignored, and the
        ask is answered when the returned ``Reply`` is settled::

            case "total":
                if self.seen < self.expected:
                    self.waiting.append(self.defer_reply())
                    return None
                return self.total

        Raises:
            RuntimeError: called outside ``receive``.
        """
        if self.__defer is None:
            raise RuntimeError("defer_reply() can only be called while receive() runs")
        return self.__defer()

    # Called by the runtime only; not part of the public API.
    def _actor_bind(self, ref: ActorRef, context: ActorContext) -> None:
        if not hasattr(self, "_Actor__ref"):
            raise InvalidSpawnError(
                f"{type(self).__name__}.__init__ did not call super().__init__(); add it "
                "as the first line of __init__"
            )
        self.__ref = ref
        self.__context = context

    def _actor_set_deferral(self, defer: Callable[[], Reply] | None) -> None:
        self.__defer = defer
