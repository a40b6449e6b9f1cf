"""Soak: a stream through a pipeline of actors while the middle one is SIGKILLed repeatedly.

Bounded to about half a minute (``ACTORS_SOAK_SECONDS`` changes it). Afterwards the
traced logs must account for every message: handled, failed or dead-lettered (in doubt
when its receiver died before confirming it), none handled twice, FIFO per sender and
receiving incarnation, and nothing left over (the leak fixture).
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import anyio
import pytest

from runtime import Runtime
from tests.helpers import Relay
from tests.history import check_history

pytestmark = pytest.mark.anyio

SECONDS = float(os.environ.get("ACTORS_SOAK_SECONDS", "25"))


@pytest.mark.timeout(SECONDS + 90)
async def test_a_pipeline_under_repeated_sigkill_loses_nothing_silently(tmp_path: Path) -> None:
    rng = random.Random(1234)  # the kill timing is seeded: reruns inject the same faults
    kills = 0
    sent = 0
    async with Runtime(log_dir=tmp_path, trace=True) as rt:
        sup = await rt.supervisor("pipeline", max_restarts=1000, period=60)
        sink = await rt.spawn(Relay, None, name="sink", supervisor=sup)
        middle = await rt.spawn(Relay, sink, name="middle", supervisor=sup)
        head = await rt.spawn(Relay, middle, name="head", supervisor=sup)
        deadline = time.monotonic() + SECONDS

        async def produce() -> None:
            nonlocal sent
            while time.monotonic() < deadline:
                for _ in range(20):
                    await head.tell(("item", sent))
                    sent += 1
                await anyio.sleep(0.01)  # pacing the load, not synchronising

        async def kill_middle() -> None:
            nonlocal kills
            while time.monotonic() < deadline - 1:
                await anyio.sleep(rng.uniform(0.3, 1.0))  # when to strike: the fault schedule
                pid = await middle.ask("pid", timeout=30)
                async with rt.probe() as probe:
                    os.kill(pid, signal.SIGKILL)
                    await probe.expect("actor.restarted", actor="middle", timeout=30)
                kills += 1

        with anyio.fail_after(SECONDS + 60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(produce)
                tg.start_soon(kill_middle)
            kept = await head.ask("barrier", timeout=60)  # drains the whole pipeline
    history = check_history(tmp_path)
    assert kills >= SECONDS // 2
    assert len(history.sent) >= 3 * sent // 2  # main->head, head->middle, middle->sink
    assert history.unaccounted == set(), f"{len(history.unaccounted)} messages unaccounted"
    assert history.duplicated == []  # at most once
    assert history.unexpected == set()
    assert history.fifo_violations == []
    assert set(history.dead_by_reason()) <= {"in_doubt", "crashed", "stopped"}
    lost_in_doubt = history.dead_by_reason()["in_doubt"]
    assert kept + lost_in_doubt >= sent - lost_in_doubt  # the sink got the rest
    assert rt.report.restarts["middle"] == kills
