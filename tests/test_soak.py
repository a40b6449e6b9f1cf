"""Soaks: streams through a pipeline of actors while the middle one is killed repeatedly.

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

from actors import ActorDeadError, ActorRef
from runtime import Runtime
from runtime.trace import load_run
from tests.helpers import Relay
from tests.history import check_history

pytestmark = pytest.mark.anyio

SECONDS = float(os.environ.get("ACTORS_SOAK_SECONDS", "25"))


async def _pipeline(rt: Runtime) -> tuple[ActorRef, ActorRef]:
    """head -> middle -> sink, under a supervisor that never gives up; (head, middle)."""
    sup = await rt.supervisor("pipeline", max_restarts=1000, period=60)
    sink = await rt.spawn(Relay, None, name="sink", supervisor=sup)
    middle = await rt.spawn(Relay, sink, name="middle", supervisor=sup)
    head = await rt.spawn(Relay, middle, name="head", supervisor=sup)
    return head, middle


async def _produce(head: ActorRef, deadline: float, counter: list[int]) -> None:
    """Tell ("item", n) to ``head`` until ``deadline``; ``counter[0]`` counts them."""
    while time.monotonic() < deadline:
        for _ in range(20):
            await head.tell(("item", counter[0]))
            counter[0] += 1
        await anyio.sleep(0.01)  # pacing the load, not synchronising


@pytest.mark.timeout(SECONDS + 90)
async def test_a_pipeline_under_repeated_sigkill_loses_nothing_silently(tmp_path: Path) -> None:
    rng = random.Random(1234)  # the kill timing is seeded: reruns inject the same faults
    kills = 0
    counter = [0]
    async with Runtime(log_dir=tmp_path, trace=True) as rt:
        head, middle = await _pipeline(rt)
        deadline = time.monotonic() + SECONDS

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
                tg.start_soon(_produce, head, deadline, counter)
                tg.start_soon(kill_middle)
            kept = await head.ask("barrier", timeout=60)  # drains the whole pipeline
    history = check_history(tmp_path)
    assert kills >= SECONDS // 2
    assert len(history.sent) >= 3 * counter[0] // 2  # main->head, head->middle, middle->sink
    assert history.unaccounted == set(), f"{len(history.unaccounted)} messages unaccounted"
    assert history.duplicated == []  # at most once
    assert history.unexpected == set()
    assert history.fifo_violations == []
    assert set(history.dead_by_reason()) <= {"in_doubt", "crashed", "stopped"}
    lost_in_doubt = history.dead_by_reason()["in_doubt"]
    assert kept + lost_in_doubt >= counter[0] - lost_in_doubt  # the sink got the rest
    assert rt.report.restarts["middle"] == kills


@pytest.mark.timeout(SECONDS + 90)
async def test_asks_and_tells_under_sigkill_and_exit_each_end_with_one_outcome(
    tmp_path: Path,
) -> None:
    rng = random.Random(4321)  # the fault schedule is seeded: reruns inject the same faults
    seconds = SECONDS * 0.6
    kills = exits = asked = ask_errors = 0
    counter = [0]
    async with Runtime(log_dir=tmp_path, trace=True) as rt:
        head, middle = await _pipeline(rt)
        deadline = time.monotonic() + seconds

        async def ask() -> None:
            nonlocal asked, ask_errors
            while time.monotonic() < deadline:
                asked += 1
                try:
                    await middle.ask(("item", -asked), timeout=30)
                except ActorDeadError:
                    ask_errors += 1

        async def strike() -> None:
            nonlocal kills, exits
            while time.monotonic() < deadline - 1:
                await anyio.sleep(rng.uniform(0.3, 0.8))  # when to strike: the fault schedule
                async with rt.probe() as probe:
                    if rng.random() < 0.5:
                        os.kill(await middle.ask("pid", timeout=30), signal.SIGKILL)
                        kills += 1
                    else:
                        await middle.tell("exit")  # os._exit(3) in its handler
                        exits += 1
                    await probe.expect("actor.restarted", actor="middle", timeout=30)

        with anyio.fail_after(seconds + 60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_produce, head, deadline, counter)
                for _ in range(4):
                    tg.start_soon(ask)
                tg.start_soon(strike)
            await head.ask("barrier", timeout=60)  # drains the whole pipeline
    history = check_history(tmp_path)
    assert kills >= 2
    assert exits >= 2
    assert ask_errors > 0  # asks were in flight when the middle actor died
    assert history.unaccounted == set(), f"{len(history.unaccounted)} messages unaccounted"
    assert history.two_outcomes == {}
    assert history.duplicated == []
    assert history.fifo_violations == []
    # every message, tell or ask, has exactly one outcome as the viewer resolves it
    assert history.sent | history.asked <= set(history.outcomes)
    # the report agrees with the logs: over all incarnations, killed ones included
    run = load_run(tmp_path)
    summary = {row.actor: row for row in run.summary()}
    for name in ("head", "middle", "sink"):
        assert rt.report.handled[name] == summary[name].handled, name
        assert rt.report.failed[name] == summary[name].failed, name
        assert rt.report.dead_lettered[name] == summary[name].dead_lettered, name
    records = [e for e in run.events if e["event"] == "message.dead_lettered"]
    in_doubt = [e for e in records if e.get("reason") == "in_doubt"]
    assert rt.report.in_doubt == len(in_doubt)  # asks included
    assert any(e.get("ask") for e in in_doubt)
    assert rt.report.restarts["middle"] == kills + exits
    assert rt.report.stopped == ["head", "middle", "sink"]  # newest first
