"""RuntimeServices and ActorContext: what a script and an actor can ask of the runtime.

``RuntimeServices`` holds the calls both have (``Runtime`` in the script, ``self.context``
in an actor), with their one set of defaults and docstrings; the runtime fills in the
primitives each side delivers them by.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Protocol

from ._record import record
from ._supervision import (
    DEFAULT_MAX_RESTARTS,
    DEFAULT_PERIOD,
    Backoff,
    OnError,
    RestartType,
    Strategy,
    Supervisor,
)

if TYPE_CHECKING:
    import numpy.typing as npt

    from ._actor import Actor
    from ._ref import ActorRef
    from ._shared import SharedArray, SharedSemaphore

__all__ = [
    "ActorContext",
    "RuntimeServices",
    "SharedArrayCall",
    "SpawnCall",
    "SupervisorOptions",
    "Timer",
]


class Timer(Protocol):
    """A scheduled message to oneself; cancelled by ``cancel()`` or when the actor stops."""

    def cancel(self) -> None:
        """Send nothing more (a message already in the mailbox stays there)."""
        ...


@record
class SpawnCall:
    """A ``spawn`` call as made: the class, its arguments, and spawn's own options."""

    actor_class: type[Actor]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    name: str | None
    mailbox_size: int | None
    restart: RestartType
    on_error: OnError
    supervisor: Supervisor | None
    message_deadline: float | None
    hang_timeout: float | None
    #: keyword arguments for ``__init__`` given as ``init_kwargs=``, whatever their names
    init_kwargs: dict[str, Any] | None = None
    #: a shared array or semaphore whose machine the actor must run on
    colocate_with: Any = None


@record
class SharedArrayCall:
    """A ``shared_array`` call as made (a dtype travels as its string form)."""

    shape: object
    dtype: object
    name: str | None
    path: str | None
    #: a new array only (``share``): a live ``name`` is refused, never found
    exclusive: bool = False


@record
class SupervisorOptions:
    """``supervisor``'s arguments, as given (checked by the runtime)."""

    name: str | None
    strategy: Strategy
    max_restarts: int
    period: float
    backoff: Backoff | None
    supervisor: Supervisor | None


class RuntimeServices(ABC):
    """The calls a script makes on ``Runtime`` and an actor on ``self.context``.

    Both take the same arguments with the same defaults; where they differ (who owns a
    child spawned without ``supervisor``), the docstring says so.
    """

    async def spawn(
        self,
        actor_class: type[Actor],
        *args: Any,
        name: str | None = None,
        mailbox_size: int | None = None,
        restart: RestartType = "permanent",
        on_error: OnError = "crash",
        supervisor: Supervisor | None = None,
        message_deadline: float | None = None,
        hang_timeout: float | None = None,
        init_kwargs: dict[str, Any] | None = None,
        colocate_with: SharedArray | SharedSemaphore | None = None,
        **kwargs: Any,
    ) -> ActorRef:
        """Start ``actor_class(*args, **kwargs)`` in a new process; return its ref once running.

        The ref stays valid across restarts: messages sent while the actor is being
        restarted wait up to ``restart_wait`` seconds for the new incarnation.

        From the script, a child spawned without ``supervisor`` goes under the root
        supervisor. From an actor, it belongs to that actor: it is supervised under the
        actor's own ``one_for_one`` supervisor and stopped when the actor's incarnation
        ends (before its ``on_stop``).

        Args:
            actor_class: a subclass of ``actors.Actor`` defined at module top level.
            name: a unique name for ``lookup`` and the logs; default ``<class>-<n>``.
            mailbox_size: capacity of its mailbox in messages (default: the runtime's
                ``mailbox_size``), shared by all its senders.
            restart: ``permanent`` (default), ``transient`` or ``temporary``.
            on_error: ``crash`` (default: an exception escaping ``receive`` ends the
                incarnation and the supervisor restarts it) or ``resume``.
            supervisor: the supervisor it goes under.
            message_deadline: seconds one message may take before the actor is declared
                hung, its stack dumped and its process killed (and restarted); checked
                at heartbeats (every quarter of it, by default), so up to two
                heartbeats late.
            hang_timeout: the runtime's ``hang_timeout``, for this actor.
            init_kwargs: more keyword arguments for the actor's ``__init__``, for those
                whose names are spawn's own (above).
            colocate_with: a shared array or semaphore this actor uses: on a cluster (the
                Ray backend), it runs on the machine that holds it. Without it, new actors
                take the machines in turn. On the local backend every actor runs there.

        These keyword names are spawn's own; the actor's ``__init__`` gets the other
        keyword arguments. An ``__init__`` that takes a parameter with one of these names,
        such as ``name``, gets it positionally or through ``init_kwargs``::

            ref = await rt.spawn(Worker, name="w1", init_kwargs={"name": "alice"})
            # the actor is called "w1" (lookup, logs); its __init__ got name="alice"

        Raises:
            InvalidSpawnError: not an Actor class, arguments its ``__init__`` can't take,
                a keyword given both directly and in ``init_kwargs``, or a bad option.
            MessageNotSerializableError: an argument cannot be pickled.
            ActorNameTakenError: a running actor already has ``name``.
            ActorStartError: its ``__init__`` or ``on_start`` raised, or it never got ready.
        """
        call = SpawnCall(
            actor_class,
            args,
            kwargs,
            name,
            mailbox_size,
            restart,
            on_error,
            supervisor,
            message_deadline,
            hang_timeout,
            init_kwargs,
            colocate_with,
        )
        return await self._spawn(call)

    async def supervisor(
        self,
        name: str | None = None,
        *,
        strategy: Strategy = "one_for_one",
        max_restarts: int = DEFAULT_MAX_RESTARTS,
        period: float = DEFAULT_PERIOD,
        backoff: Backoff | None = None,
        supervisor: Supervisor | None = None,
    ) -> Supervisor:
        """Create a supervisor (under ``supervisor``, else the root one, or the actor's own).

        Spawn its children with ``spawn(..., supervisor=sup)``, in the order they should
        start. When a child fails, ``strategy`` says which children restart; more than
        ``max_restarts`` restarts within ``period`` seconds make it give up: it stops all
        its children, newest first, and its own supervisor handles that as a failure.

        Example::

            pipeline = await rt.supervisor("pipeline", strategy="rest_for_one")
            source = await rt.spawn(Source, supervisor=pipeline)
            sink = await rt.spawn(Sink, source, supervisor=pipeline)

        Raises:
            InvalidSupervisorError: a bad strategy, intensity or backoff.
            SupervisorNameTakenError: a live supervisor already has ``name``.
        """
        options = SupervisorOptions(name, strategy, max_restarts, period, backoff, supervisor)
        return await self._supervisor(options)

    @abstractmethod
    async def lookup(self, name: str) -> ActorRef:
        """Return the ref of the actor called ``name`` (running, or being restarted).

        Raises:
            ActorNotFoundError: no actor has that name.
        """

    @abstractmethod
    async def stop(self, ref: ActorRef) -> None:
        """Stop ``ref`` in order, for good, and wait until its process has exited.

        Its own children stop first. It finishes what is already in its mailbox and runs
        ``on_stop``; after ``stop_timeout`` seconds it is terminated, then killed. It is
        not restarted, whatever its restart type. Stopping an actor that already stopped
        does nothing.

        Raises:
            ActorNotFoundError: ``ref`` does not belong to this runtime.
        """

    async def shared_array(
        self,
        shape: int | tuple[int, ...] | None,
        dtype: npt.DTypeLike | None = None,
        *,
        name: str | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> SharedArray:
        """Create a zero-filled numpy array in shared memory; return its handle.

        The runtime owns the memory: it is unlinked when the run ends (or by ``free``),
        and a later runtime removes what a killed run left. Send the handle to actors;
        each maps the same memory.

        Args:
            shape: e.g. ``(1000, 3)``; an int for one dimension.
            dtype: any numpy dtype without Python objects (default float64).
            name: a name for the logs and errors, unique among live arrays: asking again
                with the same shape and dtype (and file) returns the same array.
            path: map this ``.npy`` file instead: created with ``shape`` and ``dtype`` if
                missing, else opened (``shape`` and ``dtype`` may then be None, or must
                match). The file outlives the run; only its lock is the run's.

        Raises:
            InvalidSharedArrayError: a bad shape, dtype or file.
            SharedMemoryFullError: ``/dev/shm`` (or ``shm_budget``) has no room for it.
            SharedNameTakenError: a live array has ``name`` with another shape, dtype
                or file.
        """
        if path is None and dtype is None:
            dtype = "float64"
        call = SharedArrayCall(
            shape, _dtype_arg(dtype), name, None if path is None else os.fspath(path)
        )
        return await self._shared_array(call)

    async def share(self, array: npt.ArrayLike, *, name: str | None = None) -> SharedArray:
        """Copy ``array`` into a new shared array and return its handle.

        Raises:
            SharedNameTakenError: a live shared array already has ``name`` (``share``
                always makes a new array; use ``shared_array`` to find a named one).
        """
        import numpy as np  # here: a script that shares no array never loads numpy

        data = np.asarray(array)
        call = SharedArrayCall(data.shape, data.dtype.str, name, None, exclusive=True)
        handle = await self._shared_array(call)
        handle.view(writable=True)[...] = data
        return handle

    @abstractmethod
    async def semaphore(self, value: int, *, name: str | None = None) -> SharedSemaphore:
        """Create a counting semaphore with ``value`` slots, shared by every actor.

        ``async with sem:`` takes a slot and gives it back; a holder that dies gives its
        slot back at once, and the next holder of it is told (``Permit``). A ``name`` is
        unique among live semaphores: asking again with the same ``value`` returns the
        same semaphore.

        Raises:
            InvalidArgumentError: ``value`` is not an int from 1 up.
            SharedNameTakenError: a live semaphore has ``name`` with another value.
        """

    @abstractmethod
    async def free(self, handle: SharedArray | SharedSemaphore) -> None:
        """Release a shared array's memory (or a semaphore) before the run ends.

        Views already mapped stay valid; any later use of the handle raises
        ``StaleHandleError``. A file-backed array's ``.npy`` file is kept.
        """

    # -- what each side implements ----------------------------------------------------

    @abstractmethod
    async def _spawn(self, call: SpawnCall) -> ActorRef: ...

    @abstractmethod
    async def _supervisor(self, options: SupervisorOptions) -> Supervisor: ...

    @abstractmethod
    async def _shared_array(self, call: SharedArrayCall) -> SharedArray: ...


def _dtype_arg(dtype: npt.DTypeLike | None) -> object:
    # dtype objects and type objects travel as their string form: plain data on the wire
    if dtype is None:
        return None
    import numpy as np

    try:
        return np.dtype(dtype).str
    except TypeError:
        return dtype


class ActorContext(RuntimeServices):
    """The runtime's services, reachable from inside an actor as ``self.context``.

    The same calls as ``Runtime`` (spawn, supervisor, lookup, stop, shared memory), plus
    what only an actor does: watch other actors, and send itself messages later. The
    runtime's process stays the only one that starts OS processes: ``spawn`` here asks it
    to start the child and returns the ref once the child runs.
    """

    @property
    @abstractmethod
    def run_id(self) -> str:
        """The id of the run this actor belongs to (it names the log directory)."""

    @abstractmethod
    async def stop(self, ref: ActorRef | None = None) -> None:
        """Stop ``ref`` as ``Runtime.stop`` does, or this actor itself when ``ref`` is None.

        Stopping itself returns at once: the actor finishes the current message, handles
        what is already in its mailbox, runs ``on_stop`` and exits.
        """

    @abstractmethod
    async def watch(self, ref: ActorRef) -> None:
        """Receive ``actors.Terminated(ref, reason)`` once ``ref`` has ended for good.

        Restarts are not reported: a restarted actor is still the same actor. Watching an
        actor that has already ended sends the message at once.
        """

    @abstractmethod
    async def unwatch(self, ref: ActorRef) -> None:
        """Stop watching ``ref``."""

    @abstractmethod
    def send_after(self, delay: float, message: object) -> Timer:
        """Send ``message`` to this actor itself after ``delay`` seconds."""

    @abstractmethod
    def send_every(self, interval: float, message: object) -> Timer:
        """Send ``message`` to this actor every ``interval`` seconds, first after one interval.

        A tick waits while the mailbox is full; ticks missed meanwhile are skipped.
        """
