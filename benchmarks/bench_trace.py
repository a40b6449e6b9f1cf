"""Tell throughput with tracing off and on, next to a raw Pipe, in the same run.

    python benchmarks/bench_trace.py [--quick] [--tells N] [--reps N]

Each rep runs the three one after the other (the order rotates): ``N`` tells from the
script to an actor plus an ``ask`` barrier, with ``Runtime(trace=False)``, then with
``trace=True`` (one event per message in each process: sent, received, handled), and
``conn.send`` N times into a ``multiprocessing.Pipe`` whose child counts.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from typing import Any

import anyio

from actors import Actor
from runtime import Runtime


class Sink(Actor):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    async def receive(self, message: Any) -> Any:
        if message == "count":
            return self.count
        self.count += 1
        return None


async def _ours(tells: int, trace: bool) -> float:
    with tempfile.TemporaryDirectory() as logs:
        async with Runtime(log_dir=logs, trace=trace) as rt:
            sink = await rt.spawn(Sink)
            await sink.ask("count")
            started = time.perf_counter()
            for i in range(tells):
                await sink.tell(i)
            got = await sink.ask("count", timeout=120)
            elapsed = time.perf_counter() - started
    if got != tells:
        raise SystemExit(f"lost messages: {got} of {tells}")
    return tells / elapsed


def _count_child(conn: Connection) -> None:
    n = 0
    while conn.recv() is not None:
        n += 1
    conn.send(n)


def _pipe(tells: int) -> float:
    ctx = multiprocessing.get_context("forkserver")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=_count_child, args=(theirs,))
    child.start()
    theirs.close()
    started = time.perf_counter()
    for i in range(tells):
        ours.send(i)
    ours.send(None)
    got = ours.recv()
    elapsed = time.perf_counter() - started
    child.join(10)
    if got != tells:
        raise SystemExit(f"pipe lost messages: {got} of {tells}")
    return tells / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 tells, 2 reps")
    parser.add_argument("--tells", type=int, default=30_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    tells, reps = (2000, 2) if args.quick else (args.tells, args.reps)
    results: dict[str, list[float]] = {"tracing off": [], "tracing on": [], "Pipe": []}
    steps = [
        ("tracing off", lambda: anyio.run(_ours, tells, False)),
        ("tracing on", lambda: anyio.run(_ours, tells, True)),
        ("Pipe", lambda: _pipe(tells)),
    ]
    for rep in range(reps):
        for name, step in steps[rep % 3 :] + steps[: rep % 3]:
            results[name].append(step())
    off = statistics.median(results["tracing off"])
    print(f"tell throughput, {tells} tells, median of {reps} reps")
    for name, samples in results.items():
        value = statistics.median(samples)
        print(f"{name:12} {value:10,.0f} msg/s   {value / off:5.2f}x tracing off")


if __name__ == "__main__":
    main()
