"""ShutdownReport: what a run did, per actor, once the runtime has exited."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ShutdownReport"]


@dataclass
class ShutdownReport:
    """What the run did, per actor, available as ``Runtime.report`` after the run.

    ``stopped``: actors that stopped in order at the end, in the order they stopped
    (newest first; an actor's own children end with it, as ``parent_ended``, and are
    not listed here, though their counts are); ``killed``: actors whose process
    had to be killed at the end (they ignored the stop and SIGTERM), in that order too;
    ``handled``, ``failed``, ``dead_lettered``, ``restarts``: counts per actor name over
    all its incarnations, killed ones included; ``in_doubt``: messages (tells and asks)
    whose receiver died before confirming them, counted by their senders;
    ``escalated``: the supervisor that gave up, if any.
    """

    stopped: list[str] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    handled: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    dead_lettered: dict[str, int] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    in_doubt: int = 0
    escalated: str | None = None
