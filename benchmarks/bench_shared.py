"""Hand-off of a large numpy array to an actor, next to pickling it through a Pipe.

    python benchmarks/bench_shared.py [--quick] [--mib 100] [--reps 5] [--json PATH]

Each figure is the time from handing the array over until the receiver has read its first
and last element and said so (an ``ask`` round trip, or a ``Pipe`` send and reply):

* ``8-byte message``: an ask carrying one int, the floor for any hand-off;
* ``by handle, first use``: a fresh ``rt.shared_array`` each rep, so the actor maps it;
* ``by handle, mapped``: the same handle again (the actor's mapping is reused);
* ``inside a message``: the plain array inside an ordinary message (shared memory under
  the hood: one copy into a new segment, mapped by the receiver);
* ``Pipe, pickled``: ``conn.send(array)`` to a child that answers with the same floats;
* ``copy into a reused segment``: ``np.copyto`` into an already mapped segment, in
  process: the memory-bandwidth floor of any copying hand-off.

Then the shared lock: one process taking ``locked()`` with nobody else around, and four
actors incrementing one int64 under ``locked()`` at once. Reported: medians over reps,
and ratios against the Pipe figure measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from actors import Actor, SharedArray
from runtime import Runtime


class Toucher(Actor):
    """Reads the first and last element of what it is given; increments under the lock."""

    async def receive(self, message: Any) -> Any:
        match message:
            case ("touch", SharedArray() as handle):
                view = np.asarray(handle)
                return float(view[0] + view[-1])
            case ("touch", np.ndarray() as array):
                return float(array[0] + array[-1])
            case ("touch", value):
                return value
            case ("add", SharedArray() as handle, int(times)):
                for _ in range(times):
                    async with handle.locked() as view:
                        view[0] += 1
                return times
        return None


def _pipe_child(conn: Connection) -> None:
    while True:
        array = conn.recv()
        if array is None:
            return
        conn.send(float(array[0] + array[-1]))


def _pipe_handoff(array: np.ndarray, reps: int) -> list[float]:
    ctx = multiprocessing.get_context("forkserver")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=_pipe_child, args=(theirs,))
    child.start()
    theirs.close()
    times = []
    try:
        ours.send(np.zeros(8))  # warm up the child
        ours.recv()
        for _ in range(reps):
            started = time.perf_counter()
            ours.send(array)
            ours.recv()
            times.append(time.perf_counter() - started)
    finally:
        ours.send(None)
        child.join(10)
        ours.close()
    return times


async def _ours(array: np.ndarray, reps: int, increments: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {
        "8-byte message": [],
        "by handle, first use": [],
        "by handle, mapped": [],
        "inside a message": [],
    }
    async with Runtime() as rt:
        toucher = await rt.spawn(Toucher)
        await toucher.ask(("touch", 1))
        for _ in range(reps):
            started = time.perf_counter()
            await toucher.ask(("touch", 1))
            out["8-byte message"].append(time.perf_counter() - started)
        for _ in range(reps):
            handle = await rt.share(array)  # made outside the timing: it exists already
            started = time.perf_counter()
            await toucher.ask(("touch", handle))
            out["by handle, first use"].append(time.perf_counter() - started)
            started = time.perf_counter()
            await toucher.ask(("touch", handle))
            out["by handle, mapped"].append(time.perf_counter() - started)
            await rt.free(handle)

            started = time.perf_counter()
            await toucher.ask(("touch", array))
            out["inside a message"].append(time.perf_counter() - started)
            # the receiver unmaps the array after answering (~10 ms per 100 MiB of pages
            # to free): let that happen outside the next timing
            await toucher.ask(("touch", 1))

        counter = await rt.shared_array((1,), dtype="int64")
        uncontended = []
        for _ in range(reps):
            started = time.perf_counter()
            for _ in range(increments):
                async with counter.locked() as view:
                    view[0] += 1
            uncontended.append((time.perf_counter() - started) / increments)
        out["locked(), uncontended, per use"] = uncontended

        adders = [await rt.spawn(Toucher) for _ in range(4)]
        contended = []
        for _ in range(reps):
            started = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for adder in adders:
                    tg.start_soon(adder.ask, ("add", counter, increments))
            contended.append((time.perf_counter() - started) / (4 * increments))
        out["locked(), 4 actors at once, per use"] = contended
        expected = increments * reps * 5
        got = int(np.asarray(counter)[0])
        if got != expected:
            raise SystemExit(f"lost updates: counted {got}, expected {expected}")
    return out


def _copy_floor(array: np.ndarray, reps: int) -> list[float]:
    from runtime.shm.segments import create_segment, unlink_segment

    name = f"actors_{multiprocessing.current_process().pid}-bc_copy"
    mapping = create_segment(name, array.nbytes)
    try:
        target = np.frombuffer(mapping, dtype=array.dtype, count=array.size)
        np.copyto(target, array)  # first touch faults the pages in, as a reused one would be
        times = []
        for _ in range(reps):
            started = time.perf_counter()
            np.copyto(target, array)
            times.append(time.perf_counter() - started)
        del target
    finally:
        unlink_segment(name)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 MiB, 2 reps: check it runs")
    parser.add_argument("--mib", type=int, default=100, help="array size in MiB (default 100)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    args = parser.parse_args()
    mib, reps, increments = (8, 2, 200) if args.quick else (args.mib, args.reps, 2000)
    array = np.random.default_rng(1).random(mib * 1024 * 1024 // 8)

    results = anyio.run(_ours, array, reps, increments)
    results["Pipe, pickled"] = _pipe_handoff(array, reps)
    results["copy into a reused segment"] = _copy_floor(array, reps)

    pipe = statistics.median(results["Pipe, pickled"])
    print(f"hand-off of a {mib} MiB float64 array, median of {reps} reps")
    print(f"{'figure':40} {'median':>12} {'vs Pipe':>9}")
    rows = []
    for name, samples in results.items():
        median = statistics.median(samples)
        per_use = "per use" in name
        value = f"{median * 1e6:9.1f} µs" if per_use or median < 1e-3 else f"{median * 1e3:9.2f} ms"
        ratio = "" if per_use else f"{median / pipe:8.4f}x"
        print(f"{name:40} {value:>12} {ratio:>9}")
        rows.append({"figure": name, "median_s": median, "samples_s": samples})
    if args.json:
        report = {
            "mib": mib,
            "reps": reps,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "rows": rows,
        }
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
