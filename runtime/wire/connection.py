"""FramedConnection: one socket, a frame reader, and a coalescing writer.

``push`` hands a frame to the kernel at once when nothing is waiting to be written.
``push_batched`` (tells) does so for the first frame of an event-loop step and writes the
rest of the step's frames together when it ends (``_batching``). Frames that cannot go at
once (the socket is full, or others wait) are written by one writer task, many per
``send``.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
from collections.abc import Iterable
from typing import cast

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

from .batching import end_of_step, flush_now, pending
from .frames import HEADER, FrameDecoder, Kind, ProtocolError, encode

__all__ = ["STALL_LIMIT", "WRITE_CAP", "ConnectionLostError", "FramedConnection", "close_all"]

_READ_SIZE = 1 << 18
#: frames held for the end of a loop step are written at once past this many bytes
_HOLD_LIMIT = 1 << 16
#: bytes queued to one peer (waiting for it to read) past which it is ``choked``: the
#: mailbox then handles none of its messages, so none of its replies, until it reads
WRITE_CAP = 32 << 20
#: seconds a choked peer may read nothing before it is disconnected
STALL_LIMIT = 5.0
#: the writer sends at most this much per call, so that a slow reader's progress shows
_WRITE_CHUNK = 1 << 20


class ConnectionLostError(Exception):
    """Internal: the peer closed or broke the connection."""


class FramedConnection:
    """Reads and writes frames on a byte stream; subclasses handle incoming frames."""

    def __init__(self, stream: anyio.abc.ByteStream, max_body: int) -> None:
        self.stream = stream
        self._decoder = FrameDecoder(max_body + 64)
        self._wbuf: list[bytes] = []
        self._wake: anyio.Event | None = None
        self._eof_after_flush = False
        self._flushed: anyio.Event | None = None
        self._writing = False
        raw = stream.extra(SocketAttribute.raw_socket, None)
        self._raw: socket.socket | None = raw
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = -1
        self._frames: list[tuple[int, int, bytes]] = []
        self._read_waiter: asyncio.Future[None] | None = None
        self._read_error: BaseException | None = None
        self._held: list[bytes] = []  # frames held until the loop step ends (push_batched)
        self._held_bytes = 0
        self._poller: select.poll | None = None  # for wait_readable, made on first use
        self._in_step = False
        self.closed = False
        #: set once the socket is closed and the connection's tasks are done with it
        self.finished = anyio.Event()
        self._progress: anyio.Event | None = None  # set when the writer sends a chunk

    #: bytes queued for the writer task (the socket took no more), and whether that is
    #: ``WRITE_CAP`` or more; class defaults, set per connection once frames queue up
    backlog = 0
    choked = False

    def push(self, frame: bytes) -> None:
        """Write ``frame`` now if the socket takes it, else queue it; never blocks.

        Frames held by ``push_batched`` go first, on this connection and every other one:
        what a process told before it answers or asks is on its way before the answer or
        the question, so whoever reacts to those finds the tells there.
        """
        if pending():
            flush_now()
        if self._held:
            self._held.append(frame)
            self._release()
            return
        self._write(frame)

    def push_batched(self, kind: int, ident: int, body: bytes) -> None:
        """As ``push_frame``, but frames after the first of a loop step go out together.

        They are written when the step ends (``_batching``), or once ``_HOLD_LIMIT``
        bytes are held, or before any frame sent with ``push``: order is kept.
        """
        if not self._in_step:
            self._in_step = True
            end_of_step(self._end_step)
            self._write(HEADER.pack(len(body), kind, ident) + body)
            return
        held = self._held
        held.append(HEADER.pack(len(body), kind, ident))
        held.append(body)
        self._held_bytes += len(body)
        if self._held_bytes >= _HOLD_LIMIT:
            self._release()

    def _end_step(self) -> None:
        self._in_step = False
        if self._held:
            self._release()

    def _release(self) -> None:
        data = b"".join(self._held)
        self._held.clear()
        self._held_bytes = 0
        self._write(data)

    def _write(self, frame: bytes) -> None:
        if self.closed:
            return
        if not self._wbuf and not self._writing and self._raw is not None:
            try:
                sent = self._raw.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # broken: the writer finds out and closes the connection
            if sent == len(frame):
                return
            frame = frame[sent:]
        self._wbuf.append(frame)
        self.backlog += len(frame)
        if self.backlog >= WRITE_CAP:
            self.choked = True
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    def push_frame(self, kind: Kind, ident: int = 0, body: bytes = b"") -> None:
        self.push(encode(kind, ident, body))

    def send_eof_after_flush(self) -> None:
        """Half-close the write side once queued frames are written."""
        if self._held:
            self._release()
        self._eof_after_flush = True
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    async def run_writer(self) -> None:
        """Write queued frames until the connection closes."""
        stream = self.stream
        try:
            while not self.closed:
                if not self._wbuf:
                    if self._eof_after_flush:
                        self._eof_after_flush = False
                        if isinstance(stream, anyio.abc.SocketStream):
                            await stream.send_eof()
                        continue
                    self._wake = wake = anyio.Event()
                    await wake.wait()
                    continue
                data = b"".join(self._wbuf) if len(self._wbuf) > 1 else self._wbuf[0]
                self._wbuf.clear()
                self._writing = True
                try:
                    if len(data) <= _WRITE_CHUNK:
                        await stream.send(data)
                        self._sent(len(data))
                    else:
                        await self._send_chunks(stream, data)
                finally:
                    self._writing = False
                if not self._wbuf and self._flushed is not None:
                    self._flushed.set()
                    self._flushed = None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self._close_output()
        finally:
            if self._flushed is not None:
                self._flushed.set()
            self._wake_progress()

    async def _send_chunks(self, stream: anyio.abc.ByteStream, data: bytes) -> None:
        view = memoryview(data)
        for start in range(0, len(data), _WRITE_CHUNK):
            chunk = view[start : start + _WRITE_CHUNK]
            # anyio's socket streams send any buffer (they take a memoryview of it)
            await stream.send(cast(bytes, chunk))
            self._sent(len(chunk))

    def _sent(self, n: int) -> None:
        self.backlog = max(0, self.backlog - n)  # (0 already if the buffers were dropped)
        if self.choked and self.backlog < WRITE_CAP:
            self.choked = False
        self._wake_progress()

    def _wake_progress(self) -> None:
        if self._progress is not None:
            self._progress.set()
            self._progress = None

    async def wait_room(self, stall_limit: float) -> bool:
        """Wait until this connection is no longer ``choked`` (or is closed).

        Return False if its peer read nothing (the writer sent no chunk) for
        ``stall_limit`` seconds meanwhile.
        """
        while self.choked and not self.closed:
            self._progress = progress = anyio.Event()
            with anyio.move_on_after(stall_limit) as scope:
                await progress.wait()
            if scope.cancelled_caught:
                return False
        return True

    def abort(self) -> None:
        """End the connection both ways now, and free what it buffered."""
        self.shutdown()
        self._drop_buffers()

    async def wait_flushed(self) -> None:
        """Wait until every queued frame is written (or the connection is closed)."""
        if self._held:
            self._release()
        while self._wbuf and not self.closed:
            if self._flushed is None:
                self._flushed = anyio.Event()
            await self._flushed.wait()

    async def read_frames(self) -> list[tuple[int, int, bytes]]:
        """Return the next batch of frames.

        The socket stays registered with the event loop while the connection lives, and
        is read in the loop's callback: no registration and no extra loop round trip per
        read, which anyio's stream ``receive`` costs.

        Raises:
            ConnectionLostError: the peer closed or broke the connection.
            ProtocolError: the peer sent an invalid frame.
        """
        while not self._frames:
            if self._read_error is not None:
                error = self._read_error
                if isinstance(error, ProtocolError):
                    raise ProtocolError(str(error))  # a copy: raising adds a traceback
                raise ConnectionLostError(type(error).__name__)
            if self._loop is None:
                self._start_reading()
            assert self._loop is not None
            self._read_waiter = waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._read_waiter = None
        frames, self._frames = self._frames, []
        return frames

    def _start_reading(self) -> None:
        raw = self._raw
        self._loop = asyncio.get_running_loop()
        if raw is None:
            self._read_error = ConnectionLostError("no socket")
            return
        self._fd = raw.fileno()
        self._loop.add_reader(self._fd, self._on_readable)

    def _stop_reading(self) -> None:
        if self._fd >= 0 and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._fd = -1

    def _on_readable(self) -> None:
        if self._read_available():
            self._wake_reader()

    def _read_available(self) -> bool:
        """Read what the socket holds now into ``_frames``; True if frames were added."""
        raw = self._raw
        assert raw is not None
        try:
            data = raw.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self._fail_reading(exc)
            return False
        if not data:
            self._fail_reading(EOFError("end of stream"))
            return False
        try:
            frames = self._decoder.feed(data)
        except ProtocolError as exc:
            self._fail_reading(exc)
            return False
        if not frames:
            return False
        self._frames.extend(frames)
        return True

    def read_now(self) -> list[tuple[int, int, bytes]]:
        """Take the frames that have arrived, reading the socket without waiting.

        For busy-polling: the caller handles them synchronously, in order, before the
        reader task (which handles whole batches synchronously too) can run again.
        """
        if self._fd < 0 or self._read_error is not None:
            return []
        self._read_available()
        frames, self._frames = self._frames, []
        return frames

    def wait_readable(self, timeout: float) -> bool:
        """Block (no event loop) until the socket has data or an error, ``timeout`` at most.

        Only once the reader has started; False at once before, and if the time ran out.
        """
        if self._fd < 0 or timeout <= 0:
            return False
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self._fd, select.POLLIN)
        return bool(self._poller.poll(timeout * 1e3))

    @property
    def writing(self) -> bool:
        """Whether frames wait for the writer task (the socket took less than given)."""
        return bool(self._wbuf) or self._writing

    def fileno(self) -> int:
        """The socket's file descriptor, or -1."""
        return self._raw.fileno() if self._raw is not None else -1

    def fail_reading(self, error: BaseException) -> None:
        """Stop reading: the reader task raises ``error`` (or ``ConnectionLostError``)."""
        self._fail_reading(error)

    @property
    def read_failed(self) -> bool:
        return self._read_error is not None

    def _fail_reading(self, error: BaseException) -> None:
        # without its traceback: its frames hold this connection, and the cycle would keep
        # the connection (and its buffers) until a full garbage collection
        self._read_error = error.with_traceback(None)
        self._stop_reading()
        self._wake_reader()

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def shutdown(self) -> None:
        """End both directions now; the reader then sees EOF and its task winds down.

        Preferred over cancelling a task blocked in ``receive`` or closing the stream under
        it: anyio's raw-socket streams can then hit a set_result on a finished future when
        data arrives in the same loop iteration.
        """
        self._close_output()
        raw = self.stream.extra(SocketAttribute.raw_socket, None)
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.shutdown(socket.SHUT_RDWR)
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    def _close_output(self) -> None:
        """Write nothing more: what waits to be written never will, and is freed.

        So a closed connection is never ``choked``: the mailbox does not wait for it.
        """
        self.closed = True
        self._wbuf.clear()
        self._held.clear()
        self._held_bytes = 0
        self.backlog = 0
        self.choked = False
        self._wake_progress()

    def _drop_buffers(self) -> None:
        # the connection object may outlive its use (an envelope, a traceback refers to
        # it): what it buffered must not
        self._close_output()
        self._decoder.clear()
        self._frames = []

    async def aclose(self) -> None:
        """Close the socket and free what it buffered; idempotent."""
        self._stop_reading()
        if self._read_error is None:
            self._read_error = ConnectionLostError("closed")
        self._wake_reader()
        self._drop_buffers()
        if self._wake is not None:
            self._wake.set()
            self._wake = None
        with anyio.CancelScope(shield=True):
            await self.stream.aclose()
        self.finished.set()


async def close_all(conns: Iterable[FramedConnection]) -> None:
    """Close connections in order: write what is queued, end both directions, wait.

    Frames queued last (CLOSING, replies, tells sent from ``on_stop``) are written first;
    then ``shutdown`` lets each reader see EOF and its serving task close the socket.
    """
    conns = list(conns)
    with anyio.move_on_after(0.5):
        for conn in conns:
            await conn.wait_flushed()
    for conn in conns:
        conn.shutdown()
    with anyio.move_on_after(1.0):
        for conn in conns:
            await conn.finished.wait()


__all__ += ["ProtocolError"]
