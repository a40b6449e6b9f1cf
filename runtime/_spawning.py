"""Spawn requests: checked where ``spawn`` is called, so mistakes fail at the call site."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from actors import Actor, Failure, InvalidSpawnError, MessageNotSerializableError

from .observe.logging import LogConfig
from .wire.codec import dumps

__all__ = ["ActorSpec", "ChildOptions", "DEFAULT_MAILBOX_SIZE", "check_options", "prepare_spawn"]

DEFAULT_MAILBOX_SIZE = 1000


@dataclass(frozen=True, slots=True)
class ActorSpec:
    """Everything an actor process needs to start; only runtime types, safe to unpickle."""

    actor_id: str
    name: str
    address: str
    mailbox_size: int
    payload: bytes  # pickled (actor_class, args, kwargs): user types, loaded after logging is up
    log: LogConfig
    max_message_size: int
    stop_timeout: float
    runtime_pid: int
    peers: frozenset[int]
    run_dir: str
    shm_threshold: int | None
    incarnation: int
    box: str  # names this incarnation (actor id and incarnation number)
    on_error: str
    heartbeat_interval: float
    busy_poll: float  # seconds an idle actor or an asker busy-polls before sleeping
    failure: Failure | None  # why the previous incarnation ended, for on_restart


@dataclass(frozen=True, slots=True)
class ChildOptions:
    """How an actor is supervised (see ``Runtime.spawn``)."""

    restart: str = "permanent"
    on_error: str = "crash"
    message_deadline: float | None = None
    hang_timeout: float | None = None


def _seconds(what: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidSpawnError(
            f"{what} must be a positive number of seconds or None, not {value!r}"
        )
    return float(value)


def check_options(
    restart: object, on_error: object, message_deadline: object, hang_timeout: object
) -> ChildOptions:
    """Validate spawn's supervision options; raise ``InvalidSpawnError`` saying what is allowed."""
    if restart not in ("permanent", "transient", "temporary"):
        raise InvalidSpawnError(
            f"restart must be 'permanent', 'transient' or 'temporary', not {restart!r}"
        )
    if on_error not in ("crash", "resume"):
        raise InvalidSpawnError(f"on_error must be 'crash' or 'resume', not {on_error!r}")
    return ChildOptions(
        str(restart),
        str(on_error),
        _seconds("message_deadline", message_deadline),
        _seconds("hang_timeout", hang_timeout),
    )


def prepare_spawn(
    actor_class: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    mailbox_size: int | None,
    limit: int,
) -> tuple[bytes, int]:
    """Check a spawn request and pickle it; return ``(payload, mailbox_size)``.

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
    if mailbox_size is None:
        mailbox_size = DEFAULT_MAILBOX_SIZE
    elif isinstance(mailbox_size, bool) or not isinstance(mailbox_size, int) or mailbox_size < 1:
        raise InvalidSpawnError(
            f"mailbox_size must be a positive int (messages), not {mailbox_size!r}"
        )
    try:
        inspect.signature(actor_class).bind(*args, **kwargs)
    except TypeError as exc:
        raise InvalidSpawnError(
            f"{cls_name}{inspect.signature(actor_class)} cannot take these spawn "
            f"arguments: {exc}; pass what its __init__ expects after the class"
        ) from None
    try:
        payload = dumps("spawn request", (actor_class, args, kwargs), limit)
    except MessageNotSerializableError:
        for index, arg in enumerate(args):
            dumps(f"spawn argument {index} of {cls_name}", arg, limit)
        for key, arg in kwargs.items():
            dumps(f"spawn argument {key!r} of {cls_name}", arg, limit)
        raise
    return payload, mailbox_size
