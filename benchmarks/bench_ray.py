"""The Ray backend beside plain Ray calls and beside our local backend, in one run.

    python -m benchmarks --backend ray [--quick] [--json PATH] [--ray-address HOST:PORT]

One Ray cluster serves the whole run: a head started for it (``ray start --head`` with a
private temp dir, stopped at the end by killing the processes of that temp dir, never by
``ray stop``, which would stop other people's clusters too), or the cluster at
``--ray-address``. This process joins it once; ``Runtime(backend="ray")`` and the plain
Ray baselines then use that same connection.

Measured, ours on Ray against plain Ray in the same session, reps alternating which goes
first, then the same workloads of ours on the local backend:

* ask round trip p50, script→actor: ``await ref.ask(i)`` against ``ray.get`` of a method
  call on a plain async actor and on a plain sync actor (and the async one awaited from
  asyncio, as our ask awaits its call);
* tell throughput, script→actor and actor→actor: ``await ref.tell(i)`` N times, then an
  ask for the receiver's count, against ``actor.tell.remote(i)`` N times (one Ray call per
  tell) into a plain sync actor, then a call for its count. Both receivers check that the
  numbers came in order, and the report counts those that did not or never came. How many
  Ray calls our tells took is counted in the sender (its ``deliver`` calls);
* spawn: from ``rt.spawn`` to the first answer, against creating a plain Ray actor and
  getting the answer to its first call;
* restart: SIGKILL of the worker process hosting an actor (its pid from an ask) until an
  ask to the same ref answers from the new incarnation, against a plain Ray actor with
  ``max_restarts`` answering again after the same SIGKILL.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio

from actors import Actor, ActorDeadError, ActorRef
from benchmarks._figure import Figure, pairs
from benchmarks.bench_core import Echo

ROOT = Path(__file__).resolve().parent.parent
#: every figure is the median of this many runs, ours and the baselines alike
FULL = {
    "reps": 5,
    "asks": 2000,
    "tells": 50_000,
    "plain_tells": 5_000,
    "spawns": 10,
    "kills": 10,
}
QUICK = {
    "reps": 3,
    "asks": 200,
    "tells": 5_000,
    "plain_tells": 1_000,
    "spawns": 2,
    "kills": 2,
}
#: asks before the timed ones, on each side
WARMUP = 50
#: Ray's socket paths live under the temp dir: keep it short
_TEMP_PREFIX = "ray-b-"


# -- our actors ------------------------------------------------------------------------------


class OrderedSink(Actor):
    """Counts the numbers told to it, and those that came out of order (one sender)."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0
        self.next = 0
        self.disorder = 0

    async def receive(self, message: Any) -> Any:
        if isinstance(message, int):
            if message != self.next:
                self.disorder += 1
            self.next = message + 1
            self.n += 1
            return None
        if message == "stats":
            return self.n, self.disorder
        if message == "reset":
            self.n = self.next = self.disorder = 0
            return None
        if message == "pid":
            return os.getpid()
        return None


class Sender(Actor):
    """Tells ``count`` numbers to a sink, then asks it for its count: from inside an actor."""

    async def receive(self, message: Any) -> Any:
        match message:
            case ("tells", ActorRef() as target, int(count), bool(on_ray)):
                calls = _deliver_calls() if on_ray else None
                before = calls[0] if calls else 0
                started = time.perf_counter()
                for i in range(count):
                    await target.tell(i)
                stats = await target.ask("stats", timeout=300)
                elapsed = time.perf_counter() - started
                return elapsed, stats, (calls[0] - before) if calls else None
        return None


class Pid(Actor):
    async def receive(self, message: Any) -> Any:
        return os.getpid()


_CALLS: list[int] | None = None


def _deliver_calls() -> list[int] | None:
    """A counter of the ``deliver`` calls (tell batches) this process sends on Ray.

    Counted by wrapping the transport's flush, in this process only; None if the
    transport has no such method (the count is then not reported).
    """
    global _CALLS
    if _CALLS is not None:
        return _CALLS
    try:
        from runtime.wire.ray_transport import RayTransport
    except ImportError:
        return None
    original = getattr(RayTransport, "_flush", None)
    if original is None:
        return None
    counter = [0]

    def _flush(self: Any, peer: Any) -> None:
        if peer.batch and peer.dead_reason is None:
            counter[0] += 1
        original(self, peer)

    RayTransport._flush = _flush  # type: ignore[method-assign]
    _CALLS = counter
    return counter


# -- plain Ray actors (made remote where used: this module must import without Ray) ----------


class PlainSink:
    """A plain sync Ray actor: echoes, and counts numbers told to it in order."""

    def __init__(self) -> None:
        self.n = 0
        self.next = 0
        self.disorder = 0

    def echo(self, x: Any) -> Any:
        return x

    def tell(self, x: int) -> None:
        if x != self.next:
            self.disorder += 1
        self.next = x + 1
        self.n += 1

    def stats(self) -> tuple[int, int]:
        return self.n, self.disorder

    def reset(self) -> None:
        self.n = self.next = self.disorder = 0

    def pid(self) -> int:
        return os.getpid()


class PlainAsyncEcho:
    """A plain async Ray actor."""

    async def echo(self, x: Any) -> Any:
        return x


class PlainSender:
    """A plain sync Ray actor that tells numbers to a ``PlainSink``, one call each."""

    def tells(self, sink: Any, count: int) -> tuple[float, tuple[int, int]]:
        import ray

        started = time.perf_counter()
        for i in range(count):
            sink.tell.remote(i)
        stats = ray.get(sink.stats.remote())
        return time.perf_counter() - started, stats


class _Plain:
    """The plain Ray side: its actors, and each workload as a blocking call."""

    def __init__(self) -> None:
        import ray

        self.ray = ray
        options: dict[str, Any] = {"num_cpus": 0, "max_restarts": 0, "max_task_retries": 0}
        self.sink_class = ray.remote(PlainSink).options(**options)  # type: ignore[call-overload]
        self.async_class = ray.remote(PlainAsyncEcho).options(**options)  # type: ignore[call-overload]
        self.restartable = ray.remote(PlainSink).options(  # type: ignore[call-overload]
            num_cpus=0, max_restarts=-1, max_task_retries=0
        )
        sender_class = ray.remote(PlainSender).options(**options)  # type: ignore[call-overload]
        self.sink = self.sink_class.remote()
        self.async_echo = self.async_class.remote()
        self.sender = sender_class.remote()
        ray.get([a.__ray_ready__.remote() for a in (self.sink, self.async_echo, self.sender)])
        #: the actor ``restart`` kills, made on first use
        self.victim: Any = None
        self.victim_pid = 0

    def close(self) -> None:
        for actor in (self.sink, self.async_echo, self.sender, self.victim):
            with contextlib.suppress(Exception):
                self.ray.kill(actor)

    def asks(self, actor: Any, count: int) -> float:
        """p50 of ``ray.get(actor.echo.remote(i))``."""
        get = self.ray.get
        for i in range(WARMUP):
            get(actor.echo.remote(i))
        times = []
        for i in range(count):
            started = time.perf_counter()
            answer = get(actor.echo.remote(i))
            times.append(time.perf_counter() - started)
            _check("plain Ray echo", answer, i)
        return statistics.median(times)

    async def awaited_asks(self, count: int) -> float:
        """p50 of ``await actor.echo.remote(i)`` from asyncio, on the async actor."""
        actor = self.async_echo
        for i in range(WARMUP):
            await actor.echo.remote(i)
        times = []
        for i in range(count):
            started = time.perf_counter()
            answer = await actor.echo.remote(i)
            times.append(time.perf_counter() - started)
            _check("plain Ray echo", answer, i)
        return statistics.median(times)

    def tells(self, count: int) -> tuple[float, int]:
        """Script→actor, one call per tell: (msg/s, out of order or missing)."""
        sink = self.sink
        self.ray.get(sink.reset.remote())
        started = time.perf_counter()
        for i in range(count):
            sink.tell.remote(i)
        n, disorder = self.ray.get(sink.stats.remote())
        elapsed = time.perf_counter() - started
        return count / elapsed, disorder + (count - n)

    def actor_tells(self, count: int) -> tuple[float, int]:
        """Actor→actor, one call per tell: (msg/s, out of order or missing)."""
        self.ray.get(self.sink.reset.remote())
        elapsed, (n, disorder) = self.ray.get(self.sender.tells.remote(self.sink, count))
        return count / elapsed, disorder + (count - n)

    def spawn(self) -> float:
        """Create a plain async actor and get its first answer; then kill it."""
        started = time.perf_counter()
        actor = self.async_class.remote()
        self.ray.get(actor.echo.remote(0))
        elapsed = time.perf_counter() - started
        self.ray.kill(actor)
        return elapsed

    def restart(self) -> float:
        """SIGKILL a plain Ray actor with ``max_restarts``; time until it answers again."""
        from ray.exceptions import RayError

        if self.victim is None:
            self.victim = self.restartable.remote()
            self.victim_pid = self.ray.get(self.victim.pid.remote())
        actor, pid = self.victim, self.victim_pid
        started = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        while True:
            try:
                new = self.ray.get(actor.pid.remote(), timeout=30)
            except RayError:
                if time.perf_counter() > started + 60:
                    raise
                continue  # sent before Ray saw the death
            if new != pid:
                break
        self.victim_pid = new
        return time.perf_counter() - started


# -- one session of ours, on either backend ------------------------------------------------


class _Session:
    """Every workload of ours in one runtime; on Ray, each beside its plain Ray baselines."""

    def __init__(self, rt: Any, sizes: dict[str, int], plain: _Plain | None) -> None:
        self.rt = rt
        self.sizes = sizes
        self.plain = plain
        self.series: dict[str, list[float]] = {}
        #: tells out of order or missing, every run: ours, and plain Ray's
        self.wrong = 0
        self.wrong_plain = 0
        #: the Ray calls our tells took, each run: script→actor, actor→actor
        self.calls: dict[str, list[float]] = {"rt": [], "aa": []}
        self.counter = _deliver_calls() if plain is not None else None

    def add(self, key: str, value: float) -> None:
        self.series.setdefault(key, []).append(value)

    async def start(self) -> None:
        self.echo = await self.rt.spawn(Echo)
        self.sink = await self.rt.spawn(OrderedSink)
        self.sender = await self.rt.spawn(Sender)
        for i in range(WARMUP):
            await self.echo.ask(i)

    async def rep(self, rep: int) -> None:
        """One run of asks and tells, ours and plain Ray's in turn (flipped every rep)."""
        pairs_ = [
            (self.asks, self.plain_asks),
            (self.tells, self.plain_tells),
            (self.actor_tells, self.plain_actor_tells),
        ]
        for pair in pairs_:
            for step in pair if rep % 2 == 0 else reversed(pair):
                await step()

    async def asks(self) -> None:
        times = []
        for i in range(self.sizes["asks"]):
            started = time.perf_counter()
            answer = await self.echo.ask(i)
            times.append(time.perf_counter() - started)
            _check("Echo answer", answer, i)
        self.add("ask", statistics.median(times))

    async def tells(self) -> None:
        n, counter, sink = self.sizes["tells"], self.counter, self.sink
        await sink.ask("reset")
        before = counter[0] if counter else 0
        started = time.perf_counter()
        for i in range(n):
            await sink.tell(i)
        got, disorder = await sink.ask("stats", timeout=300)
        self.add("tell_rt", n / (time.perf_counter() - started))
        self.wrong += disorder + (n - got)
        if counter:
            self.calls["rt"].append(counter[0] - before)

    async def actor_tells(self) -> None:
        n = self.sizes["tells"]
        await self.sink.ask("reset")
        message = ("tells", self.sink, n, self.plain is not None)
        elapsed, (got, disorder), sent = await self.sender.ask(message, timeout=600)
        self.add("tell_aa", n / elapsed)
        self.wrong += disorder + (n - got)
        if sent is not None:
            self.calls["aa"].append(sent)

    async def plain_asks(self) -> None:
        if (p := self.plain) is None:
            return
        count = self.sizes["asks"]
        self.add("plain_async", await anyio.to_thread.run_sync(p.asks, p.async_echo, count))
        self.add("plain_sync", await anyio.to_thread.run_sync(p.asks, p.sink, count))
        self.add("plain_await", await p.awaited_asks(count))

    async def plain_tells(self) -> None:
        if (p := self.plain) is None:
            return
        rate, bad = await anyio.to_thread.run_sync(p.tells, self.sizes["plain_tells"])
        self.add("plain_tell_rt", rate)
        self.wrong_plain += bad

    async def plain_actor_tells(self) -> None:
        if (p := self.plain) is None:
            return
        rate, bad = await anyio.to_thread.run_sync(p.actor_tells, self.sizes["plain_tells"])
        self.add("plain_tell_aa", rate)
        self.wrong_plain += bad

    async def spawns(self) -> None:
        for i in range(self.sizes["spawns"]):
            for base in (False, True) if i % 2 == 0 else (True, False):
                if not base:
                    started = time.perf_counter()
                    ref = await self.rt.spawn(Echo)
                    await ref.ask(0)
                    self.add("spawn", time.perf_counter() - started)
                    await self.rt.stop(ref)
                elif self.plain is not None:
                    self.add("plain_spawn", await anyio.to_thread.run_sync(self.plain.spawn))

    async def restarts(self) -> None:
        """SIGKILLs, ours and plain Ray's in turn (flipped every kill)."""
        kills = self.sizes["kills"]
        sup = await self.rt.supervisor("bench", max_restarts=kills + 5, period=3600)
        victim = await self.rt.spawn(Pid, supervisor=sup)
        pid = await victim.ask("pid")
        for i in range(kills):
            for base in (False, True) if i % 2 == 0 else (True, False):
                if not base:
                    elapsed, pid = await _restart(victim, pid)
                    self.add("restart", elapsed)
                elif self.plain is not None:
                    self.add("plain_restart", await anyio.to_thread.run_sync(self.plain.restart))
        await self.rt.stop(victim)

    def results(self) -> dict[str, Any]:
        return {
            "series": self.series,
            "wrong": self.wrong,
            "wrong_plain": self.wrong_plain,
            "calls": {k: statistics.median(v) if v else None for k, v in self.calls.items()},
        }


async def _session(
    backend: str, sizes: dict[str, int], log_dir: str, progress: Callable[[str], None]
) -> dict[str, Any]:
    from runtime import Runtime

    async with Runtime(backend=backend, log_dir=log_dir, trace=False, hang_timeout=None) as rt:
        plain = await anyio.to_thread.run_sync(_Plain) if backend == "ray" else None
        session = _Session(rt, sizes, plain)
        try:
            await session.start()
            for rep in range(sizes["reps"]):
                progress(f"{backend}: run {rep + 1} of {sizes['reps']}: asks, tells")
                await session.rep(rep)
            progress(f"{backend}: spawn to first answer")
            await session.spawns()
            progress(
                f"{backend}: SIGKILL to answering again"
                + (" (Ray prints a line for each worker killed)" if plain else "")
            )
            await session.restarts()
        finally:
            if plain is not None:
                await anyio.to_thread.run_sync(plain.close)
    return session.results()


async def _restart(ref: ActorRef, pid: int) -> tuple[float, int]:
    """SIGKILL ``pid``, the process hosting ``ref``; ask ``ref`` until a new one answers.

    Returns the seconds that took, and the new pid.
    """
    started = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    while True:
        try:
            new = await ref.ask("pid", timeout=30)
        except ActorDeadError:
            continue  # sent to the dead incarnation before its death was seen
        if new != pid:
            return time.perf_counter() - started, new


# -- the cluster ---------------------------------------------------------------------------


@contextlib.contextmanager
def cluster(address: str | None) -> Iterator[str]:
    """Join the Ray cluster at ``address``, or one started for the run and stopped after."""
    import logging

    import ray

    env = {"env_vars": {"PYTHONPATH": _import_path()}}

    def join(where: str) -> None:
        ray.init(
            address=where,
            log_to_driver=False,
            logging_level=logging.WARNING,
            configure_logging=False,
            runtime_env=env,
        )

    if address is not None:
        join(address)
        try:
            yield address
        finally:
            ray.shutdown()
        return
    temp = tempfile.mkdtemp(prefix=_TEMP_PREFIX, dir="/tmp")
    port = _free_port()
    command = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        f"--port={port}",
        f"--temp-dir={temp}",
        "--num-cpus=2",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    started: set[int] = set()
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=180)
        started = _cluster_pids(temp)
        address = f"127.0.0.1:{port}"
        _auth_as_ray_start()
        join(address)
        yield address
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        _stop_cluster(started, temp)
        shutil.rmtree(temp, ignore_errors=True)


def _auth_as_ray_start() -> None:
    """Join with the authentication mode ``ray start`` gave the head.

    Unless ``RAY_AUTH_MODE`` says otherwise, ``ray start`` turns token authentication on
    when a token exists (``~/.ray/auth_token``, which any ``ray.init()`` that starts a
    local cluster creates), but ``ray.init(address=...)`` does not, and is then refused.
    This makes the same choice in this process, through Ray's own function for it.
    """
    with contextlib.suppress(ImportError):
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )

        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _import_path() -> str:
    entries = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(entries))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _processes() -> dict[int, tuple[int, str]]:
    """Every process: its parent's pid and its command line (from /proc)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        found[int(entry)] = (ppid, cmdline)
    return found


def _cluster_pids(temp: str) -> set[int]:
    """The processes of the cluster under ``temp``: those naming it, and their children."""
    procs = _processes()
    pids = {pid for pid, (_, cmdline) in procs.items() if temp in cmdline}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in procs.items() if ppid in pids} - pids
        grew = bool(children)
        pids |= children
    return pids


def _stop_cluster(started: set[int], temp: str) -> None:
    """Stop the processes the run's ``ray start`` made, and whatever they started."""
    pids = (started | _cluster_pids(temp)) - {os.getpid()}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pids = {pid for pid in pids if _alive(pid)}
            if not pids:
                return
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _check(what: str, got: object, expected: object) -> None:
    if got != expected:
        raise RuntimeError(f"{what}: expected {expected!r}, got {got!r}")


# -- the figures ---------------------------------------------------------------------------


def measure(
    sizes: dict[str, int], progress: Callable[[str], None], address: str | None = None
) -> list[Figure]:
    """The Ray section's figures; rows that say why when Ray is not installed."""
    if importlib.util.find_spec("ray") is None:
        why = "Ray is not installed (pip install 'actors-runtime[ray]'): skipped"
        return [
            Figure(name, None, "", "", None, "lower", note=why)
            for name in ("Ray: ask p50", "Ray: tells", "Ray: spawn", "Ray: SIGKILL to answering")
        ]
    with tempfile.TemporaryDirectory() as logs:
        progress("Ray cluster" + (f" at {address}" if address else ": starting a head"))
        began = time.perf_counter()
        with cluster(address):
            joined = time.perf_counter()
            ray_run = anyio.run(_session, "ray", sizes, logs, progress)
        progress(
            f"Ray section: {time.perf_counter() - began:.0f} s "
            f"({joined - began:.0f} s of it starting or joining the cluster)"
        )
        local_run = anyio.run(_session, "local", sizes, logs, progress)
    return figures(ray_run, local_run, sizes)


def figures(
    ray_run: dict[str, Any], local_run: dict[str, Any], sizes: dict[str, int]
) -> list[Figure]:
    s, local = ray_run["series"], local_run["series"]
    med = statistics.median
    n, m = sizes["tells"], sizes["plain_tells"]
    rows = [
        Figure(
            "Ray: ask p50, script→actor",
            med(s["ask"]),
            "s",
            "plain Ray async actor call, ray.get",
            med(s["plain_async"]),
            "lower",
            "≤ 1.5x",
            pairs(s["ask"], s["plain_async"]),
        ),
        Figure(
            "Ray: ask p50, script→actor",
            med(s["ask"]),
            "s",
            "plain Ray sync actor call, ray.get",
            med(s["plain_sync"]),
            "lower",
            "≤ 1.5x",
            pairs(s["ask"], s["plain_sync"]),
        ),
        Figure(
            "Ray: ask p50, script→actor",
            med(s["ask"]),
            "s",
            "plain Ray async actor call, awaited",
            med(s["plain_await"]),
            "lower",
            runs=pairs(s["ask"], s["plain_await"]),
        ),
        Figure(
            "Ray: ask p50, script→actor",
            med(s["ask"]),
            "s",
            "ours, local backend",
            med(local["ask"]),
            "lower",
        ),
        Figure(
            "Ray: tells, script→actor, in order",
            med(s["tell_rt"]),
            "msg/s",
            "plain Ray, 1 call per tell",
            med(s["plain_tell_rt"]),
            "higher",
            "≥ 30x",
            pairs(s["tell_rt"], s["plain_tell_rt"]),
        ),
        Figure(
            "Ray: tells, script→actor, in order",
            med(s["tell_rt"]),
            "msg/s",
            "ours, local backend",
            med(local["tell_rt"]),
            "higher",
        ),
        Figure(
            "Ray: tells, actor→actor, in order",
            med(s["tell_aa"]),
            "msg/s",
            "plain Ray, 1 call per tell",
            med(s["plain_tell_aa"]),
            "higher",
            "≥ 30x",
            pairs(s["tell_aa"], s["plain_tell_aa"]),
        ),
        Figure(
            "Ray: tells, actor→actor, in order",
            med(s["tell_aa"]),
            "msg/s",
            "ours, local backend",
            med(local["tell_aa"]),
            "higher",
        ),
        Figure(
            f"Ray: tells out of order or lost, of {2 * n * sizes['reps']:,}",
            ray_run["wrong"],
            "msgs",
            f"plain Ray sync actor, of {2 * m * sizes['reps']:,}",
            ray_run["wrong_plain"],
            "lower",
            "= 0",
        ),
    ]
    for key, where in (("rt", "script→actor"), ("aa", "actor→actor")):
        if ray_run["calls"][key] is not None:
            rows.append(
                Figure(
                    f"Ray: Ray calls for {n:,} tells, {where}",
                    ray_run["calls"][key],
                    "calls",
                    "plain Ray, 1 call per tell",
                    n,
                    "lower",
                )
            )
    rows += [
        Figure(
            "Ray: spawn to first answer p50",
            med(s["spawn"]),
            "s",
            "plain Ray actor created + first call",
            med(s["plain_spawn"]),
            "lower",
            runs=pairs(s["spawn"], s["plain_spawn"]),
        ),
        Figure(
            "Ray: spawn to first answer p50",
            med(s["spawn"]),
            "s",
            "ours, local backend",
            med(local["spawn"]),
            "lower",
        ),
        Figure(
            "Ray: SIGKILL to answering again p50",
            med(s["restart"]),
            "s",
            "plain Ray actor, max_restarts",
            med(s["plain_restart"]),
            "lower",
            "< 2 s",
            pairs(s["restart"], s["plain_restart"]),
        ),
        Figure(
            "Ray: SIGKILL to answering again p50",
            med(s["restart"]),
            "s",
            "ours, local backend",
            med(local["restart"]),
            "lower",
        ),
        Figure(
            "Ray: SIGKILL to answering again, slowest",
            max(s["restart"]),
            "s",
            "plain Ray actor, max_restarts",
            max(s["plain_restart"]),
            "lower",
        ),
    ]
    return rows
