"""Reply: an answer to an ask that the handler gives later."""

from __future__ import annotations

from collections.abc import Callable
from typing import final

__all__ = ["Reply"]


@final
class Reply:
    """A promise to answer one ``ask``, obtained from ``Actor.defer_reply()``.

    Settle it exactly once, from any later handler or task of the same actor. Settling is
    synchronous and never blocks. If the actor stops with the reply unsettled, the asker
    gets ``ActorDeadError``, so no asker waits forever.
    """

    __slots__ = ("_settle", "_settled", "expected")

    def __init__(self, settle: Callable[[bool, object], None], *, expected: bool) -> None:
        self._settle = settle
        self._settled = False
        #: False when the message came by ``tell``: nobody waits, settling is a no-op.
        self.expected = expected

    @property
    def settled(self) -> bool:
        """Whether ``set_result`` or ``set_exception`` was called."""
        return self._settled

    def set_result(self, value: object) -> None:
        """Answer the ask with ``value``.

        Raises:
            RuntimeError: the reply was already settled.
            MessageNotSerializableError: ``value`` cannot be pickled; the asker gets an
                error instead, and the reply counts as settled.
        """
        self._mark()
        self._settle(True, value)

    def set_exception(self, error: BaseException) -> None:
        """Fail the ask with ``error``; the asker sees its type and message.

        Raises:
            RuntimeError: the reply was already settled.
        """
        self._mark()
        self._settle(False, error)

    def _mark(self) -> None:
        if self._settled:
            raise RuntimeError("this reply was already settled; settle each Reply once")
        self._settled = True
