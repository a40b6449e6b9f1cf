"""Supervision as the script author sees it: restart types, strategies, and what they report.

The runtime supervises every actor. An actor spawned with no options is ``permanent``
under the runtime's root supervisor, a ``one_for_one`` supervisor allowing
``DEFAULT_MAX_RESTARTS`` restarts within ``DEFAULT_PERIOD`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ._errors import InvalidSupervisorError

if TYPE_CHECKING:
    from ._ref import ActorRef

__all__ = [
    "DEFAULT_MAX_RESTARTS",
    "DEFAULT_PERIOD",
    "Backoff",
    "DeadLetterReason",
    "Failure",
    "LifecycleState",
    "OnError",
    "RestartType",
    "StopReason",
    "Strategy",
    "Supervisor",
    "Terminated",
]

#: restart intensity of a supervisor unless told otherwise: this many restarts...
DEFAULT_MAX_RESTARTS = 3
#: ... within this many seconds; one more escalates to the parent supervisor
DEFAULT_PERIOD = 5.0

RestartType = Literal["permanent", "transient", "temporary"]
"""When a child is restarted.

* ``permanent``: whenever it ends, unless it was stopped by ``stop(ref)`` or shutdown;
* ``transient``: only when it fails (crash, exception, kill, hang); not when it stops
  itself with ``self.context.stop()``;
* ``temporary``: never.
"""

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
"""Which children a supervisor restarts when one fails.

* ``one_for_one``: only that one;
* ``one_for_all``: all of them (the others are stopped first, newest first);
* ``rest_for_one``: that one and those started after it.
"""

LifecycleState = Literal["starting", "running", "down", "restarting", "stopping", "ended"]
"""Where an actor is in its life, as the runtime tracks it.

* ``starting``: its first incarnation is being started (``spawn`` has not returned);
* ``running``: an incarnation is ready for messages;
* ``down``: its incarnation ended by itself, and its supervisor decides what follows;
* ``restarting``: a new incarnation is being started;
* ``stopping``: it is being stopped in order;
* ``ended``: for good; it will not be restarted.
"""

StopReason = Literal[
    "requested",
    "stopped",
    "shutdown",
    "interrupted",
    "escalated",
    "restart",
    "parent_ended",
    "parent_lost",
    "sigterm",
    "sighup",
    "exception",
    "start_failed",
]
"""Why an incarnation was ended in order (``Failure.reason`` adds hard ends to these).

* ``requested``: it stopped itself (``self.context.stop()``);
* ``stopped``: ``stop(ref)`` was called;
* ``shutdown``: the runtime's ``async with`` block ended;
* ``interrupted``: the block ended on an error or Ctrl-C (no draining);
* ``escalated``: its supervisor gave up;
* ``restart``: restarted because a sibling failed (``one_for_all``, ``rest_for_one``);
* ``parent_ended``: the actor that owned it ended;
* ``parent_lost``: the runtime's process died;
* ``sigterm``: its process, or the script's, got SIGTERM;
* ``sighup``: the script's terminal hung up (SIGHUP);
* ``exception``: ``receive`` raised, with ``on_error="crash"``;
* ``start_failed``: it never became ready.
"""

DeadLetterReason = Literal["stopped", "crashed", "cancelled"] | StopReason
"""Why a message was dead-lettered: its receiver stopped (or crashed, or was cancelled
mid-handler) before handling it; the stop reasons above say why it stopped."""

OnError = Literal["crash", "resume"]
"""What an exception escaping ``receive`` does to the actor (the asker gets it either way).

* ``crash``: this incarnation ends (reason ``exception``) and its supervisor restarts it
  according to its restart type; messages still in its mailbox are dead-lettered;
* ``resume``: the actor keeps its state and goes on with the next message.
"""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay between restarts: ``min_s`` doubling per recent restart up to ``max_s``.

    Each delay is multiplied by a random factor in ``[1 - jitter, 1 + jitter]`` so that
    siblings do not restart in lockstep.
    """

    min_s: float = 0.1
    max_s: float = 5.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not (0 <= self.min_s <= self.max_s) or not (0 <= self.jitter < 1):
            raise InvalidSupervisorError(
                f"Backoff needs 0 <= min_s <= max_s and 0 <= jitter < 1, not {self!r}"
            )


@dataclass(frozen=True, slots=True)
class Supervisor:
    """A supervisor in the runtime's tree; create one with ``rt.supervisor(...)``.

    It has no process of its own: the runtime runs it. Spawn children under it with
    ``spawn(..., supervisor=sup)``; it can hold other supervisors too.
    """

    supervisor_id: str
    name: str

    def __repr__(self) -> str:
        return f"<Supervisor {self.name}>"


@dataclass(frozen=True, slots=True)
class Failure:
    """Why the previous incarnation of an actor ended, as given to ``on_restart``.

    ``reason`` is ``exception`` (``receive`` raised), ``signal:SIGKILL`` (and other
    signals), ``exit:<code>``, ``hung`` (killed after a heartbeat or deadline miss),
    ``start_failed``, ``requested`` (it stopped itself), ``restart`` (restarted because
    a sibling failed, under ``one_for_all`` or ``rest_for_one``), ``escalated`` (its
    supervisor gave up and was restarted by its own), or ``died`` (on Ray, a worker that
    ended without a word: Ray does not say how).
    """

    reason: str
    incarnation: int
    error_type: str = ""
    error: str = ""
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class Terminated:
    """The message a watcher receives when a watched actor has ended for good.

    Sent once the actor will not be restarted: it was stopped, its restart type says no,
    or its supervisor gave up. ``reason`` says why, as in ``Failure.reason``.
    """

    ref: ActorRef
    reason: str
