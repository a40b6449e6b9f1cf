"""Actor classes and helpers for the tests (importable by actor processes)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import psutil

from actors import Actor, ActorRef, Reply


class Echo(Actor):
    """Answers every ask with the message itself."""

    async def receive(self, message: Any) -> Any:
        return message


def _refuse_to_rebuild() -> None:
    raise ValueError("this object cannot be rebuilt in the receiving process")


class RefusesToUnpickle:
    """Pickles fine, but unpickling it raises: as a class the receiver cannot import."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_refuse_to_rebuild, ())


class LoopReporter(Actor):
    """Answers "loop" with the module of its event loop's class (asyncio or uvloop)."""

    async def receive(self, message: Any) -> Any:
        return type(asyncio.get_running_loop()).__module__


class Recorder(Actor):
    """Keeps every message; "log" returns them, "pid" its pid."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []

    async def receive(self, message: Any) -> Any:
        match message:
            case "log":
                return list(self.seen)
            case "count":
                return len(self.seen)
            case "pid":
                return os.getpid()
            case _:
                self.seen.append(message)
        return None


class Faulty(Actor):
    """Raises on request, in several flavours."""

    async def receive(self, message: Any) -> Any:
        match message:
            case "value-error":
                raise ValueError("bad value 42")
            case "unpicklable-error":
                raise UnpicklableError(threading.Lock())
            case "unpicklable-reply":
                return threading.Lock()
            case "hang":
                time.sleep(60)  # blocks the event loop on purpose
            case "pid":
                return os.getpid()
            case "ping":
                return "pong"
        return None


class UnpicklableError(Exception):
    def __init__(self, lock: Any) -> None:
        super().__init__("holds a lock")
        self.lock = lock


class Latch(Actor):
    """ "wait" is answered only after "open" arrives; "waiters" says how many wait."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[Reply] = []
        self.is_open = False

    async def receive(self, message: Any) -> Any:
        match message:
            case "wait":
                if self.is_open:
                    return "opened"
                self.waiting.append(self.defer_reply())
            case "waiters":
                return len(self.waiting)
            case "open":
                self.is_open = True
                for reply in self.waiting:
                    reply.set_result("opened")
                self.waiting.clear()
        return None


class Gate(Actor):
    """On "block", waits on the latch before handling anything else; records the rest.

    "log" returns what it recorded, "clear" forgets it.
    """

    def __init__(self, latch: ActorRef) -> None:
        super().__init__()
        self.latch = latch
        self.seen: list[Any] = []

    async def receive(self, message: Any) -> Any:
        match message:
            case "block":
                await self.latch.ask("wait", timeout=60)
            case "log":
                return list(self.seen)
            case "clear":
                self.seen.clear()
            case _:
                self.seen.append(message)
        return None


async def block(gate: ActorRef, latch: ActorRef) -> None:
    """Make ``gate`` wait inside its handler on ``latch`` (until "open"); return once it does.

    From then on the gate takes nothing from its mailbox.
    """
    await gate.tell("block")
    with anyio.fail_after(5):
        while await latch.ask("waiters", timeout=5) < 1:
            pass  # each ask is a barrier: the latch has handled what came before it


class Forwarder(Actor):
    """On ("send-to", ref, n, tag) tells ref (tag, i) for i in range(n); returns n."""

    async def receive(self, message: Any) -> Any:
        match message:
            case "pid":
                return os.getpid()
            case ("send-to", ActorRef() as target, int(n), str(tag)):
                for i in range(n):
                    await target.tell((tag, i))
                return n
            case ("ask", ActorRef() as target, question):
                return await target.ask(question, timeout=10)
            case ("tell-nowait", ActorRef() as target, value):
                target.tell_nowait(value)
                return "sent"
            case "unacknowledged":
                # messages sent that no receiver has yet said it finished (the runtime's own
                # bookkeeping: what would be recorded in doubt if the receivers died now)
                from actors._router import current_router

                conns = current_router().connections()  # type: ignore[attr-defined]
                return sum(len(conn.unacked) for conn in conns)
        return None


class Holder(Actor):
    """Keeps a ref given at spawn and relays asks to it."""

    def __init__(self, target: ActorRef) -> None:
        super().__init__()
        self.target = target

    async def receive(self, message: Any) -> Any:
        return await self.target.ask(message, timeout=10)


class Spawner(Actor):
    """Spawns, looks up and stops other actors through its context."""

    async def receive(self, message: Any) -> Any:
        match message:
            case ("spawn", str(name)):
                return await self.context.spawn(Echo, name=name)
            case ("lookup", str(name)):
                return await self.context.lookup(name)
            case ("stop", ActorRef() as ref):
                await self.context.stop(ref)
                return "stopped"
        return None


class FailsToStart(Actor):
    async def on_start(self) -> None:
        raise RuntimeError("no database at db.invalid")


class FailsInInit(Actor):
    def __init__(self, n: int) -> None:
        super().__init__()
        raise ValueError(f"n must be even, got {n}")


class StopRecorder(Actor):
    """Writes its name into a shared file when it stops."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    async def on_stop(self) -> None:
        with open(self.path, "a") as f:
            f.write(self.ref.name + "\n")

    async def receive(self, message: Any) -> Any:
        return os.getpid()


class IgnoresTerm(Actor):
    """Blocks its loop and ignores SIGTERM: only SIGKILL ends it."""

    async def on_start(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    async def receive(self, message: Any) -> Any:
        if message == "hang":
            time.sleep(60)
        return os.getpid()


def read_events(log_dir: Path) -> list[dict[str, Any]]:
    """Every event of every process in a run's log directory, in time order.

    Read as the trace viewer reads them (``merge_logs``): a last line cut short by a
    SIGKILL in the middle of a write is skipped.
    """
    # imported here: actor processes import this module for its actor classes
    from runtime.trace import merge_logs

    if not any(log_dir.glob("*.jsonl")):
        return []
    events = merge_logs(log_dir)
    for event in events:
        del event["_t"]  # the viewer's parsed timestamp, not part of the line
    return events


class SharedUser(Actor):
    """Uses shared arrays and semaphores it is sent, the way an actor script would."""

    async def receive(self, message: Any) -> Any:
        import anyio
        import numpy as np

        from actors import LockOwnerDiedError, LockTimeoutError

        match message:
            case ("add", array, int(times)):
                for _ in range(times):
                    async with array.locked() as view:
                        view[0] += 1
                return int(np.asarray(array)[0])
            case ("read", array):
                return np.asarray(array).tolist()
            case ("head", array, int(n)):
                return np.asarray(array)[:n].tolist()
            case ("fill", array, value):
                async with array.locked() as view:
                    view[...] = value
                return None
            case ("maps", array):
                np.asarray(array)  # map it
                with open("/proc/self/maps") as f:
                    return array.key in f.read()
            case ("hold", array):
                reply = self.defer_reply()
                async with array.locked() as view:
                    view[0] = -1  # a write in progress when the holder is killed
                    reply.set_result(os.getpid())
                    await anyio.sleep_forever()
            case ("try-lock", array, float(timeout)):
                try:
                    async with array.locked(timeout=timeout) as view:
                        return ("ok", view.tolist())
                except LockOwnerDiedError as exc:
                    return ("owner_died", exc.pid, exc.epoch)
                except LockTimeoutError:
                    return ("timeout",)
            case ("hold-slot", sem):
                reply = self.defer_reply()
                async with sem:
                    reply.set_result(os.getpid())
                    await anyio.sleep_forever()
            case ("take-slot", sem, float(timeout)):
                try:
                    permit = await sem.acquire(timeout=timeout)
                except LockTimeoutError:
                    return ("timeout",)
                sem.release(permit)
                return ("ok", permit.previous_holder_died, permit.previous_pid)
            case ("describe", array):
                return (float(array.sum()), array.shape, str(array.dtype), array.flags.writeable)
            case ("echo", value):
                return value
            case ("create", shape, dtype):
                handle = await self.context.shared_array(shape, dtype, name="made-inside")
                async with handle.locked() as view:
                    view[...] = 7
                return handle
            case ("share", data):
                return await self.context.share(data)
            case ("semaphore", int(value)):
                return await self.context.semaphore(value)
            case ("free", handle):
                await self.context.free(handle)
                return "freed"
            case "pid":
                return os.getpid()
        return None


class Crashy(Actor):
    """Counts, and fails in every way on request; remembers why it was restarted."""

    def __init__(self, tag: str = "") -> None:
        super().__init__()
        self.tag = tag
        self.count = 0
        self.seen: list[Any] = []
        self.failure: Any = None

    async def on_restart(self, failure: Any) -> None:
        self.failure = failure

    async def receive(self, message: Any) -> Any:
        import anyio

        match message:
            case "inc":
                self.count += 1
            case "get":
                return self.count
            case ("rec", value):
                self.seen.append(value)
            case "log":
                return list(self.seen)
            case "crash":
                raise ValueError("crash on request")
            case "exit":
                os._exit(3)
            case "segfault":
                import ctypes

                ctypes.string_at(0)
            case "hang":
                time.sleep(60)  # blocks the event loop
            case ("hang-async", ActorRef() as latch):
                await latch.tell("open")
                await anyio.sleep_forever()  # the loop runs; only this message is stuck
            case "failure":
                return self.failure
            case "pid":
                return os.getpid()
            case "tag":
                return self.tag
        return None


class FailsOnRestart(Actor):
    """Starts once; every restart fails in on_start (a crash loop)."""

    def __init__(self) -> None:
        super().__init__()
        self.restarted = False

    async def on_restart(self, failure: Any) -> None:
        self.restarted = True

    async def on_start(self) -> None:
        if self.restarted:
            raise RuntimeError("the database is still down")

    async def receive(self, message: Any) -> Any:
        if message == "crash":
            raise ValueError("crash on request")
        return os.getpid()


class Watcher(Actor):
    """Watches refs on request; keeps the Terminated messages it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.terminated: list[Any] = []
        self.waiting: list[tuple[int, Reply]] = []

    async def receive(self, message: Any) -> Any:
        from actors import Terminated

        match message:
            case ("watch", ActorRef() as ref):
                await self.context.watch(ref)
                return "watching"
            case ("unwatch", ActorRef() as ref):
                await self.context.unwatch(ref)
                return "unwatched"
            case Terminated() as note:
                self.terminated.append((note.ref.name, note.reason))
                self._settle()
            case ("wait", int(n)):
                self.waiting.append((n, self.defer_reply()))
                self._settle()
            case "seen":
                return list(self.terminated)
        return None

    def _settle(self) -> None:
        for n, reply in list(self.waiting):
            if len(self.terminated) >= n:
                reply.set_result(list(self.terminated))
                self.waiting.remove((n, reply))


class Ticker(Actor):
    """Counts the timer messages it sends itself; answers "wait" once n arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.ticks = 0
        self.once = 0
        self.timer: Any = None
        self.waiting: list[tuple[int, Reply]] = []

    async def receive(self, message: Any) -> Any:
        match message:
            case ("every", float(interval)):
                self.timer = self.context.send_every(interval, "tick")
            case ("after", float(delay)):
                self.context.send_after(delay, "once")
            case "tick":
                self.ticks += 1
                for n, reply in list(self.waiting):
                    if self.ticks >= n:
                        reply.set_result(self.ticks)
                        self.waiting.remove((n, reply))
            case "once":
                self.once += 1
            case ("wait", int(n)):
                if self.ticks >= n:
                    return self.ticks
                self.waiting.append((n, self.defer_reply()))
            case "cancel":
                self.timer.cancel()
                return self.ticks
            case "counts":
                return (self.ticks, self.once)
        return None


class Parent(Actor):
    """Spawns two children of its own in on_start; tells their refs."""

    def __init__(self) -> None:
        super().__init__()
        self.children: list[ActorRef] = []

    async def on_start(self) -> None:
        for i in range(2):
            self.children.append(
                await self.context.spawn(Crashy, f"child-{i}", name=f"{self.ref.name}.child-{i}")
            )

    async def receive(self, message: Any) -> Any:
        match message:
            case "children":
                return list(self.children)
            case "pid":
                return os.getpid()
        return None


class Relay(Actor):
    """Forwards ("item", n) to the next actor, or keeps them if it is the last one."""

    def __init__(self, next_hop: ActorRef | None) -> None:
        super().__init__()
        self.next_hop = next_hop
        self.kept = 0

    async def receive(self, message: Any) -> Any:
        match message:
            case ("item", int(n)):
                if self.next_hop is None:
                    self.kept += 1
                else:
                    await self.next_hop.tell(("item", n))
            case "pid":
                return os.getpid()
            case "exit":
                os._exit(3)  # a hard end from inside a handler, as a C extension might
            case "kept":
                return self.kept
            case "barrier":  # answered once everything sent before it went through
                if self.next_hop is None:
                    return self.kept
                return await self.next_hop.ask("barrier", timeout=60)
        return None


def running(procs: list[psutil.Process]) -> list[psutil.Process]:
    """The processes still running; a zombie has ended (orphans may never be reaped here)."""
    alive = []
    for p in procs:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


async def wait_ended(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every one of ``procs`` has ended (or is a zombie); return those still running."""
    with anyio.move_on_after(timeout):
        while running(procs):
            await anyio.sleep(0.01)  # polling other processes' state; no sync is involved
    return running(procs)


class Forker(Actor):
    """Leaves descendants behind: "fork" forks a child that sleeps, "popen" starts
    ``sleep 60`` (keeping its descriptors with ("popen", False)); both return the pid.
    ("fork", "setsid") forks one that leaves the actor's process group; ("fork",
    "raw-setsid") likewise with libc's fork, which skips Python's at-fork hooks.

    ("hang", latch) opens the latch and never answers; ("ask", ref, message) asks ref and
    returns the answer, or the name of the error it raised.
    """

    def __init__(self) -> None:
        super().__init__()
        self.procs: list[Any] = []  # held: a running Popen collected would warn

    async def receive(self, message: Any) -> Any:
        import subprocess

        from actors import ActorDeadError

        match message:
            case "fork":
                child = os.fork()
                if child == 0:  # sleeps with whatever descriptors the fork left it
                    time.sleep(60)
                    os._exit(0)
                return child
            case ("fork", "setsid" | "raw-setsid" as how):
                import ctypes

                ready, done = os.pipe()
                child = ctypes.PyDLL(None).fork() if how == "raw-setsid" else os.fork()
                if child == 0:
                    os.setsid()  # out of reach of a signal to the actor's process group
                    os.write(done, b"x")
                    time.sleep(60)
                    os._exit(0)
                os.read(ready, 1)  # it has left the group: the caller may kill the actor
                os.close(ready)
                os.close(done)
                return child
            case "popen" | ("popen", bool()):
                close_fds = message == "popen" or message[1]
                self.procs.append(subprocess.Popen(["sleep", "60"], close_fds=close_fds))
                return self.procs[-1].pid
            case ("hang", ActorRef() as latch):
                await latch.tell("open")
                await anyio.sleep_forever()
            case ("ask", ActorRef() as ref, request):
                try:
                    return await ref.ask(request, timeout=30)
                except ActorDeadError as exc:
                    return type(exc).__name__
            case "pid":
                return os.getpid()
            case "pgid":
                return os.getpgid(0)
        return None


class LeavesWorkBehind(Actor):
    """Leaves a task and a non-daemon thread running when it stops; each marks its end in
    the directory it was sent."""

    async def on_start(self) -> None:
        self._stopping = threading.Event()

    async def receive(self, message: Any) -> Any:
        directory = Path(message)

        async def lingering() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                (directory / "task.ended").write_text("cancelled")

        def worker() -> None:
            self._stopping.wait()
            (directory / "thread.ended").write_text("joined")

        self._task = asyncio.get_running_loop().create_task(lingering())
        threading.Thread(target=worker, daemon=False).start()
        return "left"

    async def on_stop(self) -> None:
        self._stopping.set()


#: a script that writes its pid to the file ``sys.argv[1]`` each time its top level runs
#: (an assignment, so its top level still only defines), then asks 3 actors; callers add
#: the line that runs ``main``
COUNTED_ACTORS = """
    import os
    import sys

    import anyio
    from actors import Actor
    from runtime import Runtime

    # an assignment: a top level that only defines may still call
    _RUN = open(sys.argv[1], "a").write(f"{os.getpid()}\\n")

    class Echo(Actor):
        async def receive(self, message):
            return message

    async def main():
        async with Runtime(log_dir=None) as rt:
            refs = [await rt.spawn(Echo) for _ in range(3)]
            answers = [await ref.ask(42, timeout=10) for ref in refs]
            print("answer", answers[0], len(answers))
"""


def run_answering_script(
    directory: Path,
    *args: str,
    forkserver: str = "auto",
    stdin: str | None = None,
    env_added: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python script.py *args`` in ``directory`` as a user would (or ``python *args``
    with a script given on ``stdin``, or by ``-c``), with ``forkserver`` and ``env_added`` in
    the environment; it must exit 0 after printing "answer 42". Its logs go under
    ``directory/logs``.

    Its stdout is block-buffered, as on any pipe when Python runs without ``-u``.
    """
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env |= {
        "PYTHONPATH": str(root),
        "ACTORS_LOG_DIR": str(directory / "logs"),
        "ACTORS_FORKSERVER": forkserver,
    }
    env |= env_added or {}
    script = [] if stdin is not None or args[:1] == ("-c",) else ["script.py"]
    result = subprocess.run(
        [sys.executable, *script, *args],
        input=stdin,
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "answer 42" in result.stdout
    return result


ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def script_job(
    module: str,
    *args: str,
    env: dict[str, str] | None = None,
    ignore_sighup: bool = False,
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any]]]:
    """Run ``python -m module *args`` in a process group of its own, as a terminal starts
    its job (or as nohup does, with ``ignore_sighup``); yield it and the JSON object it
    prints first. Killed and reaped on the way out, however the test went."""

    def as_started() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN if ignore_sighup else signal.SIG_DFL)

    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=as_started,
    )
    try:
        assert proc.stdout is not None
        yield proc, json.loads(proc.stdout.readline())
    finally:
        proc.kill()
        proc.communicate()
