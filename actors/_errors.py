"""The exception tree every actor script can catch."""

from __future__ import annotations

import errno as _errno
from collections.abc import Callable

__all__ = [
    "ActorDeadError",
    "ActorNameTakenError",
    "ActorNotFoundError",
    "ActorStartError",
    "ActorsError",
    "DescriptorLimitError",
    "AskTimeoutError",
    "EscalationError",
    "InvalidArgumentError",
    "InvalidConfigError",
    "InvalidSharedArrayError",
    "InvalidSpawnError",
    "InvalidSupervisorError",
    "LockOwnerDiedError",
    "LockTimeoutError",
    "MailboxFullError",
    "MessageNotSerializableError",
    "MessageTooLargeError",
    "MissingDependencyError",
    "RemoteActorError",
    "RuntimeAlreadyRunningError",
    "RuntimeClosedError",
    "UnsupportedBackendError",
    "UnsafeDirectoryError",
    "SharedMemoryFullError",
    "StaleHandleError",
    "SupervisorNameTakenError",
    "SharedNameTakenError",
]


class ActorsError(Exception):
    """Root of every error raised by the actor runtime."""


class ActorDeadError(ActorsError):
    """The target actor is not running: it stopped, or its process died.

    ``reason`` is ``"stopped"`` (stopped on request or by shutdown), ``"died"`` (the
    process ended without stopping, e.g. killed), ``"restarting"`` (it was being
    restarted and was not back within ``restart_wait``) or ``"unreachable"`` (nothing
    listens at its address).
    """

    def __init__(self, actor: str, reason: str, detail: str = "") -> None:
        self.actor = actor
        self.reason = reason
        self.detail = detail
        what = {
            "stopped": "has stopped",
            "died": "died (its process ended without stopping)",
            "unreachable": "is not running (it stopped or died)",
            "restarting": "is being restarted and was not back in time",
        }.get(reason, reason)
        text = f"actor {actor} {what}"
        if detail:
            text += f": {detail}"
        super().__init__(
            f"{text}; look it up again with rt.lookup(name) if it was restarted, or spawn a new one"
        )

    def __reduce__(self) -> tuple[type[ActorDeadError], tuple[str, str, str]]:
        return (type(self), (self.actor, self.reason, self.detail))


class MailboxFullError(ActorsError):
    """``tell_nowait`` found no room in the receiver's bounded mailbox."""

    def __init__(self, actor: str, capacity: int) -> None:
        self.actor = actor
        self.capacity = capacity
        super().__init__(
            f"mailbox of actor {actor} is full (capacity {capacity}); "
            "await ref.tell(msg) to wait for room, or spawn it with a larger mailbox_size"
        )

    def __reduce__(self) -> tuple[type[MailboxFullError], tuple[str, int]]:
        return (type(self), (self.actor, self.capacity))


def _too_large(size: int, limit: int, stopped: bool) -> MessageTooLargeError:
    return MessageTooLargeError(size, limit, stopped=stopped)


class AskTimeoutError(ActorsError, TimeoutError):
    """An ``ask`` got no answer within its timeout."""

    def __init__(self, actor: str, timeout: float) -> None:
        self.actor = actor
        self.timeout = timeout
        super().__init__(
            f"actor {actor} did not answer within {timeout:g} s; raise the timeout, "
            "or check that its receive() returns (or settles its deferred reply)"
        )

    def __reduce__(self) -> tuple[type[AskTimeoutError], tuple[str, float]]:
        return (type(self), (self.actor, self.timeout))


class MessageNotSerializableError(ActorsError, TypeError):
    """A message, reply or spawn argument cannot be pickled; nothing was sent."""

    def __init__(self, what: str, type_name: str, cause: str) -> None:
        self.what = what
        self.type_name = type_name
        self.cause = cause
        super().__init__(
            f"{what} of type {type_name} cannot be pickled ({cause}); send plain data "
            "(numbers, strings, tuples, dataclasses, numpy arrays, ActorRefs) instead of "
            "locks, sockets, open files, lambdas or local classes"
        )

    def __reduce__(self) -> tuple[type[MessageNotSerializableError], tuple[str, str, str]]:
        return (type(self), (self.what, self.type_name, self.cause))


class MessageTooLargeError(ActorsError, ValueError):
    """A pickled message exceeds the runtime's frame limit."""

    def __init__(self, size: int, limit: int, *, stopped: bool = False) -> None:
        self.size = size
        self.limit = limit
        #: pickling stopped at ``size`` bytes, once past the limit: the whole is larger
        self.stopped = stopped
        what = f"more than {size} bytes (pickling stopped there)" if stopped else f"{size} bytes"
        super().__init__(
            f"message pickles to {what}, above the limit of {limit} bytes; send a "
            "smaller message, or raise Runtime(max_message_size=...)"
        )

    def __reduce__(self) -> tuple[Callable[..., MessageTooLargeError], tuple[int, int, bool]]:
        return (_too_large, (self.size, self.limit, self.stopped))


class ActorNotFoundError(ActorsError, LookupError):
    """No running actor has that name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"no running actor is named {name!r}; spawn it first with "
            f"rt.spawn(cls, name={name!r}), or check the spelling"
        )

    def __reduce__(self) -> tuple[type[ActorNotFoundError], tuple[str]]:
        return (type(self), (self.name,))


class ActorNameTakenError(ActorsError, ValueError):
    """Another running actor already has that name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"an actor named {name!r} is already running; pick another name, or "
            f"stop it first with rt.stop(await rt.lookup({name!r}))"
        )

    def __reduce__(self) -> tuple[type[ActorNameTakenError], tuple[str]]:
        return (type(self), (self.name,))


class InvalidSpawnError(ActorsError, TypeError):
    """``spawn`` was given something it cannot start: not an Actor class, bad arguments."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)

    def __reduce__(self) -> tuple[type[InvalidSpawnError], tuple[str]]:
        return (type(self), (self.problem,))


class ActorStartError(ActorsError):
    """The actor's process started but its ``__init__`` or ``on_start`` failed."""

    def __init__(self, actor: str, error_type: str, error: str, traceback: str = "") -> None:
        self.actor = actor
        self.error_type = error_type
        self.error = error
        self.traceback = traceback
        where = "; the traceback is in the actor's log file (and on .traceback)"
        super().__init__(
            f"actor {actor} failed to start: {error_type}: {error}{where if traceback else ''}"
        )

    def __reduce__(self) -> tuple[type[ActorStartError], tuple[str, str, str, str]]:
        return (type(self), (self.actor, self.error_type, self.error, self.traceback))


class DescriptorLimitError(ActorStartError, OSError):
    """``spawn`` (or a restart) found no free file descriptor in the script's process.

    The actor was not started and nothing of it is left; every running actor keeps
    running. ``errno`` is ``EMFILE`` (this process's limit, ``limit`` descriptors) or
    ``ENFILE`` (the system's file table is full).
    """

    def __init__(self, actor: str, limit: int, code: int, detail: str) -> None:
        self.limit = limit
        if code == _errno.ENFILE:
            what = (
                "the system's file table is full; close programs or raise fs.file-max, "
                "or stop actors you no longer need"
            )
        else:
            what = (
                f"the script's process has used all {limit} file descriptors it may open "
                "(each actor holds about 3 there); raise the limit (`ulimit -n` before starting "
                "the script, or LimitNOFILE= for a systemd service), or stop actors you no "
                "longer need"
            )
        # not ActorStartError's message: the process never started, so there is no log
        super(ActorStartError, self).__init__(f"actor {actor} was not started: {what}")
        self.actor = actor
        self.error_type = "OSError"
        self.error = detail
        self.traceback = ""
        self.errno = code

    def __reduce__(  # type: ignore[override]  # its own arguments, not ActorStartError's
        self,
    ) -> tuple[type[DescriptorLimitError], tuple[str, int, int, str]]:
        return (type(self), (self.actor, self.limit, self.errno or _errno.EMFILE, self.error))


class RemoteActorError(ActorsError):
    """A handler raised an exception that could not be rebuilt in the asker's process.

    Exceptions that pickle are re-raised with their own type instead; this stands in for
    the rest, carrying the original type name and message.
    """

    def __init__(self, error_type: str, error: str) -> None:
        self.error_type = error_type
        self.error = error
        super().__init__(f"{error_type}: {error}")

    def __reduce__(self) -> tuple[type[RemoteActorError], tuple[str, str]]:
        return (type(self), (self.error_type, self.error))


class RuntimeClosedError(ActorsError):
    """The runtime this ref or handle belongs to is not running in this process."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"{detail}; use refs inside `async with Runtime()` or inside an actor")

    def __reduce__(self) -> tuple[type[RuntimeClosedError], tuple[str]]:
        return (type(self), (self.detail,))


class InvalidSharedArrayError(ActorsError, ValueError):
    """A shared array was asked for with a shape, dtype or file it cannot have."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)

    def __reduce__(self) -> tuple[type[InvalidSharedArrayError], tuple[str]]:
        return (type(self), (self.problem,))


class SharedMemoryFullError(ActorsError, MemoryError):
    """There is no room in shared memory (``/dev/shm``, or the runtime's budget) for a segment.

    Raised when the segment is created, never later: the pages are reserved up front, so a
    full ``/dev/shm`` cannot crash a process with SIGBUS on first write.
    """

    def __init__(self, requested: int, available: int, where: str) -> None:
        self.requested = requested
        self.available = available
        self.where = where
        super().__init__(
            f"no room for {requested} bytes of shared memory: {where} has {available} bytes "
            "free; free arrays you no longer need with free(handle), raise "
            "Runtime(shm_budget=...), or give the machine or container more /dev/shm "
            "(docker run --shm-size=...)"
        )

    def __reduce__(self) -> tuple[type[SharedMemoryFullError], tuple[int, int, str]]:
        return (type(self), (self.requested, self.available, self.where))


class StaleHandleError(ActorsError):
    """A shared-array or semaphore handle whose memory no longer exists, or never did here.

    It was freed, its run has ended, or it belongs to another run.
    """

    def __init__(self, handle: str, detail: str) -> None:
        self.handle = handle
        self.detail = detail
        super().__init__(
            f"{handle} cannot be used: {detail}; create a new one with rt.shared_array(...) "
            "or rt.semaphore(...) in the running runtime and send that"
        )

    def __reduce__(self) -> tuple[type[StaleHandleError], tuple[str, str]]:
        return (type(self), (self.handle, self.detail))


class SharedArrayNotLocalError(ActorsError):
    """A shared array or semaphore was used on another machine than the one holding it.

    On the Ray backend, shared arrays and semaphores live in the memory and files of one
    node; actors elsewhere cannot map them.
    """

    def __init__(self, handle: str, node: str, here: str) -> None:
        self.handle = handle
        self.node = node
        self.here = here
        super().__init__(
            f"{handle} lives on node {node[:12]}, and this actor runs on node {here[:12]}: "
            "spawn the actors that use it with colocate_with=<the handle>, or send the "
            "data itself in messages"
        )

    def __reduce__(self) -> tuple[type[SharedArrayNotLocalError], tuple[str, str, str]]:
        return (type(self), (self.handle, self.node, self.here))


class LockTimeoutError(ActorsError, TimeoutError):
    """A shared array's lock, or a shared semaphore, was not acquired within the timeout."""

    def __init__(self, what: str, timeout: float) -> None:
        self.what = what
        self.timeout = timeout
        super().__init__(
            f"could not acquire {what} within {timeout:g} s; another actor holds it; raise "
            "the timeout, or keep critical sections short"
        )

    def __reduce__(self) -> tuple[type[LockTimeoutError], tuple[str, float]]:
        return (type(self), (self.what, self.timeout))


class LockOwnerDiedError(ActorsError):
    """The previous holder of a shared array's lock died while holding it.

    Its writes may be partial. The lock itself is free again; the array stays marked until
    someone checks or repairs it inside ``async with handle.locked(recover=True) as view:``,
    which clears the mark when the block ends without an exception.
    """

    def __init__(self, what: str, pid: int, epoch: int) -> None:
        self.what = what
        self.pid = pid
        self.epoch = epoch
        super().__init__(
            f"the holder of {what}'s lock (pid {pid}) died while holding it, after "
            f"{epoch} completed writes; its last write may be partial: check or repair the "
            "data inside `async with handle.locked(recover=True) as view:`, which clears this"
        )

    def __reduce__(self) -> tuple[type[LockOwnerDiedError], tuple[str, int, int]]:
        return (type(self), (self.what, self.pid, self.epoch))


class EscalationError(ActorsError):
    """The root supervisor gave up: a child failed more often than its restart intensity.

    Raised out of ``async with Runtime()`` after every actor was stopped, newest first.
    """

    def __init__(self, supervisor: str, actor: str, reason: str, restarts: int, period: float):
        self.supervisor = supervisor
        self.actor = actor
        self.reason = reason
        self.restarts = restarts
        self.period = period
        super().__init__(
            f"supervisor {supervisor} gave up: {actor} failed ({reason}) after {restarts} "
            f"restarts within {period:g} s, so every actor was stopped; fix the cause in its "
            "log, or allow more restarts with max_restarts= and period="
        )

    def __reduce__(self) -> tuple[type[EscalationError], tuple[str, str, str, int, float]]:
        return (type(self), (self.supervisor, self.actor, self.reason, self.restarts, self.period))


class InvalidArgumentError(ActorsError, ValueError):
    """An argument to a runtime call is out of range or of the wrong kind.

    Raised where the call is made, before anything is sent or started. ``problem`` says
    what was given and what is allowed.
    """

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)

    def __reduce__(self) -> tuple[type[InvalidArgumentError], tuple[str]]:
        return (type(self), (self.problem,))


class InvalidConfigError(InvalidArgumentError):
    """A ``Runtime(...)`` option, or the environment variable behind it, is invalid."""


class MissingDependencyError(InvalidConfigError, ImportError):
    """An option needs a package that is not installed (the message names it)."""


class InvalidSupervisorError(InvalidArgumentError):
    """A supervisor's strategy, intensity or backoff is invalid."""


class RuntimeAlreadyRunningError(ActorsError):
    """A second ``Runtime`` was entered in a process where one is already running."""

    def __init__(self) -> None:
        super().__init__(
            "a Runtime is already running in this process (the script's, or this actor's); "
            "use that one (inside an actor: self.context), or exit it before entering another"
        )

    def __reduce__(self) -> tuple[type[RuntimeAlreadyRunningError], tuple[()]]:
        return (type(self), ())


class UnsupportedBackendError(ActorsError, RuntimeError):
    """The runtime was used from an async library it does not run on."""

    def __init__(self, library: str) -> None:
        self.library = library
        super().__init__(
            f"the actor runtime runs on asyncio, not {library}; start the script with "
            "asyncio.run(main()) or anyio.run(main) (the default asyncio backend)"
        )

    def __reduce__(self) -> tuple[type[UnsupportedBackendError], tuple[str]]:
        return (type(self), (self.library,))


class UnsafeDirectoryError(ActorsError, PermissionError):
    """A directory the runtime would use for its sockets or logs is not safely this user's.

    It is another user's, a symlink, not a directory, or writable by others: someone else
    could read or replace what the runtime puts there. ``path`` is the directory,
    ``problem`` what is wrong with it and ``remedy`` what to do.
    """

    def __init__(self, path: str, problem: str, remedy: str) -> None:
        self.path = path
        self.problem = problem
        self.remedy = remedy
        super().__init__(f"{path} {problem}, so the runtime will not use it; {remedy}")

    def __reduce__(self) -> tuple[type[UnsafeDirectoryError], tuple[str, str, str]]:
        return (type(self), (self.path, self.problem, self.remedy))


class SupervisorNameTakenError(ActorsError, ValueError):
    """Another live supervisor already has that name (names are unique, as for actors)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"a supervisor named {name!r} already exists; pick another name, or spawn under "
            f"the Supervisor that the first supervisor({name!r}) returned (pass it as "
            "supervisor=)"
        )

    def __reduce__(self) -> tuple[type[SupervisorNameTakenError], tuple[str]]:
        return (type(self), (self.name,))


class SharedNameTakenError(ActorsError, ValueError):
    """A live shared array (or semaphore) has that name, but not what was asked for.

    A name finds the existing object only when the call asks for the same thing: the same
    shape, dtype and file for an array, the same value for a semaphore.
    """

    def __init__(self, kind: str, name: str, existing: str, requested: str) -> None:
        self.kind = kind
        self.name = name
        self.existing = existing
        self.requested = requested
        super().__init__(
            f"a {kind} named {name!r} already exists with {existing}, not {requested}; ask "
            f"for {existing} to use the same {kind}, pick another name, or free(handle) the "
            "existing one first"
        )

    def __reduce__(self) -> tuple[type[SharedNameTakenError], tuple[str, str, str, str]]:
        return (type(self), (self.kind, self.name, self.existing, self.requested))
