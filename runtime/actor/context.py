"""Context: ``actors.ActorContext`` for the actor running in this process.

The shared calls come from ``Services``; their requests travel to the driver on the
control link. What only an actor does (watch, timers, stopping itself) is here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors import ActorContext, ActorRef, Timer

from .._api import Services
from .._config import RuntimeConfig
from ..wire.protocol import RequestBody, Unwatch, Watch
from ..wire.seams import Outbox

if TYPE_CHECKING:
    from .incarnation import Incarnation

__all__ = ["Context"]


class Context(Services, ActorContext):
    """``self.context`` of an actor: the runtime's services, reached from its process."""

    def __init__(self, incarnation: Incarnation[Any]) -> None:
        self._inc = incarnation

    @property
    def _config(self) -> RuntimeConfig:
        return self._inc.spec.config

    @property
    def _transport(self) -> Outbox:
        return self._inc.transport

    async def _request(self, body: RequestBody) -> Any:
        return await self._inc.request(body)

    @property
    def run_id(self) -> str:
        return self._inc.spec.log.run_id

    async def stop(self, ref: ActorRef | None = None) -> None:
        if ref is None or ref.actor_id == self._inc.spec.actor_id:
            self._inc.request_stop(self._inc.spec.config.stop_timeout, "requested")
            return
        await super().stop(ref)

    async def watch(self, ref: ActorRef) -> None:
        await self._request(Watch(ref))

    async def unwatch(self, ref: ActorRef) -> None:
        await self._request(Unwatch(ref))

    def send_after(self, delay: float, message: object) -> Timer:
        return self._inc.start_timer(delay, message, repeat=False)

    def send_every(self, interval: float, message: object) -> Timer:
        return self._inc.start_timer(interval, message, repeat=True)
