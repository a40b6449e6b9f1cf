"""Supervision policy: supervisors, their strategies, restart intensity and backoff.

Supervisors have no process: they are nodes in the driver, which is the only process
that starts and stops incarnations. Time comes from an injected ``Clock``, so that the
policy runs the same against a fake clock in tests.
"""

from __future__ import annotations

import random
import time
from collections import deque
from typing import TYPE_CHECKING, Protocol

import anyio

from actors import Strategy
from actors._context import SupervisorOptions

if TYPE_CHECKING:
    from .registry import ActorRecord

__all__ = ["Clock", "MonotonicClock", "SupervisorNode"]


class Clock(Protocol):
    """Where supervision reads the time and waits."""

    def now(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """The real clock: ``time.monotonic`` and ``anyio.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class SupervisorNode:
    """A supervisor: children in start order, a strategy and a restart intensity."""

    def __init__(
        self,
        node_id: str,
        name: str,
        options: SupervisorOptions,
        parent: SupervisorNode | None,
        owner: ActorRecord | None,
        clock: Clock,
    ) -> None:
        self.node_id = node_id
        self.name = name
        self.strategy: Strategy = options.strategy
        self.max_restarts = options.max_restarts
        self.period = options.period
        self.backoff = options.backoff
        self.parent = parent
        #: the actor whose incarnation this node belongs to (ends with it), if any
        self.owner = owner
        self.children: list[ActorRecord | SupervisorNode] = []
        self.restart_times: deque[float] = deque()
        self.ended = False
        self._clock = clock

    def allow_restart(self) -> bool:
        """Count one restart; False if that exceeds ``max_restarts`` within ``period``."""
        now = self._clock.now()
        times = self.restart_times
        while times and now - times[0] > self.period:
            times.popleft()
        if len(times) >= self.max_restarts:
            return False
        times.append(now)
        return True

    def delay(self) -> float:
        """Seconds to wait before this restart (0 without a backoff)."""
        if self.backoff is None:
            return 0.0
        b = self.backoff
        base = min(b.max_s, b.min_s * 2 ** max(0, len(self.restart_times) - 1))
        return float(base * random.uniform(1 - b.jitter, 1 + b.jitter))

    def targets(self, child: ActorRecord | SupervisorNode) -> list[ActorRecord | SupervisorNode]:
        """The children to restart, in start order, when ``child`` failed."""
        if self.strategy == "one_for_all":
            return list(self.children)
        if self.strategy == "rest_for_one" and child in self.children:
            return self.children[self.children.index(child) :]
        return [child]

    def __repr__(self) -> str:
        return f"<SupervisorNode {self.name} {self.strategy}>"
