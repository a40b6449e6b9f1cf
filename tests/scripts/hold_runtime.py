"""Starts a runtime with two actors, prints their pids as JSON, then waits forever.

With ``--no-signals``, the runtime leaves SIGTERM and SIGHUP to their default actions.
With ``--blocked``, a third actor's handler blocks its event loop (its pid is last).
"""

import json
import multiprocessing.forkserver
import os
import sys
from multiprocessing import resource_tracker

import anyio

from runtime import Runtime
from tests.helpers import Faulty, Recorder


async def main() -> None:
    async with Runtime(handle_sigterm="--no-signals" not in sys.argv) as rt:
        refs = [await rt.spawn(Recorder) for _ in range(2)]
        pids = [await ref.ask("pid", timeout=10) for ref in refs]
        if "--blocked" in sys.argv:
            blocked = await rt.spawn(Faulty)
            pids.append(await blocked.ask("pid", timeout=10))
            await blocked.tell("hang")  # time.sleep(60) in its handler
        info = {
            "pid": os.getpid(),
            "actors": pids,
            "forkserver": multiprocessing.forkserver._forkserver._forkserver_pid,
            "tracker": resource_tracker._resource_tracker._pid,
            "run_dir": str(rt._rundir.path),
            "forkserver_dir": multiprocessing.current_process()._config["tempdir"],
        }
        print(json.dumps(info), flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main)
