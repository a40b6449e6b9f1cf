"""Starts a runtime whose actor maps a shared array; prints what it made as JSON; waits."""

import json
import multiprocessing.forkserver
import os

import anyio
import numpy as np

from runtime import Runtime
from tests.helpers import SharedUser


async def main() -> None:
    async with Runtime() as rt:
        data = await rt.shared_array((1024,), dtype="float64", name="data")
        user = await rt.spawn(SharedUser)
        await user.ask(("fill", data, 1.0))  # the actor maps it and takes its lock
        await user.tell(("echo", np.zeros(1 << 21)))  # and a large message goes through
        info = {
            "pid": os.getpid(),
            "actors": [await user.ask("pid")],
            "forkserver": multiprocessing.forkserver._forkserver._forkserver_pid,
            "run_dir": str(rt._rundir.path),
            "segments": [data.key],
        }
        print(json.dumps(info), flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main)
