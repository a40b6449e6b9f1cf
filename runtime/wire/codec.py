"""Pickling with errors that say what to do, and exceptions that cross processes."""

from __future__ import annotations

import itertools
import pickle
import re
import traceback
import weakref
from collections.abc import Callable
from typing import Any

from actors import (
    MessageNotSerializableError,
    MessageTooLargeError,
    RemoteActorError,
    SharedMemoryFullError,
)

from ..observe.logging import EventLog
from ..shm.pool import DATA_OFFSET, SegmentPool, give_back
from ..shm.segments import attach_segment, message_segment, unlink_segment, write_segment

__all__ = [
    "Encoded",
    "RemoteTraceback",
    "Shipper",
    "dumps",
    "loads_shipped",
    "dumps_error",
    "loads_error",
    "message_type",
]

_TAG = re.compile(r"[A-Za-z_][\w.\-]{0,39}\Z")


class _TooLargeError(Exception):
    """Raised by a ``_Bounded`` output once it passes its limit (never leaves this module)."""

    def __init__(self, size: int) -> None:
        self.size = size


class _Bounded:
    """A pickler's output that refuses to grow past ``limit`` bytes.

    The pickler writes its frames here as it goes, and a large payload on its own, so
    pickling stops at the limit instead of copying a huge message first.
    """

    __slots__ = ("limit", "parts", "size")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.limit = 0

    def write(self, data: Any) -> int:
        """Take ``data``: bytes, or a buffer the pickler keeps in-band (as it is)."""
        if type(data) is pickle.PickleBuffer:
            data = bytes(data)
        size = self.size + len(data)
        if size > self.limit:
            raise _TooLargeError(size)
        self.size = size
        self.parts.append(data)
        return len(data)


class _Pickling:
    """A reusable pickler into a ``_Bounded`` output: as fast as ``pickle.dumps``."""

    __slots__ = ("_busy", "_callback", "_out", "_pickler")

    def __init__(self, buffer_callback: Callable[[pickle.PickleBuffer], bool] | None) -> None:
        self._callback = buffer_callback
        self._out = _Bounded()
        self._pickler = pickle.Pickler(self._out, 5, buffer_callback=buffer_callback)
        self._busy = False

    def dumps(self, obj: object, limit: int) -> bytes:
        """Pickle ``obj``; raise ``_TooLargeError`` as soon as it passes ``limit`` bytes."""
        if self._busy:  # pickling code sent a message: a pickler of its own for that one
            return _Pickling(self._callback).dumps(obj, limit)
        out = self._out
        parts: list[bytes] = []
        out.parts = parts
        out.size = 0
        out.limit = limit
        self._busy = True
        try:
            self._pickler.dump(obj)
        finally:
            self._busy = False
            self._pickler.clear_memo()
            out.parts = []
        return parts[0] if len(parts) == 1 else b"".join(parts)


_plain_pickling = _Pickling(None)


def dumps(what: str, obj: object, limit: int) -> bytes:
    """Pickle ``obj`` for sending, in the caller's task, before anything is written.

    Raises:
        MessageNotSerializableError: ``obj`` cannot be pickled.
        MessageTooLargeError: the pickle is above ``limit`` bytes (pickling stops there).
    """
    try:
        return _plain_pickling.dumps(obj, limit)
    except _TooLargeError as exc:
        raise MessageTooLargeError(exc.size, limit, stopped=True) from None
    except Exception as exc:
        raise MessageNotSerializableError(what, _type_name(obj), _first_line(exc)) from exc


#: a large buffer sent out of band: (segment name, bytes, offset of the data in it); an
#: offset of 0 is a one-off segment its reader unlinks, else a segment lent from a pool
Placement = tuple[str, int, int]


class _Shipped:
    """A pickle whose large buffers travel in shared-memory segments, listed by name."""

    __slots__ = ("data", "segments")

    def __init__(self, segments: tuple[Placement, ...], data: bytes) -> None:
        self.segments = segments
        self.data = data

    def __reduce__(self) -> tuple[Callable[..., _Shipped], tuple[tuple[Placement, ...], bytes]]:
        return (_unpickle_shipped, (self.segments, self.data))


def _unpickle_shipped(segments: tuple[Placement, ...], data: bytes) -> _Shipped:
    # named like ActorRef's ``_unpickle_ref``: the receiver's fast decode looks for either
    # with one search
    return _Shipped(segments, data)


class _SegmentNeededError(Exception):
    """``Shipper.plain`` met a buffer large enough for shared memory."""


class Encoded:
    """A pickled message, plus the names of the segments that carry its large arrays."""

    __slots__ = ("body", "pool", "segments")

    def __init__(
        self, body: bytes, segments: tuple[str, ...] = (), pool: SegmentPool | None = None
    ) -> None:
        self.body = body
        self.segments = segments
        self.pool = pool

    def discard(self) -> None:
        """The message will not be sent: free its pool segments, remove one-off ones."""
        for name in self.segments:
            if self.pool is not None and self.pool.owns(name):
                self.pool.give_back(name)
            else:
                unlink_segment(name)
        self.segments = ()


class Shipper:
    """Moves large buffers (numpy arrays) of outgoing messages into shared memory.

    A large buffer goes into a segment of the sender's pool (``_pool``), lent to the
    receiving process, which gives it back when done. When the pool has none to lend, or
    the receiver's pid is unknown, it goes into a one-off segment named after the run, the
    receiving process and the sender, which the receiver unlinks as it unpickles; if the
    receiver dies first, the runtime unlinks what was addressed to it.
    """

    def __init__(
        self,
        run_id: str,
        sender_id: str,
        threshold: int | None,
        log: EventLog | None = None,
    ) -> None:
        self.run_id = run_id
        self.sender_id = sender_id
        self.threshold = threshold
        self._log = log
        self._fell_back = False  # a large buffer went in-band: /dev/shm was full (logged once)
        self._ids = itertools.count(1)
        # the segments of the message being pickled (encode is never reentered: pickling
        # runs no code of ours that sends)
        self._box = ""
        self._pid = 0
        self._shipped: list[Placement] = []
        self.pool = SegmentPool(run_id, sender_id)
        self._plain = _Pickling(self._in_band)
        self._shipping = _Pickling(self._out_of_band)
        self._limit = 0  # of the message being encoded: a buffer may go in-band under it

    def encode(self, what: str, obj: object, limit: int, box: str, pid: int = 0) -> Encoded:
        """Pickle ``obj`` for receiver ``box`` (process ``pid``, 0 if unknown).

        Raises clear errors before anything is sent.

        Raises:
            MessageNotSerializableError: ``obj`` cannot be pickled.
            MessageTooLargeError: the pickle, large arrays aside, is above ``limit`` bytes.
            SharedMemoryFullError: no room in /dev/shm for a large array.
        """
        if self.threshold is None:
            return Encoded(dumps(what, obj, limit))
        self._box = box
        self._pid = pid
        self._limit = limit
        shipped = self._shipped
        try:
            try:
                data = self._shipping.dumps(obj, limit)
            except _TooLargeError as exc:
                raise MessageTooLargeError(exc.size, limit, stopped=True) from None
            except SharedMemoryFullError:
                raise
            except Exception as exc:
                raise MessageNotSerializableError(what, _type_name(obj), _first_line(exc)) from exc
            if shipped:
                data = pickle.dumps(_Shipped(tuple(shipped), data), protocol=5)
            if len(data) > limit:
                raise MessageTooLargeError(len(data), limit)
        except BaseException:
            Encoded(b"", tuple(name for name, _, _ in shipped), self.pool).discard()
            shipped.clear()
            raise
        if not shipped:
            return Encoded(data)
        names = tuple(name for name, _, _ in shipped)
        shipped.clear()
        return Encoded(data, names, self.pool)

    def plain(self, obj: object, limit: int) -> bytes | None:
        """The pickle of ``obj`` if it needs no segment and fits in ``limit``, else None.

        The hot path of a small tell: on None the caller takes ``encode``, which ships the
        large arrays or raises the error that says what is wrong.
        """
        try:
            return self._plain.dumps(obj, limit)
        except Exception:  # too large, a segment needed, or not picklable: encode says
            return None

    def _in_band(self, buffer: pickle.PickleBuffer) -> bool:
        if self.threshold is not None and buffer.raw().nbytes >= self.threshold:
            raise _SegmentNeededError
        return True

    def _out_of_band(self, buffer: pickle.PickleBuffer) -> bool:
        raw = buffer.raw()
        assert self.threshold is not None
        if raw.nbytes < self.threshold:
            return True  # small: keep it in the pickle stream
        if self._pid:
            lent = self.pool.lend(raw, self._pid)
            if lent is not None:
                self._shipped.append((lent, raw.nbytes, DATA_OFFSET))
                return False
        name = message_segment(self.run_id, self._box, self.sender_id, next(self._ids))
        try:
            name = write_segment(name, raw)  # the stem plus a random part
        except SharedMemoryFullError:
            if raw.nbytes > self._limit:
                raise  # the socket cannot take it either
            # /dev/shm is full: this one travels in the message itself
            if not self._fell_back and self._log is not None:
                self._log.warning(
                    "segment.fallback",
                    nbytes=raw.nbytes,
                    reason="/dev/shm is full: large arrays go through the socket meanwhile",
                )
            self._fell_back = True
            return True
        self._shipped.append((name, raw.nbytes, 0))
        return False


def loads_shipped(body: bytes) -> tuple[Any, tuple[Placement, ...]]:
    """Unpickle a message body; map the segments of its large arrays.

    One-off segments are unlinked at once; lent ones are given back to their pool when
    the last array viewing them is collected. Returns the value and the segments it came
    with, for the logs.
    """
    value = pickle.loads(body)
    if type(value) is not _Shipped:
        return value, ()
    segments = value.segments
    views = []
    try:
        for name, nbytes, offset in segments:
            mapping = attach_segment(name, offset + nbytes, f"large array of a message ({name})")
            if offset:
                weakref.finalize(mapping, give_back, name)
            # numpy rebuilds each array as a view of the mapping: no copy
            views.append(memoryview(mapping)[offset : offset + nbytes])
    except BaseException:
        for name, _, offset in segments[len(views) + 1 :]:
            if offset:
                give_back(name)  # never mapped here: nothing else will give it back
        raise
    finally:
        for name, _, offset in segments:
            if not offset:
                unlink_segment(name)  # the only reader is here: the mapping keeps the memory
    return pickle.loads(value.data, buffers=views), segments


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
