"""ActorRef: the picklable address of an actor."""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from ._router import current_router, note_unpickled_ref

__all__ = ["ActorRef"]

DEFAULT_ASK_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class ActorRef:
    """The address of a running actor; obtained from ``spawn`` or ``lookup``, never built.

    A ref pickles, so it can travel inside messages and spawn arguments and be used from
    any actor process of the same run. Messages from one sender to one receiver arrive in
    the order they were sent.

    Example::

        agg = await rt.spawn(Aggregator, 2, name="aggregator")
        await agg.tell(("count", 5))
        total = await agg.ask("total", timeout=5.0)
    """

    actor_id: str
    name: str
    address: str

    def tell(self, message: object) -> Coroutine[Any, Any, None]:
        """Send ``message`` without waiting for it to be handled.

        Concurrency: waits while the receiver's mailbox is full (backpressure). A cancelled
        ``tell`` sends nothing.

        Raises:
            MessageNotSerializableError: the message cannot be pickled; nothing was sent.
            ActorDeadError: the actor is not running.
        """
        # the router's coroutine itself, not one wrapping it: a tell is a hot path
        return current_router().tell(self, message)

    def tell_nowait(self, message: object) -> None:
        """Send ``message`` if the receiver's mailbox has room right now.

        Raises:
            MailboxFullError: the mailbox is full; nothing was sent.
            MessageNotSerializableError: the message cannot be pickled; nothing was sent.
            ActorDeadError: the actor is not running.
        """
        current_router().tell_nowait(self, message)

    async def ask(self, message: object, *, timeout: float = DEFAULT_ASK_TIMEOUT) -> Any:
        """Send ``message`` and return the handler's answer.

        Args:
            message: any picklable object.
            timeout: seconds to wait for the answer, including any wait for mailbox room.

        Raises:
            AskTimeoutError: no answer within ``timeout`` (a ``TimeoutError``).
            ActorDeadError: the actor stopped or died before answering; raised as soon as
                that is known, not at the timeout.
            Exception: whatever the handler raised, with its original type and message.
        """
        return await current_router().ask(self, message, timeout)

    def __reduce__(self) -> tuple[object, tuple[str, str, str]]:
        return (_unpickle_ref, (self.actor_id, self.name, self.address))

    def __repr__(self) -> str:
        return f"<ActorRef {self.name} ({self.actor_id})>"


def _unpickle_ref(actor_id: str, name: str, address: str) -> ActorRef:
    ref = ActorRef(actor_id, name, address)
    note_unpickled_ref(ref)
    return ref
