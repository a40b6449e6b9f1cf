"""A bad peer costs only its own connection: the actor lives on and stays reachable.

Each test talks to a real actor through a raw Unix socket of its own (the test's process
is a process of the run, so the mailbox lets it in), writing frames by hand.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import pickle
import resource
import socket
import tracemalloc
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream

from actors import Actor
from runtime import Runtime
from runtime.wire.connection import STALL_LIMIT, WRITE_CAP
from runtime.wire.frames import HEADER, FrameDecoder, Kind, encode
from tests.helpers import read_events

pytestmark = pytest.mark.anyio

MiB = 1 << 20


class Target(Actor):
    """The actor under attack; its answers let a test look inside its process.

    With ``watch_memory``, it traces its allocations and never collects garbage cycles:
    memory held by a cycle then stays held, as it would until some later full collection.
    """

    def __init__(self, watch_memory: bool = False) -> None:
        super().__init__()
        self.watch_memory = watch_memory
        self.fillers: list[int] = []
        self.soft_limit = 0
        self.kept: list[int] = []  # descriptors left open until the process ends

    async def on_start(self) -> None:
        if self.watch_memory:
            gc.disable()
            tracemalloc.start()

    async def receive(self, message: Any) -> Any:
        match message:
            case "pid":
                return os.getpid()
            case ("big", int(size)):
                return b"x" * size
            case "memory":  # (now, peak) bytes allocated since on_start
                return tracemalloc.get_traced_memory()
            case "fds":
                return len(os.listdir("/proc/self/fd"))
            case "starve":
                return self._use_up_descriptors()
            case "restore":
                for fd in self.fillers:
                    os.close(fd)
                self.fillers.clear()
                _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                resource.setrlimit(resource.RLIMIT_NOFILE, (self.soft_limit, hard))
                return None
            case "break listener":
                return self._replace_listener()
        raise ValueError(f"unexpected message {message!r}")

    def _use_up_descriptors(self) -> int:
        """Lower this process's descriptor limit so that no new one can be opened."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.soft_limit = soft
        top = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (top + 1, hard))
        with contextlib.suppress(OSError):  # fill the holes below the limit
            while True:
                self.fillers.append(os.open(os.devnull, os.O_RDONLY))
        return len(self.fillers)

    def _replace_listener(self) -> bool:
        """Put a socket that does not listen where the event loop accepts connections.

        The listening socket stays open (and watched by the loop) under another
        descriptor: a connection to it wakes the loop, whose accept then fails for good.
        """
        for name in os.listdir("/proc/self/fd"):
            try:
                sock = socket.socket(fileno=int(name))
            except OSError:
                continue  # not a socket (or the listing's own descriptor, gone)
            try:
                listening = (
                    sock.family == socket.AF_UNIX
                    and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                    and sock.getsockname() == self.ref.address
                )
            finally:
                sock.detach()  # the descriptor stays the event loop's
            if listening:
                self.kept.append(os.dup(int(name)))
                with socket.socket(socket.AF_UNIX) as plain:
                    os.dup2(plain.fileno(), int(name))
                knock = socket.socket(socket.AF_UNIX)
                knock.connect(self.ref.address)
                self.kept.append(knock.detach())
                return True
        return False


def hello(name: str, n: int = 1) -> bytes:
    """A well-formed HELLO frame, as a sender's transport writes it first."""
    body = {"name": name, "actor_id": name, "pid": os.getpid(), "box": f"a{os.getpid()}.{n}"}
    return encode(Kind.HELLO, 0, json.dumps(body).encode())


async def read_frames_until(
    stream: SocketStream, decoder: FrameDecoder, kind: Kind
) -> list[tuple[int, int, bytes]]:
    """Read frames up to and including the first of ``kind``."""
    frames: list[tuple[int, int, bytes]] = []
    while not any(k == kind for k, _, _ in frames):
        frames += decoder.feed(await stream.receive())
    return frames


async def read_credit(stream: SocketStream, decoder: FrameDecoder) -> int:
    """Read frames until the mailbox has granted some room; return how much.

    Another sender (the script's own connection) may hold all the room when this one
    connects: a grant of none then says "wait", and room comes once it gives some back.
    """
    credit = 0
    while not credit:
        frames = await read_frames_until(stream, decoder, Kind.CREDIT)
        credit += sum(i for k, i, _ in frames if k == Kind.CREDIT)
    return credit


async def read_to_end(stream: SocketStream) -> int:
    """Read until the other side closes the connection; return the bytes read."""
    got = 0
    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
        while True:
            got += len(await stream.receive(1 << 20))
    return got


def actor_events(log_dir: Path, actor: str, event: str) -> list[dict[str, Any]]:
    return [e for e in read_events(log_dir) if e["event"] == event and e.get("actor") == actor]


def logged(log_dir: Path, event: str) -> bool:
    """Whether any process of the run has written ``event`` to its log yet."""
    mark = f'"event":"{event}"'
    return any(mark in path.read_text() for path in log_dir.glob("*.jsonl"))


BAD_HELLOS = [
    b"[1, 2]",
    b"null",
    b'"victim"',
    b"42",
    b"[" * 100_000 + b"]" * 100_000,
    b"[" * 4000 + b"]" * 4000,  # small, and still past the parser's recursion limit
    b'{"name": ["x"], "actor_id": "x", "box": "a1.1"}',
    b'{"name": "x"}',
    b"\xff\xfe",
]


async def test_malformed_hellos_cost_only_their_own_connection_and_the_actor_keeps_answering(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        victim = await rt.spawn(Target, name="victim")
        pid = await victim.ask("pid", timeout=10)
        for body in BAD_HELLOS:
            with anyio.fail_after(10):
                async with await anyio.connect_unix(victim.address) as stream:
                    await stream.send(encode(Kind.HELLO, 0, body))
                    assert await read_to_end(stream) == 0  # closed, not greeted
        # the same process: it neither died nor was restarted
        assert await victim.ask("pid", timeout=10) == pid
    rejected = actor_events(tmp_path, "victim", "connection.protocol_error")
    assert len(rejected) == len(BAD_HELLOS)
    assert all(e["level"] == "warning" and "HELLO" in e["error"] for e in rejected)
    assert not actor_events(tmp_path, "victim", "actor.crashed")


async def test_an_actor_out_of_descriptors_logs_the_failed_accept_and_lets_senders_in_later(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        target = await rt.spawn(Target, name="starved")
        pid = await target.ask("pid", timeout=10)  # connected before it runs out
        assert await target.ask("starve", timeout=10) >= 0
        async with await anyio.connect_unix(target.address) as early:
            # the kernel queues the connection; the actor cannot accept it yet
            await early.send(hello("early"))
            with anyio.fail_after(10):
                while not logged(tmp_path, "mailbox.accept_failed"):
                    await target.ask("pid", timeout=10)  # a barrier, not a sleep
            await target.ask("restore", timeout=10)
            with anyio.fail_after(10):
                greeting = await read_frames_until(early, FrameDecoder(MiB), Kind.HELLO)
            assert json.loads(greeting[-1][2])["capacity"] > 0
        async with await anyio.connect_unix(target.address) as late:
            decoder = FrameDecoder(MiB)
            await late.send(hello("late", 2))
            with anyio.fail_after(10):
                await read_credit(late, decoder)
                await late.send(encode(Kind.ASK, 7, pickle.dumps("pid")))
                frames = await read_frames_until(late, decoder, Kind.REPLY)
            assert [pickle.loads(b) for k, i, b in frames if k == Kind.REPLY and i == 7] == [pid]
        assert await target.ask("pid", timeout=10) == pid
    failed = actor_events(tmp_path, "starved", "mailbox.accept_failed")
    assert [e["errno"] for e in failed] == ["EMFILE"]
    assert actor_events(tmp_path, "starved", "mailbox.accept_recovered")


async def test_an_actor_whose_listener_breaks_crashes_and_is_restarted(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        target = await rt.spawn(Target, name="deaf")
        pid = await target.ask("pid", timeout=10)
        async with rt.probe() as probe:
            assert await target.ask("break listener", timeout=10)
            await probe.expect("actor.restarted", actor="deaf", timeout=20)
        assert await target.ask("pid", timeout=10) != pid
    lost = actor_events(tmp_path, "deaf", "mailbox.listener_lost")
    assert len(lost) == 1
    assert "EINVAL" in lost[0]["error"] or "Invalid argument" in lost[0]["error"]


async def test_memory_of_unfinished_frames_returns_when_their_connections_close(
    tmp_path: Path,
) -> None:
    body_size, sent = 48 * MiB, 24 * MiB  # each frame is cut off halfway
    async with Runtime(log_dir=tmp_path) as rt:
        target = await rt.spawn(Target, True, name="hoarder")
        fds = await target.ask("fds", timeout=10)
        before, _ = await target.ask("memory", timeout=10)
        streams = []
        for n in range(4):
            stream = await anyio.connect_unix(target.address)
            streams.append(stream)
            await stream.send(hello(f"cut{n}", n))
            # returns once the actor has read nearly all of it (the socket holds little)
            await stream.send(HEADER.pack(body_size, Kind.TELL, 1) + b"x" * sent)
        held, _ = await target.ask("memory", timeout=10)
        assert held - before > 3 * sent  # the partial frames are in the actor's memory
        for n, stream in enumerate(streams):
            if n % 2:
                await stream.aclose()  # unread data left: the actor sees a reset
            else:
                await stream.send_eof()  # the actor sees the end of the stream
                with anyio.fail_after(10):
                    await read_to_end(stream)
                await stream.aclose()
        with anyio.fail_after(10):
            while await target.ask("fds", timeout=10) > fds:
                pass  # each ask is a barrier: the actor has closed those it has seen end
        after, _ = await target.ask("memory", timeout=10)
    # garbage collection is off in the actor: only reference counting freed this
    assert after - before < 4 * MiB


async def test_a_peer_that_asks_and_never_reads_is_capped_then_disconnected(
    tmp_path: Path,
) -> None:
    bound = 2 * WRITE_CAP + 16 * MiB  # the queued replies, and the writer's join of them
    async with Runtime(log_dir=tmp_path) as rt:
        target = await rt.spawn(Target, True, name="talker", mailbox_size=512)
        async with await anyio.connect_unix(target.address) as greedy:
            await greedy.send(hello("greedy"))
            with anyio.fail_after(10):
                credit = await read_credit(greedy, FrameDecoder(MiB))
            assert credit * MiB > 2 * bound  # its 1 MiB answers would go far past the bound
            body = pickle.dumps(("big", MiB))
            await greedy.send(b"".join(encode(Kind.ASK, i, body) for i in range(1, credit + 1)))
            # and from now on it reads nothing: the actor stops answering it at the cap,
            # and cuts it off once it has read nothing for the stall limit
            with anyio.fail_after(STALL_LIMIT + 20):
                _, peak = await target.ask("memory", timeout=STALL_LIMIT + 20)
                await read_to_end(greedy)  # what the socket held, then the end
        assert await target.ask("pid", timeout=10) > 0
    assert peak < bound
    stalled = actor_events(tmp_path, "talker", "connection.stalled")
    assert [e["peer"] for e in stalled] == ["greedy"]
