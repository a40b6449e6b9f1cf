"""The runtime's supervision tree: actors, their incarnations, and supervisors.

Supervisors have no process: they are nodes in the runtime's process, which is the only
one that starts and stops OS processes. A node restarts its children by its strategy,
counts restarts against its intensity, and escalates to its parent when that is exceeded.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass, field

import anyio

from actors import ActorRef, Backoff, Failure

from .._spawning import ChildOptions
from ..wire.control import ControlChannel
from .process_host import HostedProcess

__all__ = ["ActorRecord", "Life", "ShutdownReport", "SupervisorNode"]


@dataclass(eq=False)
class Life:
    """One incarnation of an actor: one OS process, as the runtime sees it."""

    number: int
    control: ControlChannel | None = None
    process: HostedProcess | None = None
    pid: int = 0
    running: anyio.Event = field(default_factory=anyio.Event)
    exited: anyio.Event = field(default_factory=anyio.Event)
    control_done: anyio.Event = field(default_factory=anyio.Event)
    start_error: tuple[str, str, str] | None = None
    #: the actor's own account: reason, handled, failed, dead-lettered, in doubt, error
    stop_report: tuple[str, int, int, int, int, str, str] | None = None
    exit_code: int | None = None
    exit_reason: str = ""
    killed: bool = False
    hung: bool = False
    #: why the runtime stopped it (None: it ended by itself, which is a failure to handle)
    stop_requested: str | None = None
    running_at: float = 0.0
    last_beat: float = field(default_factory=time.monotonic)
    handling_since: float = 0.0


@dataclass(eq=False)
class ActorRecord:
    """An actor across its incarnations: the ref, the name and the spec survive restarts."""

    ref: ActorRef
    class_name: str
    payload: bytes
    mailbox_size: int
    options: ChildOptions
    node: SupervisorNode
    parent_id: str | None
    life: Life | None = None
    lives: int = 0
    #: starting, running, down (ended unexpectedly, being handled), restarting,
    #: stopping, ended
    state: str = "starting"
    end_reason: str = ""
    own_node: SupervisorNode | None = None
    watchers: set[str] = field(default_factory=set)
    changed: anyio.Event = field(default_factory=anyio.Event)
    restarts: int = 0
    handled: int = 0
    failed: int = 0
    dead_lettered: int = 0
    in_doubt: int = 0
    failure: Failure | None = None

    def set_state(self, state: str) -> None:
        self.state = state
        self.changed.set()
        self.changed = anyio.Event()

    @property
    def name(self) -> str:
        return self.ref.name

    def add_report(self, life: Life) -> None:
        if life.stop_report is not None:
            _, handled, failed, dead, in_doubt, _, _ = life.stop_report
            self.handled += handled
            self.failed += failed
            self.dead_lettered += dead
            self.in_doubt += in_doubt


class SupervisorNode:
    """A supervisor: children in start order, a strategy and a restart intensity."""

    def __init__(
        self,
        node_id: str,
        name: str,
        strategy: str,
        max_restarts: int,
        period: float,
        backoff: Backoff | None,
        parent: SupervisorNode | None,
        owner: ActorRecord | None,
    ) -> None:
        self.node_id = node_id
        self.name = name
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.period = period
        self.backoff = backoff
        self.parent = parent
        #: the actor whose incarnation this node belongs to (ends with it), if any
        self.owner = owner
        self.children: list[ActorRecord | SupervisorNode] = []
        self.restart_times: deque[float] = deque()
        self.ended = False

    def allow_restart(self) -> bool:
        """Count one restart; False if that exceeds ``max_restarts`` within ``period``."""
        now = time.monotonic()
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


@dataclass
class ShutdownReport:
    """What the run did, per actor, available as ``Runtime.report`` after the run.

    ``stopped``: actors that stopped in order at the end; ``killed``: actors whose
    process had to be killed at the end (they ignored the stop and SIGTERM);
    ``dead_lettered``, ``handled``, ``failed``, ``restarts``: counts per actor name over
    all its incarnations; ``in_doubt``: messages whose receiver died before confirming
    them, counted by their senders.
    """

    stopped: list[str] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    handled: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    dead_lettered: dict[str, int] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    in_doubt: int = 0
    escalated: str | None = None
