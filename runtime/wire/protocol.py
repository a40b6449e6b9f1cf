"""The control protocol between the driver and an actor process, as frozen records.

Every message on a control link is one of these, matched by type on arrival. An actor's
requests (``spawn``, ``lookup``, ...) travel inside ``Request`` and are answered by
``Answer``; the driver serves the same request types for the script's own calls, so each
request has exactly one handler.
"""

from __future__ import annotations

from typing import TypeAlias

from actors import (
    ActorRef,
    Failure,
    OnError,
    Permit,
    RestartType,
    SharedArray,
    SharedSemaphore,
    StopReason,
    Supervisor,
)
from actors._context import SharedArrayCall, SupervisorOptions
from actors._record import record

from .._config import RuntimeConfig
from ..observe.logging import LogConfig

__all__ = [
    "AcquireSlot",
    "ActorSpec",
    "Answer",
    "AwaitActor",
    "ChildOptions",
    "ControlMessage",
    "CreateSemaphore",
    "CreateSharedArray",
    "CreateSupervisor",
    "HowItEnded",
    "Free",
    "Heartbeat",
    "IsPeer",
    "Lookup",
    "Ready",
    "ReleaseSlot",
    "Request",
    "RequestBody",
    "SpawnActor",
    "StartFailed",
    "Stop",
    "StopActor",
    "Stopped",
    "Unwatch",
    "Watch",
]


@record
class ChildOptions:
    """How an actor is supervised (see ``Runtime.spawn``)."""

    restart: RestartType = "permanent"
    on_error: OnError = "crash"
    message_deadline: float | None = None
    hang_timeout: float | None = None
    #: the machine it must run on (``spawn(colocate_with=...)``); "": wherever
    node: str = ""


@record(kw_only=True)
class ActorSpec:
    """Everything an actor process needs to start; only runtime types, safe to unpickle."""

    actor_id: str
    name: str
    address: str
    mailbox_size: int
    #: pickled (actor_class, args, kwargs): user types, loaded once logging is up
    payload: bytes
    config: RuntimeConfig
    log: LogConfig
    options: ChildOptions
    runtime_pid: int
    peers: frozenset[int]
    run_dir: str
    incarnation: int
    #: names this incarnation: actor id and incarnation number
    box: str
    #: why the previous incarnation ended, for ``on_restart``
    failure: Failure | None


# -- actor → driver: lifecycle ---------------------------------------------------------------


@record
class Ready:
    """The actor's ``on_start`` returned: it takes messages now."""

    pid: int
    #: whether it sends heartbeats; if not, its account holds its signs of life
    beats: bool = True


@record
class Heartbeat:
    """The actor's event loop runs; ``handling_since`` (monotonic, 0: idle) is for deadlines."""

    handling_since: float


@record
class StartFailed:
    """Loading the actor, its ``__init__``, ``on_restart`` or ``on_start`` raised."""

    error_type: str
    error: str
    traceback: str


@record
class Stopped:
    """The incarnation's own account, sent as it ends in order."""

    reason: str
    handled: int
    failed: int
    dead_lettered: int
    in_doubt: int
    error_type: str
    error: str


# -- actor → driver: requests, served by the driver ------------------------------------------


@record
class SpawnActor:
    class_name: str
    payload: bytes
    name: str | None
    mailbox_size: int
    options: ChildOptions
    supervisor: Supervisor | None


@record
class CreateSupervisor:
    options: SupervisorOptions


@record
class Lookup:
    name: str


@record
class StopActor:
    ref: ActorRef


@record
class Watch:
    ref: ActorRef


@record
class Unwatch:
    ref: ActorRef


@record
class CreateSharedArray:
    call: SharedArrayCall


@record
class CreateSemaphore:
    value: object
    name: str | None


@record
class Free:
    handle: SharedArray | SharedSemaphore


@record
class IsPeer:
    """Is ``pid`` one of this run's processes (a sender the mailbox may accept)?"""

    pid: int


@record
class AwaitActor:
    """Return once ``ref`` has an incarnation that started after ``since`` (monotonic)."""

    ref: ActorRef
    since: float


@record
class HowItEnded:
    """How incarnation ``box`` of ``ref`` ended: ``(in_order, ended_at)``, once known.

    ``in_order``: it sent ``Stopped``, so it answered or bounced every ask it took and
    finished every batch of tells: a call that failed when its worker went was never
    taken. ``ended_at`` (``time.time()``, or None if unknown): when the driver saw it end;
    a call sent after that was not taken either. The Ray backend sends such calls again.
    """

    ref: ActorRef
    box: str


@record
class AcquireSlot:
    """Take a slot of ``semaphore`` for an actor on another machine (the driver holds it)."""

    semaphore: SharedSemaphore
    timeout: float
    pid: int


@record
class ReleaseSlot:
    """Give back a slot that ``AcquireSlot`` took."""

    semaphore: SharedSemaphore
    permit: Permit


RequestBody: TypeAlias = (
    SpawnActor
    | CreateSupervisor
    | Lookup
    | StopActor
    | Watch
    | Unwatch
    | CreateSharedArray
    | CreateSemaphore
    | Free
    | IsPeer
    | AwaitActor
    | HowItEnded
    | AcquireSlot
    | ReleaseSlot
)


@record
class Request:
    request_id: int
    body: RequestBody


# -- driver → actor --------------------------------------------------------------------------


@record
class Answer:
    """The outcome of ``Request`` ``request_id``: a value, or a pickled error (``ok`` False)."""

    request_id: int
    ok: bool
    value: object


@record
class Stop:
    """Stop in order within ``timeout`` seconds; ``reason`` goes into the logs."""

    timeout: float
    reason: StopReason


ControlMessage: TypeAlias = Ready | Heartbeat | StartFailed | Stopped | Request | Answer | Stop
