"""Starts three actors that note their stop order; prints their pids; waits for SIGTERM."""

import json
import sys

import anyio

from runtime import Runtime
from tests.helpers import StopRecorder


async def main(order_file: str, log_dir: str) -> None:
    async with Runtime(log_dir=log_dir) as rt:
        refs = [
            await rt.spawn(StopRecorder, order_file, name=n) for n in ("first", "second", "third")
        ]
        pids = [await ref.ask("pid") for ref in refs]
        print(json.dumps({"actors": pids}), flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
