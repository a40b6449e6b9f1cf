"""The registry: every actor of a run by id and by name, and their incarnations.

It answers the questions senders ask about an actor (where is it, is it coming back)
without touching processes: the tree starts and stops incarnations and keeps it current.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import field

import anyio

from actors import (
    ActorDeadError,
    ActorNameTakenError,
    ActorNotFoundError,
    ActorRef,
    Failure,
    InvalidSpawnError,
    LifecycleState,
    StopReason,
)
from actors._record import record

from ..observe.account import Counts
from ..wire.protocol import ChildOptions, Stopped
from .hosting import HostedIncarnation
from .policy import SupervisorNode

__all__ = ["ActorRecord", "Life", "Registry"]

#: the longest actor name: it goes into file names and log lines
_MAX_NAME = 200


@record(frozen=False)
class Life:
    """One incarnation of an actor, as the driver sees it."""

    number: int
    hosted: HostedIncarnation
    running: anyio.Event = field(default_factory=anyio.Event)
    exited: anyio.Event = field(default_factory=anyio.Event)
    control_done: anyio.Event = field(default_factory=anyio.Event)
    #: it will send nothing more: it reported Stopped, or its control link has closed
    finished: anyio.Event = field(default_factory=anyio.Event)
    start_error: tuple[str, str, str] | None = None
    #: the incarnation's own account, sent as it ended in order
    stop_report: Stopped | None = None
    exit_code: int | None = None
    exit_reason: str = ""
    killed: bool = False
    hung: bool = False
    #: why the driver stopped it (None: it ended by itself, which is a failure to handle)
    stop_requested: StopReason | None = None
    running_at: float = 0.0
    #: whether it sends heartbeats (else the host reads its signs of life: ``liveness``)
    beats: bool = True
    last_beat: float = 0.0
    handling_since: float = 0.0

    @property
    def pid(self) -> int | None:
        return self.hosted.pid

    def counts(self) -> Counts | None:
        """What it counted: the host's account if it keeps one, else the one it sent."""
        counts = self.hosted.account
        if counts is None and self.stop_report is not None:
            report = self.stop_report
            counts = Counts(report.handled, report.failed, report.dead_lettered, report.in_doubt)
        return counts


@record(frozen=False)
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
    state: LifecycleState = "starting"
    end_reason: str = ""
    own_node: SupervisorNode | None = None
    watchers: set[str] = field(default_factory=set)
    #: the actors this one watches: their ``watchers`` name it
    watching: set[str] = field(default_factory=set)
    changed: anyio.Event = field(default_factory=anyio.Event)
    restarts: int = 0
    handled: int = 0
    failed: int = 0
    dead_lettered: int = 0
    in_doubt: int = 0
    failure: Failure | None = None

    def set_state(self, state: LifecycleState) -> None:
        self.state = state
        self.changed.set()
        self.changed = anyio.Event()

    @property
    def name(self) -> str:
        return self.ref.name

    def add_counts(self, counts: Counts | None) -> None:
        """Add what one ended incarnation counted."""
        if counts is not None:
            self.handled += counts.handled
            self.failed += counts.failed
            self.dead_lettered += counts.dead_lettered
            self.in_doubt += counts.in_doubt


class Registry:
    """Actors by id and by name, running and ended."""

    def __init__(self, restart_wait: float) -> None:
        self.restart_wait = restart_wait
        self.records: dict[str, ActorRecord] = {}
        self.ended: dict[str, ActorRecord] = {}
        self.names: dict[str, ActorRecord] = {}
        self._ids = itertools.count(1)
        self._auto_names: dict[str, itertools.count[int]] = {}
        #: incarnations (boxes) that ended in order: they sent Stopped
        self.orderly: set[str] = set()
        #: when the driver saw each incarnation's control link end (``time.time()``)
        self.ended_at: dict[str, float] = {}
        #: called with an incarnation's box once it has ended, however it ended
        self.end_hooks: list[Callable[[str], None]] = []

    def new_id(self) -> str:
        return f"a{next(self._ids)}"

    def name_for(self, class_name: str, name: str | None) -> str:
        """``name`` checked and free, or a fresh ``<class>-<n>``."""
        if name is None:
            counter = self._auto_names.setdefault(class_name, itertools.count(1))
            auto = f"{class_name.lower()}-{next(counter)}"
            while auto in self.names:
                auto = f"{class_name.lower()}-{next(counter)}"
            return auto
        if not isinstance(name, str) or not name or len(name) > _MAX_NAME:
            raise InvalidSpawnError(
                f"an actor name must be a str of 1 to {_MAX_NAME} characters, not {name!r}"
            )
        if name in self.names or name == "main":
            raise ActorNameTakenError(name)
        return name

    def add(self, rec: ActorRecord) -> None:
        self.records[rec.ref.actor_id] = rec
        self.names[rec.name] = rec

    def retire(self, rec: ActorRecord) -> None:
        """``rec`` has ended for good: free its name, keep it for the report."""
        self.records.pop(rec.ref.actor_id, None)
        self.ended[rec.ref.actor_id] = rec
        if self.names.get(rec.name) is rec:
            del self.names[rec.name]
        for watched_id in rec.watching:
            watched = self.records.get(watched_id)
            if watched is not None:
                watched.watchers.discard(rec.ref.actor_id)
        rec.watching.clear()

    def lookup(self, name: str) -> ActorRef:
        rec = self.names.get(name)
        if rec is None or rec.state in ("starting", "ended"):
            raise ActorNotFoundError(name)
        return rec.ref

    def record_of(self, ref: ActorRef) -> ActorRecord:
        rec = self.records.get(ref.actor_id)
        if rec is None or rec.ref != ref:
            raise ActorNotFoundError(ref.name)
        return rec

    def live_pids(self) -> list[int]:
        """OS pids of the incarnations running on this machine."""
        pids = []
        for rec in self.records.values():
            life = rec.life
            if life is not None and life.pid and not life.exited.is_set():
                pids.append(life.pid)
        return pids

    async def how_it_ended(self, ref: ActorRef, box: str) -> tuple[bool, float | None]:
        """``(in_order, ended_at)`` of incarnation ``box`` (see ``protocol.HowItEnded``).

        Waits (``restart_wait`` at most) for the driver to see the end of an incarnation
        still running here: its worker may be known gone to a sender first.
        """
        rec = self.records.get(ref.actor_id) or self.ended.get(ref.actor_id)
        life = rec.life if rec is not None else None
        if life is not None and f"{ref.actor_id}.{life.number}" == box:
            with anyio.move_on_after(self.restart_wait):
                await life.control_done.wait()
        return box in self.orderly, self.ended_at.get(box)

    def explain(self, ref: ActorRef) -> str:
        """Why ``ref`` cannot be reached: stopped, died, restarting or unreachable."""
        rec = self.ended.get(ref.actor_id)
        if rec is None:
            rec = self.records.get(ref.actor_id)
            if rec is None:
                return "unreachable"
            return "restarting" if rec.state in ("down", "restarting") else "unreachable"
        return "stopped" if rec.end_reason in ("stopped", "requested", "shutdown") else "died"

    async def await_actor(self, ref: ActorRef, since: float) -> None:
        """Return once ``ref`` has an incarnation that started after ``since``.

        A sender whose connect failed at ``since`` calls this: it waits (at most
        ``restart_wait`` seconds) while the actor is being restarted.

        Raises:
            ActorDeadError: it has ended, or is not back in time.
        """
        rec = self.records.get(ref.actor_id)
        if rec is None or rec.ref != ref:
            raise ActorDeadError(ref.name, self.explain(ref))
        with anyio.move_on_after(self.restart_wait):
            while True:
                if rec.state == "ended":
                    raise ActorDeadError(ref.name, self.explain(ref))
                life = rec.life
                if rec.state == "running" and life is not None and life.running_at > since:
                    return
                await rec.changed.wait()
        raise ActorDeadError(
            ref.name,
            "restarting",
            f"not back within restart_wait={self.restart_wait:g} s",
        )
