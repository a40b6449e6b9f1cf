"""Pickling with errors that say what to do, and exceptions that cross processes."""

from __future__ import annotations

import pickle
import re
import traceback
from typing import Any

from actors import MessageNotSerializableError, MessageTooLargeError, RemoteActorError

__all__ = [
    "RemoteTraceback",
    "dumps",
    "dumps_error",
    "loads_error",
    "message_type",
]

_TAG = re.compile(r"[A-Za-z_][\w.\-]{0,39}\Z")


def dumps(what: str, obj: object, limit: int) -> bytes:
    """Pickle ``obj`` for sending, in the caller's task, before anything is written.

    Raises:
        MessageNotSerializableError: ``obj`` cannot be pickled.
        MessageTooLargeError: the pickle is above ``limit`` bytes.
    """
    try:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise MessageNotSerializableError(what, _type_name(obj), _first_line(exc)) from exc
    if len(data) > limit:
        raise MessageTooLargeError(len(data), limit)
    return data


def message_type(message: object) -> str:
    """Name a message for logs without logging its content.

    A tuple whose first item is a short identifier-like string (the Erlang-style tag, as
    in ``("count", 5)``) is named ``tuple:count``; anything else by its type name.
    """
    if type(message) is tuple and message and type(message[0]) is str and _TAG.match(message[0]):
        return f"tuple:{message[0]}"
    return type(message).__qualname__


class RemoteTraceback(Exception):  # noqa: N818 - named like concurrent.futures
    """Carries the traceback of an exception raised in another process.

    Set as ``__cause__`` of the re-raised exception, so the handler's traceback shows in
    the asker's traceback.
    """

    def __init__(self, tb: str) -> None:
        self.tb = tb
        super().__init__(tb)

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


def dumps_error(exc: BaseException) -> bytes:
    """Pickle an exception for the asker: itself if possible, else its type and text."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    info = (f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc), tb)
    try:
        exc_data = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(exc_data)  # an exception whose __init__ takes other args fails here
    except Exception:
        exc_data = b""
    return pickle.dumps((exc_data, *info), protocol=pickle.HIGHEST_PROTOCOL)


def loads_error(data: bytes) -> BaseException:
    """Rebuild an exception from ``dumps_error``, with the remote traceback as cause."""
    exc_data, type_name, text, tb = pickle.loads(data)
    exc: BaseException
    try:
        exc = pickle.loads(exc_data) if exc_data else RemoteActorError(type_name, text)
    except Exception:
        exc = RemoteActorError(type_name, text)
    if tb:
        exc.__cause__ = RemoteTraceback(tb)
    return exc


def _type_name(obj: Any) -> str:
    cls = type(obj)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
