"""The counter without actors: the same work with multiprocessing and a Queue.

``python benchmarks/counter_baseline.py`` spawns ``--workers`` processes that each count
to ``--count`` with the demo's own loop and put the result on a ``multiprocessing.Queue``;
the parent sums them. It is the baseline ``bench_counter.py`` compares the demo against.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

from demos.counter import count_up


def work(n: int, results: multiprocessing.Queue[int]) -> None:
    results.put(count_up(n))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--count", type=int, default=50_000_000)
    args = parser.parse_args()
    started = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[int] = ctx.Queue()
    procs = [ctx.Process(target=work, args=(args.count, results)) for _ in range(args.workers)]
    for p in procs:
        p.start()
    total = sum(results.get() for _ in procs)
    for p in procs:
        p.join()
    print(f"elapsed_s={time.perf_counter() - started:.3f}")
    print(f"total_number={total}")


if __name__ == "__main__":
    main()
