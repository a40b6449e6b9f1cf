"""Services: ``actors.RuntimeServices`` checked and turned into requests, on either side.

``Runtime`` (in the script's process) and an actor's context (in the actor's process)
both derive from it: mistakes fail at the call site, with the same checks and defaults on
both sides, and each side only says how a request reaches the driver.
"""

from __future__ import annotations

import inspect
from abc import abstractmethod
from typing import Any

from actors import (
    Actor,
    ActorRef,
    Backoff,
    InvalidArgumentError,
    InvalidSpawnError,
    InvalidSupervisorError,
    MessageNotSerializableError,
    RuntimeServices,
    SharedArray,
    SharedSemaphore,
    Supervisor,
)
from actors._checks import optional_seconds, seconds
from actors._context import SharedArrayCall, SpawnCall, SupervisorOptions
from actors._record import replace

from ._config import RuntimeConfig
from .wire.codec import dumps
from .wire.protocol import (
    ChildOptions,
    CreateSemaphore,
    CreateSharedArray,
    CreateSupervisor,
    Free,
    Lookup,
    RequestBody,
    SpawnActor,
    StopActor,
)
from .wire.seams import Outbox

__all__ = ["Services", "check_child_options", "check_supervisor", "prepare_spawn"]

_STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")


class Services(RuntimeServices):
    """The shared calls, delivered as typed requests through ``_request``."""

    @property
    @abstractmethod
    def _config(self) -> RuntimeConfig: ...

    @property
    @abstractmethod
    def _transport(self) -> Outbox: ...

    @abstractmethod
    async def _request(self, body: RequestBody) -> Any:
        """Have the driver carry out ``body``; return its answer or raise its error."""

    async def _spawn(self, call: SpawnCall) -> ActorRef:
        config = self._config
        child = check_child_options(call)
        size = config.mailbox_size if call.mailbox_size is None else call.mailbox_size
        kwargs, init = call.kwargs, call.init_kwargs
        if init is not None:
            if not isinstance(init, dict) or not all(isinstance(key, str) for key in init):
                raise InvalidSpawnError(
                    "init_kwargs must be a dict of keyword arguments for the actor's "
                    f"__init__, such as {{'name': 'alice'}}, not {init!r}"
                )
            if both := sorted(kwargs.keys() & init.keys()):
                raise InvalidSpawnError(
                    f"spawn() got {', '.join(map(repr, both))} both as a keyword argument "
                    "and in init_kwargs; pass each once"
                )
            kwargs = {**kwargs, **init}
        payload = prepare_spawn(
            call.actor_class,
            call.args,
            kwargs,
            size,
            config.max_message_size,
            by_value=config.backend == "ray",
        )
        if call.supervisor is not None and not isinstance(call.supervisor, Supervisor):
            raise InvalidSpawnError(
                f"supervisor must be an actors.Supervisor, not {call.supervisor!r}"
            )
        body = SpawnActor(
            call.actor_class.__name__, payload, call.name, size, child, call.supervisor
        )
        ref: ActorRef = await self._request(body)
        await self._transport.ensure_connected(ref)
        return ref

    async def _supervisor(self, options: SupervisorOptions) -> Supervisor:
        sup: Supervisor = await self._request(check_supervisor(options))
        return sup

    async def lookup(self, name: str) -> ActorRef:
        ref: ActorRef = await self._request(Lookup(name))
        await self._transport.ensure_connected(ref)
        return ref

    async def stop(self, ref: ActorRef) -> None:
        if not isinstance(ref, ActorRef):
            raise InvalidArgumentError(f"stop() takes an ActorRef, not {ref!r}")
        await self._request(StopActor(ref))

    async def _shared_array(self, call: SharedArrayCall) -> SharedArray:
        array: SharedArray = await self._request(CreateSharedArray(call))
        return array

    async def semaphore(self, value: int, *, name: str | None = None) -> SharedSemaphore:
        sem: SharedSemaphore = await self._request(CreateSemaphore(value, name))
        return sem

    async def free(self, handle: SharedArray | SharedSemaphore) -> None:
        await self._request(Free(handle))


def check_child_options(options: SpawnCall) -> ChildOptions:
    """Validate spawn's supervision options; raise ``InvalidSpawnError`` saying what is allowed."""
    if options.restart not in ("permanent", "transient", "temporary"):
        raise InvalidSpawnError(
            f"restart must be 'permanent', 'transient' or 'temporary', not {options.restart!r}"
        )
    if options.on_error not in ("crash", "resume"):
        raise InvalidSpawnError(f"on_error must be 'crash' or 'resume', not {options.on_error!r}")
    near = options.colocate_with
    if near is not None and not isinstance(near, (SharedArray, SharedSemaphore)):
        raise InvalidSpawnError(
            "colocate_with must be a shared array or semaphore handle (from "
            f"rt.shared_array, rt.share or rt.semaphore), not {near!r}"
        )
    return ChildOptions(
        options.restart,
        options.on_error,
        optional_seconds("message_deadline", options.message_deadline, error=InvalidSpawnError),
        optional_seconds("hang_timeout", options.hang_timeout, error=InvalidSpawnError),
        near.node if near is not None else "",
    )


def check_supervisor(options: SupervisorOptions) -> CreateSupervisor:
    """Validate a supervisor's arguments; raise ``InvalidSupervisorError`` saying what's allowed."""
    if options.strategy not in _STRATEGIES:
        raise InvalidSupervisorError(
            f"strategy must be 'one_for_one', 'one_for_all' or 'rest_for_one', "
            f"not {options.strategy!r}"
        )
    max_restarts = options.max_restarts
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise InvalidSupervisorError(f"max_restarts must be an int >= 0, not {max_restarts!r}")
    period = seconds("period", options.period, error=InvalidSupervisorError)
    if options.backoff is not None and not isinstance(options.backoff, Backoff):
        raise InvalidSupervisorError(
            f"backoff must be an actors.Backoff or None, not {options.backoff!r}"
        )
    if options.supervisor is not None and not isinstance(options.supervisor, Supervisor):
        raise InvalidSupervisorError(
            f"supervisor must be an actors.Supervisor, not {options.supervisor!r}"
        )
    if options.name is not None and (not isinstance(options.name, str) or not options.name):
        raise InvalidSupervisorError(
            f"a supervisor's name must be a non-empty str, not {options.name!r}"
        )
    return CreateSupervisor(replace(options, period=period))


def prepare_spawn(
    actor_class: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    mailbox_size: object,
    limit: int,
    *,
    by_value: bool = False,
) -> bytes:
    """Check a spawn request and pickle it; return the payload an actor process loads.

    ``by_value``: for Ray workers, which cannot import the script, classes defined in it
    travel by value.

    Raises:
        InvalidSpawnError: not an Actor class, a class defined inside a function, a bad
            mailbox size, or arguments its ``__init__`` cannot take.
        MessageNotSerializableError: an argument cannot be pickled (named in the error).
    """
    if not (isinstance(actor_class, type) and issubclass(actor_class, Actor)):
        what = (
            f"an instance of {type(actor_class).__name__}"
            if not isinstance(actor_class, type)
            else f"class {actor_class.__qualname__}"
        )
        raise InvalidSpawnError(
            f"spawn() takes a subclass of actors.Actor, not {what}; define "
            "`class MyActor(Actor)` and pass the class itself, not an instance"
        )
    cls_name = actor_class.__qualname__
    if "<locals>" in cls_name:
        raise InvalidSpawnError(
            f"actor class {cls_name} is defined inside a function; actor processes import "
            "their class by name, so define it at the top level of a module or script"
        )
    if isinstance(mailbox_size, bool) or not isinstance(mailbox_size, int) or mailbox_size < 1:
        raise InvalidSpawnError(
            f"mailbox_size must be a positive int (messages), not {mailbox_size!r}"
        )
    signature = inspect.signature(actor_class)
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        # __init__ parameters named like spawn's own options, which spawn keeps for itself
        params = signature.parameters.values()
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        given = {p.name for p in positional[: len(args)]} | kwargs.keys()
        own = inspect.signature(RuntimeServices.spawn).parameters.values()
        options = {p.name for p in own if p.kind is p.KEYWORD_ONLY}
        missing = [
            p
            for p in params
            if p.name in options
            and p.name not in given
            and p.default is p.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        if missing:
            clashes = [p.name for p in missing]
            one = len(clashes) == 1
            listed = " and ".join(f"{n}=" for n in clashes)
            what = "is spawn's own option" if one else "are spawn's own options"
            why = " (the actor's name for lookup and the logs)" if clashes == ["name"] else ""
            example = ", ".join(f"{n!r}: ..." for n in clashes)
            hint = (
                f"{listed} {what}{why} and never reach{'es' if one else ''} __init__: pass "
                f"__init__'s {' and '.join(clashes)} as "
                f"spawn({cls_name}, ..., init_kwargs={{{example}}})"
            )
            if all(p.kind is p.POSITIONAL_OR_KEYWORD for p in missing):
                hint += ", or positionally after the class"
        else:
            hint = "pass what its __init__ expects after the class"
        raise InvalidSpawnError(
            f"{cls_name}{signature} cannot take these spawn arguments: {exc}; {hint}"
        ) from None
    if by_value:  # the Ray backend's: loaded only there
        from .wire.ray_transport import dumps_for_ray as pickled
    else:
        pickled = dumps
    try:
        return pickled("spawn request", (actor_class, args, kwargs), limit)
    except MessageNotSerializableError:
        for index, arg in enumerate(args):
            pickled(f"spawn argument {index} of {cls_name}", arg, limit)
        for key, arg in kwargs.items():
            pickled(f"spawn argument {key!r} of {cls_name}", arg, limit)
        raise
