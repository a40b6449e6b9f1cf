"""Short job, multiprocessing: a Pool(4) squares 4 numbers, exits.

    python benchmarks/jobs/short_pool.py

Prints the answers, then a line of wall-clock stamps for the benchmark's breakdown.
"""

from __future__ import annotations

import json
import multiprocessing
import time


def square(n: int) -> int:
    return n * n


def main() -> None:
    stamps = {"imported": time.time()}
    with multiprocessing.Pool(4) as pool:
        stamps["pool_up"] = time.time()
        results = pool.map(square, range(4))
        stamps["answered"] = time.time()
    stamps["pool_down"] = time.time()
    if results != [i * i for i in range(4)]:
        raise SystemExit(f"wrong results {results}")
    print(results)
    print("phases=" + json.dumps({**stamps, "end": time.time()}))


if __name__ == "__main__":
    main()
