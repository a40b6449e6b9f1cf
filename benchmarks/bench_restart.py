"""Time from SIGKILL of an actor to its restarted incarnation answering an ask.

    python benchmarks/bench_restart.py [--quick] [--reps 20] [--json PATH]

Ours: a permanent actor under the root supervisor; SIGKILL its process, then ask it
until it answers (an ask sent before the runtime noticed the death fails with
ActorDeadError and is sent again). Baseline, same run: SIGKILL a ``multiprocessing``
forkserver child, wait for its sentinel, start a new one and get an answer over a
``Pipe``: what a hand-written supervisor would cost at best.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import statistics
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import anyio

from actors import Actor, ActorDeadError
from runtime import Runtime


class Pid(Actor):
    async def receive(self, message: Any) -> Any:
        return os.getpid()


def _child(conn: Connection) -> None:
    conn.send(os.getpid())
    conn.recv()


async def _ours(reps: int) -> list[float]:
    times = []
    async with Runtime(hang_timeout=None) as rt:
        sup = await rt.supervisor("bench", max_restarts=reps + 5, period=3600)
        ref = await rt.spawn(Pid, supervisor=sup)
        pid = await ref.ask("pid")
        for _ in range(reps):
            started = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            while True:
                try:
                    new = await ref.ask("pid", timeout=30)
                except ActorDeadError:
                    continue  # sent to the dead incarnation before its death was seen
                if new != pid:
                    break
            times.append(time.perf_counter() - started)
            pid = new
    return times


def _baseline(reps: int) -> list[float]:
    ctx = multiprocessing.get_context("forkserver")

    def start() -> tuple[Any, Connection]:
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(target=_child, args=(theirs,), daemon=True)
        proc.start()
        theirs.close()
        return proc, ours

    proc, conn = start()
    conn.recv()
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        os.kill(proc.pid, signal.SIGKILL)
        wait([proc.sentinel])
        proc.join()
        conn.close()
        proc, conn = start()
        conn.recv()
        times.append(time.perf_counter() - started)
    conn.send(None)
    proc.join(5)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 kills: check it runs")
    parser.add_argument("--reps", type=int, default=20, help="kills (default 20)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    args = parser.parse_args()
    reps = 5 if args.quick else args.reps
    ours = anyio.run(_ours, reps)
    base = _baseline(reps)
    rows = {
        "ours: SIGKILL to restarted actor answering": ours,
        "baseline: SIGKILL, fork a forkserver child, Pipe answer": base,
    }
    print(f"restart after SIGKILL, {reps} kills")
    for name, samples in rows.items():
        q = statistics.quantiles(samples, n=10) if len(samples) > 1 else samples * 9
        print(
            f"{name:58} p50 {statistics.median(samples) * 1e3:7.1f} ms   p90 {q[8] * 1e3:7.1f} ms"
        )
    ratio = statistics.median(ours) / statistics.median(base)
    print(f"ratio ours/baseline (medians): {ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"reps": reps, "rows": rows, "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
