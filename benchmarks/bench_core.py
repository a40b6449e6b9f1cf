"""Core costs of the runtime, each next to a raw multiprocessing baseline from the same run.

    python benchmarks/bench_core.py [--quick] [--reps N] [--json PATH]

Measured:

1. spawn-to-ready: median of ``await rt.spawn(Echo)`` vs a ``multiprocessing`` child that
   sends "ready" over a ``Pipe`` (both the "spawn" and the "forkserver" start methods);
2. ask round trip: p50 and p99 of ``await ref.ask(i)`` vs a blocking ``Pipe`` ping-pong;
3. tell throughput: ``await ref.tell(i)`` N times plus an ``ask`` barrier vs ``conn.send(i)``
   N times into a ``Pipe`` whose child counts and replies at the end.

Every measurement is repeated ``--reps`` times, ours and the baseline alternating (the
order flips each rep so that drift in machine load does not favour one side); the report
gives the median of the per-rep ratios ours/baseline with their min and max.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only light imports at the top: every baseline "spawn" child re-imports this script, and
# its start-up time is one of the figures. `runtime`, `anyio` and `rich` are imported
# where they are used, in the parent only.
from actors import Actor

if TYPE_CHECKING:
    from runtime import Runtime

FULL = {"spawns": 10, "asks": 2000, "ask_warmup": 200, "tells": 100_000}
QUICK = {"spawns": 3, "asks": 200, "ask_warmup": 20, "tells": 5_000}


# -- actors under test ---------------------------------------------------------------------


class Echo(Actor):
    async def receive(self, message: Any) -> Any:
        return message


class Sink(Actor):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    async def receive(self, message: Any) -> Any:
        if message == "count":
            return self.n
        if message == "sched":
            return self.n, scheduler_times()
        if message == "pid":
            return os.getpid()
        self.n += 1
        return None


class BusySink(Sink):
    """A sink whose handler does ``work`` loop turns of CPU work per message (about 7 ns
    each here): a handler that computes something, where ``Sink``'s does nothing."""

    def __init__(self, work: int) -> None:
        super().__init__()
        self.work = work

    async def receive(self, message: Any) -> Any:
        if isinstance(message, int):
            for _ in range(self.work):
                pass
        return await super().receive(message)


def scheduler_times() -> tuple[float, float]:
    """Seconds this process has spent on a CPU, and runnable but waiting for one.

    From ``/proc/self/schedstat`` (Linux); zeros where there is none.
    """
    try:
        with open("/proc/self/schedstat") as f:
            on_cpu, waiting, _ = f.read().split()
    except (OSError, ValueError):
        return 0.0, 0.0
    return int(on_cpu) / 1e9, int(waiting) / 1e9


# -- baseline children (module level: the spawn start method imports them by name) ---------


def _ready_child(conn: Connection) -> None:
    conn.send("ready")
    conn.close()


def _echo_child(conn: Connection) -> None:
    conn.send("ready")
    while (message := conn.recv()) is not None:
        conn.send(message)


def _count_child(conn: Connection) -> None:
    conn.send("ready")
    count = 0
    while conn.recv() is not None:
        count += 1
    conn.send(count)


# -- our side --------------------------------------------------------------------------------


def _run_ours(log_dir: str, measure: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run ``measure(rt, *args)`` inside a fresh Runtime on a fresh event loop."""
    import anyio

    from runtime import Runtime

    async def session() -> Any:
        # an explicit log_dir keeps the benchmark's runs out of the user's kept run logs
        async with Runtime(log_dir=log_dir, trace=False) as rt:
            return await measure(rt, *args)

    return anyio.run(session)


async def _ours_warm_up(rt: Runtime) -> None:
    ref = await rt.spawn(Echo)
    await ref.ask("warm-up")
    await rt.stop(ref)


async def _ours_spawn(rt: Runtime, count: int) -> list[float]:
    times = []
    for _ in range(count + 1):
        start = time.perf_counter()
        ref = await rt.spawn(Echo)
        times.append(time.perf_counter() - start)
        await rt.stop(ref)
    return times[1:]  # the first spawn of each runtime is a warm-up


async def _ours_ask(rt: Runtime, warmup: int, count: int) -> list[float]:
    ref = await rt.spawn(Echo)
    for i in range(warmup):
        await ref.ask(i)
    times = []
    for i in range(count):
        start = time.perf_counter()
        answer = await ref.ask(i)
        times.append(time.perf_counter() - start)
        _check("Echo answer", answer, i)
    await rt.stop(ref)
    return times


async def _ours_tell(rt: Runtime, count: int) -> float:
    ref = await rt.spawn(Sink)
    start = time.perf_counter()
    for i in range(count):
        await ref.tell(i)
    received = await ref.ask("count", timeout=300.0)
    elapsed = time.perf_counter() - start
    _check("Sink count", received, count)
    await rt.stop(ref)
    return count / elapsed


# -- baseline side ---------------------------------------------------------------------------


def _base_spawn(method: str, count: int) -> list[float]:
    ctx = multiprocessing.get_context(method)
    times = []
    for _ in range(count + 1):
        reader, writer = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_ready_child, args=(writer,), daemon=True)
        start = time.perf_counter()
        proc.start()
        writer.close()  # so that a child dying early gives EOFError, not a hang
        _check("baseline child", reader.recv(), "ready")
        times.append(time.perf_counter() - start)
        reader.close()
        proc.join()
    return times[1:]


@contextlib.contextmanager
def _base_child(target: Callable[[Connection], None]) -> Iterator[Connection]:
    """Start ``target`` in a spawn child; yield our end of the Pipe once the child is ready.

    The body must end by sending None, which makes the child exit.
    """
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=target, args=(theirs,), daemon=True)
    proc.start()
    theirs.close()
    try:
        _check("baseline child", ours.recv(), "ready")
        yield ours
        proc.join(timeout=30)
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
        ours.close()


def _base_ask(warmup: int, count: int) -> list[float]:
    with _base_child(_echo_child) as conn:
        for i in range(warmup):
            conn.send(i)
            conn.recv()
        times = []
        for i in range(count):
            start = time.perf_counter()
            conn.send(i)
            answer = conn.recv()
            times.append(time.perf_counter() - start)
            _check("baseline echo", answer, i)
        conn.send(None)
    return times


def _base_tell(count: int) -> float:
    with _base_child(_count_child) as conn:
        start = time.perf_counter()
        for i in range(count):
            conn.send(i)
        conn.send(None)
        received = conn.recv()
        elapsed = time.perf_counter() - start
    _check("baseline count", received, count)
    return count / elapsed


def _check(what: str, got: object, expected: object) -> None:
    if got != expected:
        raise RuntimeError(f"{what}: expected {expected!r}, got {got!r}")


# -- results ---------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the report: a figure per rep for us and for the baseline."""

    label: str
    baseline_name: str
    unit: str
    scale: float  # from the stored SI value (seconds, msg/s) to ``unit``
    better: str  # "lower" or "higher"
    with_ratio: bool = True
    ours: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)

    def ratios(self) -> list[float]:
        return [o / b for o, b in zip(self.ours, self.baseline, strict=True)]

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "label": self.label,
            "baseline": self.baseline_name,
            "unit": "s" if self.unit != "msg/s" else "msg/s",
            "better": self.better,
            "ours_per_rep": self.ours,
            "baseline_per_rep": self.baseline,
            "ours_median": statistics.median(self.ours),
            "baseline_median": statistics.median(self.baseline),
        }
        if self.with_ratio:
            ratios = self.ratios()
            data |= {
                "ratio_per_rep": ratios,
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
            }
        return data


def _percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[98]


def _alternate(rep: int, steps: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run ``steps`` in order on even reps and in reverse order on odd ones."""
    order = list(steps) if rep % 2 == 0 else list(reversed(steps))
    results = {}
    for name in order:
        _progress(f"rep {rep + 1}: {name}")
        results[name] = steps[name]()
    return results


def _progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def run(sizes: dict[str, int], reps: int, log_dir: str) -> list[Row]:
    spawn_vs_spawn = Row("spawn-to-ready, median", "mp spawn + Pipe", "ms", 1e3, "lower")
    spawn_vs_fork = Row("spawn-to-ready, median", "mp forkserver + Pipe", "ms", 1e3, "lower")
    ask_p50 = Row("ask round trip, p50", "Pipe ping-pong", "µs", 1e6, "lower")
    ask_p99 = Row("ask round trip, p99", "Pipe ping-pong", "µs", 1e6, "lower", with_ratio=False)
    tell = Row("tell throughput", "Pipe send + count", "msg/s", 1.0, "higher")

    # The forkserver is one per process and keeps the preload list it was started with.
    # Start it through the runtime first, so that actors get the runtime's preload (as in
    # real use) and the forkserver baseline forks from that same server.
    _progress("warm-up: starting the runtime's forkserver")
    _run_ours(log_dir, _ours_warm_up)

    for rep in range(reps):
        got = _alternate(
            rep,
            {
                "spawn, ours": lambda: _run_ours(log_dir, _ours_spawn, sizes["spawns"]),
                "spawn, mp spawn": lambda: _base_spawn("spawn", sizes["spawns"]),
                "spawn, mp forkserver": lambda: _base_spawn("forkserver", sizes["spawns"]),
            },
        )
        ours_spawn = statistics.median(got["spawn, ours"])
        spawn_vs_spawn.ours.append(ours_spawn)
        spawn_vs_spawn.baseline.append(statistics.median(got["spawn, mp spawn"]))
        spawn_vs_fork.ours.append(ours_spawn)
        spawn_vs_fork.baseline.append(statistics.median(got["spawn, mp forkserver"]))

        got = _alternate(
            rep,
            {
                "ask, ours": lambda: _run_ours(
                    log_dir, _ours_ask, sizes["ask_warmup"], sizes["asks"]
                ),
                "ask, Pipe": lambda: _base_ask(sizes["ask_warmup"], sizes["asks"]),
            },
        )
        ours_p50, ours_p99 = _percentiles(got["ask, ours"])
        base_p50, base_p99 = _percentiles(got["ask, Pipe"])
        ask_p50.ours.append(ours_p50)
        ask_p50.baseline.append(base_p50)
        ask_p99.ours.append(ours_p99)
        ask_p99.baseline.append(base_p99)

        got = _alternate(
            rep,
            {
                "tell, ours": lambda: _run_ours(log_dir, _ours_tell, sizes["tells"]),
                "tell, Pipe": lambda: _base_tell(sizes["tells"]),
            },
        )
        tell.ours.append(got["tell, ours"])
        tell.baseline.append(got["tell, Pipe"])

    return [spawn_vs_spawn, spawn_vs_fork, ask_p50, ask_p99, tell]


# -- report ----------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=Path(__file__).resolve().parent,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "commit": commit or None,
    }


def _figure(row: Row, value: float) -> str:
    scaled = value * row.scale
    if row.unit == "msg/s":
        return f"{scaled:,.0f} msg/s"
    return f"{scaled:,.{2 if row.unit == 'ms' else 1}f} {row.unit}"


def _table_cells(rows: list[Row]) -> list[list[str]]:
    cells = []
    for row in rows:
        ratio = "-"
        if row.with_ratio:
            ratios = row.ratios()
            ratio = f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
        cells.append(
            [
                row.label,
                _figure(row, statistics.median(row.ours)),
                _figure(row, statistics.median(row.baseline)),
                row.baseline_name,
                ratio,
                row.better,
            ]
        )
    return cells


HEADERS = ["measurement", "ours", "baseline", "baseline is", "ours/baseline (min-max)", "better"]
# which columns hold numbers, to right-align them
NUMERIC = {1, 2, 4}


def render(rows: list[Row], machine: dict[str, Any], sizes: dict[str, int], reps: int) -> None:
    title = (
        f"bench_core: {machine['date']}  nproc={machine['nproc']}  {machine['python']}  "
        f"load={machine['loadavg_at_start']}  commit={machine['commit']}"
    )
    params = "  ".join(f"{k}={v:,}" for k, v in sizes.items()) + f"  reps={reps}"
    note = (
        "figures: median over reps; ratio: median of per-rep ours/baseline. "
        "forkserver baseline forks from the runtime's preloaded forkserver."
    )
    cells = _table_cells(rows)
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, caption=f"{params}\n{note}")
        for i, header in enumerate(HEADERS):
            table.add_column(header, justify="right" if i in NUMERIC else "left")
        for line in cells:
            table.add_row(*line)
        Console().print(table)
        return
    widths = [max(len(line[i]) for line in [HEADERS, *cells]) for i in range(len(HEADERS))]

    def fmt(line: list[str]) -> str:
        return "  ".join(
            text.rjust(w) if i in NUMERIC else text.ljust(w)
            for i, (text, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()

    print(title)
    print(params)
    print(fmt(HEADERS))
    print(fmt(["-" * w for w in widths]))
    for line in cells:
        print(fmt(line))
    print(note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check it runs")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--spawns", type=int, help=f"spawns per rep (default {FULL['spawns']})")
    parser.add_argument("--asks", type=int, help=f"timed asks per rep (default {FULL['asks']})")
    parser.add_argument("--tells", type=int, help=f"tells per rep (default {FULL['tells']})")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    args = parser.parse_args()
    if args.reps < 1:
        parser.error("--reps must be at least 1")

    sizes = dict(QUICK if args.quick else FULL)
    for key in ("spawns", "asks", "tells"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    if min(sizes.values()) < 1 or sizes["asks"] < 2:
        parser.error("sizes must be positive (and --asks at least 2 for percentiles)")

    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="bench-core-logs-") as log_dir:
        rows = run(sizes, args.reps, log_dir)
    render(rows, machine, sizes, args.reps)
    if args.json is not None:
        report = {
            "machine": machine,
            "sizes": sizes,
            "reps": args.reps,
            "results": [row.to_json() for row in rows],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
