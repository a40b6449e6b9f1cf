"""Short job, actors: start a runtime, spawn 4 workers at once, ask each once, exit.

    python benchmarks/jobs/short_actors.py [LOG_DIR]

Prints the answers, then a line of wall-clock stamps for the benchmark's breakdown.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import anyio

from actors import Actor
from runtime import Runtime


class Square(Actor):
    async def receive(self, message: int) -> int:
        return message * message


async def main(log_dir: str | None, stamps: dict[str, float]) -> list[int]:
    async with Runtime(log_dir=log_dir) as rt:
        stamps["runtime_up"] = time.time()
        refs: list[Any] = [None] * 4

        async def start(i: int) -> None:
            refs[i] = await rt.spawn(Square)

        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(start, i)
        stamps["spawned"] = time.time()
        results = [await ref.ask(i) for i, ref in enumerate(refs)]
        stamps["answered"] = time.time()
    stamps["runtime_down"] = time.time()
    return results


if __name__ == "__main__":
    stamps = {"imported": time.time()}
    # the runtime's default log directory if none is given
    results = anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else None, stamps)
    if results != [i * i for i in range(4)]:
        raise SystemExit(f"wrong results {results}")
    print(results)
    print("phases=" + json.dumps({**stamps, "end": time.time()}))
