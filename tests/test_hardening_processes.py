"""Processes: the forkserver ending mid-start, and the system's limit on processes and
threads. Each costs at most the start it hits, with an error that says what to do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime import Runtime

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
#: where cgroup v1 mounts its pids controller: a limit on processes is made there
PIDS = Path("/sys/fs/cgroup/pids")
#: the limit the script runs under: room for the driver's own and about a dozen actors
PIDS_MAX = 30

# Spawn until spawns fail under the cgroup's limit, one after the other ("one-by-one") or
# twice as many as it allows all at once ("at-once"); then ask each actor that started.
SPAWN_UNTIL_REFUSED = """
import json, os, sys

import anyio

from actors import ActorStartError
from runtime import Runtime
from tests.helpers import Recorder


async def main(at_once: bool) -> None:
    out = {"failures": []}
    async with Runtime() as rt:
        refs = []

        async def spawn() -> None:
            try:
                refs.append(await rt.spawn(Recorder))
            except ActorStartError as exc:
                out["failures"].append([exc.error_type, str(exc)])
            except Exception as exc:
                out["failures"].append(["not ActorStartError: " + type(exc).__name__, str(exc)])

        with anyio.fail_after(120):
            if at_once:
                async with anyio.create_task_group() as tg:
                    for _ in range(60):
                        tg.start_soon(spawn)
            else:
                while len(out["failures"]) < 2:
                    await spawn()
        out["started"] = len(refs)
        out["answered"] = len({await ref.ask("pid", timeout=30) for ref in refs})
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] == "at-once")
"""


@pytest.fixture
def pids_cgroup() -> Iterator[Path]:
    """A cgroup that allows PIDS_MAX processes and threads, removed once empty."""
    cgroup = PIDS / f"actors-test-{os.getpid()}"
    try:
        cgroup.mkdir()
        (cgroup / "pids.max").write_text(str(PIDS_MAX))
    except OSError as exc:
        pytest.skip(f"no pids cgroup can be made here ({exc}): it takes root and cgroup v1")
    try:
        yield cgroup
    finally:
        # what the script left (its forkserver and tracker) ends with it: wait for that
        deadline = time.monotonic() + 10
        while (cgroup / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.05)  # polling other processes' ends
        cgroup.rmdir()


def _spawn_until_refused(cgroup: Path, how: str, tmp_path: Path) -> dict[str, Any]:
    def enter_the_cgroup() -> None:
        (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    # a script file: a forkserver started afresh when the copy ends runs it again in each
    # actor process, which takes a thread of its own
    script = tmp_path / "spawn_until_refused.py"
    script.write_text(SPAWN_UNTIL_REFUSED)
    done = subprocess.run(
        [sys.executable, str(script), how],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=enter_the_cgroup,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return out


@pytest.mark.parametrize("how", ["one-by-one", "at-once"])
def test_the_limit_on_processes_fails_the_spawns_past_it_clearly_and_the_rest_run_on(
    pids_cgroup: Path, how: str, tmp_path: Path
) -> None:
    out = _spawn_until_refused(pids_cgroup, how, tmp_path)
    assert out["started"] >= 5
    assert out["answered"] == out["started"]
    failures = out["failures"]
    assert failures
    # never an error from inside multiprocessing: each names the limit and what to do
    for kind, text in failures:
        assert kind in ("ProcessLimitReached", "RuntimeError"), failures
        assert "limit on processes and threads" in text, failures
        assert "stop actors you no longer need" in text, failures


def _kill_the_forkserver_mid_start(monkeypatch: pytest.MonkeyPatch, times: int) -> None:
    """Kill the forkserver in the next ``times`` starts: stopped before the start connects
    to it, it takes the request and never answers it; killed, it ends the start's stream."""
    import multiprocessing.forkserver

    server = multiprocessing.forkserver._forkserver  # type: ignore[attr-defined]
    connect = multiprocessing.forkserver.connect_to_new_process
    left = [times]

    def connect_then_kill(fds: Any) -> Any:
        if left[0] <= 0:
            return connect(fds)
        left[0] -= 1
        server.ensure_running()  # the one this start will connect to
        os.kill(server._forkserver_pid, signal.SIGSTOP)
        answer = connect(fds)
        os.kill(server._forkserver_pid, signal.SIGKILL)
        return answer

    # the module's name for the method is what a start calls
    monkeypatch.setattr(multiprocessing.forkserver, "connect_to_new_process", connect_then_kill)


async def test_a_start_whose_forkserver_is_killed_mid_hand_off_is_made_again_from_a_new_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import multiprocessing.forkserver

    from tests.helpers import Echo

    async with Runtime(log_dir=tmp_path) as rt:
        first = await rt.spawn(Echo, name="first")
        assert await first.ask("hi") == "hi"
        forkserver = multiprocessing.forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
        _kill_the_forkserver_mid_start(monkeypatch, 1)
        late = await rt.spawn(Echo, name="late")
        assert await late.ask("again") == "again"
        assert await first.ask("still") == "still"
        assert multiprocessing.forkserver._forkserver._forkserver_pid != forkserver  # type: ignore[attr-defined]
    assert rt.report.stopped == ["late", "first"]


async def test_a_start_whose_forkserver_ends_mid_hand_off_twice_fails_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:

    from actors import ActorStartError
    from tests.helpers import Echo

    async with Runtime(log_dir=tmp_path) as rt:
        first = await rt.spawn(Echo, name="first")
        _kill_the_forkserver_mid_start(monkeypatch, 2)
        with pytest.raises(ActorStartError, match="ForkserverEnded.*twice.*spawn again"):
            await rt.spawn(Echo, name="late")
        assert await first.ask("still") == "still"
        monkeypatch.undo()
        again = await rt.spawn(Echo, name="again")  # from a third forkserver
        assert await again.ask("hi") == "hi"


async def test_a_restart_whose_forkserver_is_killed_mid_hand_off_is_made_from_a_new_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.helpers import Crashy

    async with Runtime(log_dir=tmp_path) as rt:
        ref = await rt.spawn(Crashy, name="crashy")
        await ref.ask("inc")
        assert await ref.ask("get") == 1
        _kill_the_forkserver_mid_start(monkeypatch, 1)
        async with rt.probe() as probe:
            await ref.tell("exit")  # os._exit(3) in its handler
            await probe.expect("actor.restarted", actor="crashy", timeout=30)
        assert await ref.ask("get") == 0  # a new incarnation answers
    assert rt.report.restarts == {"crashy": 1}


def _stop_the_forkserver() -> int:
    """SIGSTOP the forkserver in use: it takes the next start's request and never answers."""
    import multiprocessing.forkserver

    pid: int = multiprocessing.forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    os.kill(pid, signal.SIGSTOP)
    return pid


def _is_gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie not reaped yet counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def test_a_start_whose_forkserver_does_not_answer_fails_within_start_timeout(
    tmp_path: Path,
) -> None:
    import anyio

    from actors import ActorStartError
    from tests.helpers import Echo

    async with Runtime(log_dir=tmp_path, start_timeout=3) as rt:
        first = await rt.spawn(Echo, name="first")
        stuck = _stop_the_forkserver()
        with anyio.fail_after(30), pytest.raises(ActorStartError) as caught:
            await rt.spawn(Echo, name="late")
        assert caught.value.error_type == "ForkserverUnresponsive"
        assert "within start_timeout=3 s" in str(caught.value)
        assert "raise start_timeout" in str(caught.value)
        assert _is_gone(stuck)
        assert await first.ask("still") == "still"
        again = await rt.spawn(Echo, name="again")  # from a new forkserver
        assert await again.ask("hi") == "hi"
    assert rt.report.stopped == ["again", "first"]


async def test_a_start_cancelled_while_its_forkserver_does_not_answer_ends_at_once(
    tmp_path: Path,
) -> None:
    import anyio

    from tests.helpers import Echo

    async with Runtime(log_dir=tmp_path) as rt:  # start_timeout: the default 30 s
        first = await rt.spawn(Echo, name="first")
        stuck = _stop_the_forkserver()
        began = time.monotonic()
        with anyio.move_on_after(0.5) as scope:
            await rt.spawn(Echo, name="late")
        assert scope.cancelled_caught
        # the cancellation waited out the grace for the hand-off, not the start timeout
        assert time.monotonic() - began < 10
        assert _is_gone(stuck)
        assert await first.ask("still") == "still"
        again = await rt.spawn(Echo, name="again")
        assert await again.ask("hi") == "hi"
    assert rt.report.stopped == ["again", "first"]
