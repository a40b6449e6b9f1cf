"""Actors that fork or start subprocesses: their death is still seen at once, and their
descendants end with them (real processes, real sockets)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from actors import ActorDeadError, ActorRef
from runtime import Runtime
from tests.helpers import Forker, Latch, running, wait_ended

pytestmark = pytest.mark.anyio

#: what an ask in these tests would wait for an answer: far beyond ``PROMPT``
ASK_TIMEOUT = 30.0
#: the bound within which a death must be seen, a restart answer, a descendant end
PROMPT = 5.0
ROOT = Path(__file__).resolve().parent.parent
#: a script whose actor leaves a fork and a subprocess, then waits to be killed
_LEAVES_DESCENDANTS = """
import json, anyio
from runtime import Runtime
from tests.helpers import Forker

async def main():
    async with Runtime() as rt:
        forker = await rt.spawn(Forker)
        print(json.dumps([await forker.ask("fork"), await forker.ask("popen")]), flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""


async def _kill_while_asked(ask: Callable[[], Awaitable[Any]], latch: ActorRef, pid: int) -> Any:
    """Run ``ask`` (which makes an actor open ``latch`` and hang), SIGKILL ``pid`` once the
    latch is open, and return what the ask returned or raised within ``PROMPT`` after.
    """
    outcome: list[Any] = []
    done = anyio.Event()

    async def asking() -> None:
        try:
            outcome.append(await ask())
        except Exception as exc:
            outcome.append(exc)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(asking)
        assert await latch.ask("wait", timeout=PROMPT) == "opened"  # the handler hangs
        os.kill(pid, signal.SIGKILL)
        with anyio.fail_after(PROMPT):  # not the ask's own timeout
            await done.wait()
    return outcome[0]


async def test_an_ask_in_flight_to_an_actor_killed_while_its_fork_sleeps_fails_at_once(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        latch = await rt.spawn(Latch)
        forker = await rt.spawn(Forker, name="forker")
        pid = await forker.ask("pid")
        child = psutil.Process(await forker.ask("fork"))
        try:
            async with rt.probe() as probe:
                error = await _kill_while_asked(
                    lambda: forker.ask(("hang", latch), timeout=ASK_TIMEOUT), latch, pid
                )
                assert isinstance(error, ActorDeadError), error
                await probe.expect("actor.restarted", actor="forker")
            assert await forker.ask("pid", timeout=PROMPT) != pid  # the restart is reachable
            # the fork was in the actor's process group: killed once the actor was gone
            assert not await wait_ended([child], PROMPT)
        finally:
            if running([child]):
                child.kill()


async def test_an_actor_asking_one_killed_while_its_fork_sleeps_elsewhere_is_told_at_once(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        latch = await rt.spawn(Latch)
        asker = await rt.spawn(Forker, name="asker")
        target = await rt.spawn(Forker, name="target")
        pid = await target.ask("pid")
        assert await asker.ask(("ask", target, "pid")) == pid  # connected before the fork
        # out of the actor's process group, so not killed with it: only the descriptors
        # the fork gave up let the asker see the death
        child = psutil.Process(await target.ask(("fork", "setsid")))
        try:
            async with rt.probe() as probe:
                told = await _kill_while_asked(
                    lambda: asker.ask(("ask", target, ("hang", latch)), timeout=ASK_TIMEOUT),
                    latch,
                    pid,
                )
                assert told == "ActorDeadError"
                await probe.expect("actor.restarted", actor="target")
            new_pid = await asker.ask(("ask", target, "pid"), timeout=PROMPT)
            assert isinstance(new_pid, int)
            assert new_pid != pid  # the asker reaches the restart
            assert running([child])  # what the asker saw came from no kill of the fork
        finally:
            child.kill()


async def test_the_drivers_ask_fails_at_once_even_if_a_fork_behind_pythons_back_keeps_sockets(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        latch = await rt.spawn(Latch)
        forker = await rt.spawn(Forker, name="forker")
        pid = await forker.ask("pid")
        # libc's fork skips Python's at-fork hooks: this child holds every socket the
        # actor had, out of reach of the kill of the actor's process group
        child = psutil.Process(await forker.ask(("fork", "raw-setsid")))
        try:
            async with rt.probe() as probe:
                error = await _kill_while_asked(
                    lambda: forker.ask(("hang", latch), timeout=ASK_TIMEOUT), latch, pid
                )
                assert isinstance(error, ActorDeadError), error
                await probe.expect("actor.restarted", actor="forker")
            assert await forker.ask("pid", timeout=PROMPT) != pid
            assert running([child])
        finally:
            child.kill()


async def test_a_subprocess_of_an_actor_is_killed_with_the_actor(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        forker = await rt.spawn(Forker, name="forker")
        pid = await forker.ask("pid")
        sleep = psutil.Process(await forker.ask("popen"))
        try:
            async with rt.probe() as probe:
                os.kill(pid, signal.SIGKILL)
                await probe.expect("actor.restarted", actor="forker")
            assert not await wait_ended([sleep], PROMPT)
            assert await forker.ask("pid", timeout=PROMPT) != pid
        finally:
            if running([sleep]):
                sleep.kill()


async def test_the_descendants_of_an_actor_do_not_outlive_the_run(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        forker = await rt.spawn(Forker, name="forker")
        left = [psutil.Process(await forker.ask(what)) for what in ("popen", "fork")]
    try:
        assert not await wait_ended(left, PROMPT)
    finally:
        for proc in running(left):
            proc.kill()


async def test_the_descendants_of_an_actor_end_when_the_script_is_killed(
    tmp_path: Path, private_runs: Path
) -> None:
    script = subprocess.Popen(
        [sys.executable, "-c", _LEAVES_DESCENDANTS],
        cwd=ROOT,
        env={**os.environ, "ACTORS_LOG_DIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        start_new_session=True,  # its own process group: its forkserver is killed at the end
    )
    assert script.stdout is not None
    try:
        left = [psutil.Process(pid) for pid in json.loads(script.stdout.readline())]
        script.kill()  # the script alone: its actor finds it gone, and ends its own group
        script.wait(PROMPT)
        try:
            assert not await wait_ended(left, PROMPT)
        finally:
            for proc in running(left):
                proc.kill()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(script.pid, signal.SIGKILL)
        script.stdout.close()
    async with Runtime(log_dir=tmp_path / "next"):
        pass  # sweeps the dead run's directory


async def test_a_program_an_actor_runs_inherits_none_of_the_runtimes_descriptors(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        forker = await rt.spawn(Forker, name="forker")
        # close_fds=False: only the close-on-exec flag keeps the runtime's descriptors
        sleep = psutil.Process(await forker.ask(("popen", False)))
        try:
            held = _pipes_and_sockets(sleep.pid)
        finally:
            sleep.kill()
    # the runtime's are all pipes and sockets (files the program opens as it starts are not)
    assert held == []


def _pipes_and_sockets(pid: int) -> list[str]:
    """The pipes and sockets process ``pid`` holds beyond stdin, stdout and stderr."""
    held = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if int(fd) > 2 and target.startswith(("pipe:", "socket:")):
                held.append(f"{fd} -> {target}")
    return held
