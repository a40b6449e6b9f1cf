# A script with no __main__ guard whose top level catches everything and writes markers:
# in actor processes, nothing after the point where it enters Runtime() may run.
import os
import sys
from pathlib import Path

import anyio

from actors import Actor
from runtime import Runtime

MARKS = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(os.environ["MARKS_DIR"])


class Echo(Actor):
    async def receive(self, message):
        return message


async def main() -> None:
    async with Runtime(log_dir=MARKS / "logs") as rt:
        echo = await rt.spawn(Echo, name="echo")
        print(await echo.ask("hello"), flush=True)


(MARKS / f"before.{os.getpid()}").touch()
try:
    anyio.run(main)
except BaseException:
    (MARKS / f"handler.{os.getpid()}").touch()
finally:
    (MARKS / f"finally.{os.getpid()}").touch()
(MARKS / f"after.{os.getpid()}").touch()
