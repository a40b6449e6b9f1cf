"""Word count over the standard library's .py files, with multiprocessing.Pool(W).

    python benchmarks/jobs/wc_pool.py [--workers 2] [--limit 0] [--batches 4]
                                      [--with-dependencies]

The files go to the pool in ``batches`` x W interleaved batches (4 per worker, as many
chunks as ``pool.map`` would cut), through ``imap_unordered``: each task counts its batch
into a Counter, which the parent merges as it comes back.

``--with-dependencies`` first loads the runtime's dependencies (asyncio, anyio and its
asyncio backend, structlog, aiomultiprocess) as the runtime loads them, and uses none of
them: the floor of the actors' job, which cannot load less.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from collections import Counter

if "--with-dependencies" in sys.argv:
    import anyio
    import anyio._backends._asyncio  # noqa: F401

    from runtime._lean import without_managers, without_rich

    with without_rich():
        import structlog  # noqa: F401
    with without_managers():
        import aiomultiprocess  # noqa: F401

from wc_common import count_files, digest, list_files, phases, summary


def main() -> None:
    stamps = {"imported": time.time()}
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="the first N files only")
    parser.add_argument("--batches", type=int, default=4, help="tasks per worker")
    parser.add_argument("--with-dependencies", action="store_true", help="see the docstring")
    args = parser.parse_args()
    paths = list_files(args.limit)
    tasks = args.workers * args.batches
    batches = [paths[i::tasks] for i in range(tasks)]
    total: Counter[bytes] = Counter()
    with multiprocessing.Pool(args.workers) as pool:
        stamps["pool_up"] = time.time()
        for counts in pool.imap_unordered(count_files, batches):
            total.update(counts)
        stamps["merged"] = time.time()
    stamps["pool_down"] = time.time()
    stamps["script_cpu_s"] = time.process_time()
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool's, joined on exit
    stamps["workers_cpu_s"] = workers.ru_utime + workers.ru_stime
    print(digest(summary(total)))
    print(phases(stamps))


if __name__ == "__main__":
    main()
