"""Regenerates tests/data/trace_run: a small traced run with a pipeline and a crash.

    python -m tests.scripts.make_trace_fixture

Then refresh the golden files: UPDATE_GOLDEN=1 pytest tests/test_trace.py
"""

import contextlib
import shutil
from pathlib import Path

import anyio

from runtime import Runtime
from tests.helpers import Crashy, Holder, Relay

TARGET = Path(__file__).resolve().parent.parent / "data" / "trace_run"


async def main() -> None:
    shutil.rmtree(TARGET, ignore_errors=True)
    TARGET.mkdir(parents=True)
    async with Runtime(log_dir=TARGET, trace=True) as rt:
        sink = await rt.spawn(Relay, None, name="sink")
        middle = await rt.spawn(Relay, sink, name="middle")
        head = await rt.spawn(Relay, middle, name="head")
        for i in range(5):
            await head.tell(("item", i))
        await head.ask("barrier")
        crashy = await rt.spawn(Crashy, name="crashy")
        holder = await rt.spawn(Holder, crashy, name="holder", on_error="resume")
        await crashy.tell(("rec", 1))
        with contextlib.suppress(ValueError):
            await holder.ask("crash")  # holder asks crashy, whose handler raises
        await crashy.ask("get")
    for stderr in TARGET.glob("*.stderr"):
        stderr.unlink()


if __name__ == "__main__":
    anyio.run(main)
