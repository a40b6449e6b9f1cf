"""File descriptors: the runtime raises its limit, and running out fails one spawn only."""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import psutil
import pytest

from runtime import Runtime
from tests.helpers import Recorder, read_events

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
#: the limit the script runs under: room for a dozen actors beside the driver's own files
LOW_LIMIT = 72

# Run under soft = hard = LOW_LIMIT, so the runtime cannot raise it: spawn until a spawn
# fails, then check the actors from before, stop one, spawn again, and exit.
SPAWN_UNTIL_FULL = """
import json, multiprocessing.forkserver, os, resource, sys

limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

import anyio
import psutil

from actors import DescriptorLimitError
from runtime import Runtime
from tests.helpers import Recorder


def forkserver() -> int:
    return multiprocessing.forkserver._forkserver._forkserver_pid


async def main() -> None:
    out = {}
    async with Runtime() as rt:
        refs = []
        with anyio.fail_after(120):
            while True:
                try:
                    refs.append(await rt.spawn(Recorder))
                except DescriptorLimitError as exc:
                    out["error"] = str(exc)
                    out["limit"] = exc.limit
                    break
        server = forkserver()
        out["pids"] = [await ref.ask("pid", timeout=10) for ref in refs]
        await rt.stop(refs.pop())
        # asks as a barrier: the driver has closed its connection to the stopped one since
        assert [await ref.ask("pid", timeout=10) for ref in refs] == out["pids"][:-1]
        again = await rt.spawn(Recorder)
        out["again"] = await again.ask("pid", timeout=10)
        out["same_forkserver"] = forkserver() == server and psutil.pid_exists(server)
        out["forkserver"] = server
        out["run_dir"] = str(rt._rundir.path)
    out["restarts"] = sum(rt.report.restarts.values())
    out["killed"] = rt.report.killed
    out["escalated"] = rt.report.escalated
    print(json.dumps(out), flush=True)


anyio.run(main)
"""


@pytest.fixture
def soft_limit_below_hard() -> Iterator[tuple[int, int]]:
    """This process's soft descriptor limit lowered below its hard one, then restored."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = len(os.listdir("/proc/self/fd")) + 256
    if hard != resource.RLIM_INFINITY and lowered >= hard:
        pytest.skip(f"the hard descriptor limit ({hard}) leaves no room below it")
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        yield lowered, hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_runtime_start_raises_the_soft_descriptor_limit_to_the_hard_one_and_logs_it(
    soft_limit_below_hard: tuple[int, int], tmp_path: Path
) -> None:
    lowered, hard = soft_limit_below_hard
    async with Runtime(log_dir=tmp_path):
        raised = resource.getrlimit(resource.RLIMIT_NOFILE)
    # an "unlimited" hard limit stops at a sane maximum
    assert raised == (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard)
    [event] = [e for e in read_events(tmp_path) if e["event"] == "runtime.fd_limit_raised"]
    assert (event["before"], event["after"]) == (lowered, raised[0])


async def test_running_out_of_descriptors_fails_the_spawn_clearly_and_every_actor_runs_on() -> None:
    with anyio.fail_after(180):
        done = await anyio.run_process(
            [sys.executable, "-c", SPAWN_UNTIL_FULL, str(LOW_LIMIT)],
            cwd=ROOT,
            check=False,
        )
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, stderr
    out = json.loads(done.stdout.decode().strip().splitlines()[-1])
    # the clear error, naming the limit and what to do
    assert out["limit"] == LOW_LIMIT
    assert f"all {LOW_LIMIT} file descriptors" in out["error"]
    assert "ulimit -n" in out["error"]
    # it did not stop at the first few actors: the driver holds few descriptors per actor
    assert len(out["pids"]) >= 8
    # the forkserver survived the failed hand-off; no actor died, restarted or was killed
    assert out["same_forkserver"]
    assert out["restarts"] == 0
    assert out["killed"] == []
    assert out["escalated"] is None
    assert "Traceback" not in stderr
    # nothing left behind: every actor, the forkserver, the run directory
    procs = []
    for pid in [*out["pids"], out["again"], out["forkserver"]]:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    _gone, alive = psutil.wait_procs(procs, timeout=5)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not Path(out["run_dir"]).exists()


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def _accounts_mapped() -> int:
    """How many actors' accounts this process maps (the watchdog's readers)."""
    with open("/proc/self/maps") as maps:
        return sum(1 for line in maps if "/accounts/" in line)


async def test_the_script_s_process_holds_three_descriptors_per_running_actor() -> None:
    # checks every 50 ms: the watchdog reads each actor's account soon after its start
    async with Runtime(heartbeat_interval=0.05) as rt:
        # the first actor brings the forkserver and the runtime's own connections
        first = await rt.spawn(Recorder)
        await first.ask("pid", timeout=10)
        with anyio.fail_after(10):
            while _accounts_mapped() < 1:
                await anyio.sleep(0.01)  # the watchdog's round, in the script's own loop
        before = _open_descriptors()
        refs = [await rt.spawn(Recorder) for _ in range(4)]
        for ref in refs:
            await ref.ask("pid", timeout=10)
        with anyio.fail_after(10):
            while _accounts_mapped() < 1 + len(refs):
                await anyio.sleep(0.01)
        after = _open_descriptors()
    # its control socket, its exit-status pipe from the forkserver, and the connection;
    # the watchdog's view of its account holds none
    assert after - before <= 3 * len(refs)


def test_an_account_reader_sees_what_the_actor_stores_and_holds_no_descriptor(
    tmp_path: Path,
) -> None:
    from runtime.observe.account import (
        HANDLING,
        LOOP_TURNS,
        LOOP_WAITING,
        Account,
        Liveness,
        LivenessReader,
    )

    writers = [Account(tmp_path / f"a{i}") for i in range(20)]
    before = _open_descriptors()
    readers = [LivenessReader(tmp_path / f"a{i}") for i in range(20)]
    assert _open_descriptors() == before
    writers[3].cells[LOOP_TURNS] = 7
    writers[3].cells[HANDLING] = 2
    writers[3].cells[LOOP_WAITING] = 1
    assert readers[3].read() == Liveness(waiting=True, turns=7, handling=2)
    assert readers[4].read() == Liveness(waiting=False, turns=0, handling=0)
    for reader in readers:
        reader.close()
    reader.close()  # twice is fine
    with pytest.raises(ValueError, match="closed"):
        readers[3].read()
    with pytest.raises(FileNotFoundError):
        LivenessReader(tmp_path / "none")


async def test_actors_run_on_when_the_forkserver_is_killed_and_later_spawns_work(
    tmp_path: Path,
) -> None:
    import multiprocessing.forkserver

    from tests.helpers import Echo

    async with Runtime(log_dir=tmp_path) as rt:
        refs = [await rt.spawn(Recorder, name=f"r{i}") for i in range(2)]
        pids = [await ref.ask("pid") for ref in refs]
        forkserver = multiprocessing.forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
        os.kill(forkserver, signal.SIGKILL)
        proc = psutil.Process(forkserver)
        with anyio.fail_after(10):
            while proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                await anyio.sleep(0.01)  # polling another process's end
        for ref, pid in zip(refs, pids, strict=True):
            assert await ref.ask("pid") == pid  # the same incarnations answer
        late = await rt.spawn(Echo, name="late")  # from a new forkserver
        assert await late.ask("hi") == "hi"
    assert sum(rt.report.restarts.values()) == 0


# Report what descriptors 0, 1 and 2 are in the script, an actor and the forkserver.
STDIO_REPORT = """
import json, multiprocessing.forkserver, os, sys

import anyio

from runtime import Runtime
from tests.helpers import Recorder


def stdio(pid: int | str = "self") -> dict[str, str]:
    out = {}
    for fd in (0, 1, 2):
        try:
            out[str(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            out[str(fd)] = "closed"
    return out


async def main(report: str, log_dir: str) -> None:
    async with Runtime(log_dir=log_dir) as rt:
        ref = await rt.spawn(Recorder)
        actor = await ref.ask("pid", timeout=30)
        forkserver = multiprocessing.forkserver._forkserver._forkserver_pid
        seen = {"script": stdio(), "actor": stdio(actor), "forkserver": stdio(forkserver)}
    with open(report, "w") as f:
        json.dump(seen, f)


anyio.run(main, sys.argv[1], sys.argv[2])
"""


def test_a_script_started_with_its_stdio_closed_lends_those_numbers_to_no_socket(
    tmp_path: Path,
) -> None:
    import subprocess

    def close_stdio() -> None:
        for fd in (0, 1, 2):
            os.close(fd)

    report = tmp_path / "stdio.json"
    script = tmp_path / "stdio_report.py"
    script.write_text(STDIO_REPORT)
    done = subprocess.run(
        [sys.executable, str(script), str(report), str(tmp_path / "logs")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
        preexec_fn=close_stdio,  # as `python script.py <&- >&- 2>&-` does
    )
    assert done.returncode == 0
    seen = json.loads(report.read_text())
    for process, fds in seen.items():
        assert fds == {"0": "/dev/null", "1": "/dev/null", "2": "/dev/null"}, (process, fds)
