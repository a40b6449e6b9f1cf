"""No segment outlives its run: not after the runtime is killed, nor its whole group."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from runtime import Runtime
from runtime.wire.rundir import RunDirectory
from tests.helpers import read_events, wait_ended

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
SHM = Path("/dev/shm")


def _start(log_dir: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.scripts.hold_shared"],
        cwd=ROOT,
        env={**os.environ, "ACTORS_LOG_DIR": str(log_dir)},
        stdout=subprocess.PIPE,
        start_new_session=True,  # its own process group, so we can kill all of it
    )
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    return proc, info


def _processes(info: dict[str, Any]) -> list[psutil.Process]:
    procs = []
    for pid in [info["pid"], *info["actors"], info["forkserver"]]:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid))
    return procs


def _end(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(5)
    assert proc.stdout is not None
    proc.stdout.close()


async def test_killing_the_runtime_alone_leaves_no_segment(
    tmp_path: Path, private_runs: Path
) -> None:
    proc, info = _start(tmp_path)
    try:
        assert all((SHM / name).exists() for name in info["segments"])
        actors = [psutil.Process(pid) for pid in info["actors"]]
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        _gone, alive = psutil.wait_procs(actors, timeout=5)
        assert not alive
        # the actors saw their runtime die and unlinked the run's memory on their way out
        assert not any((SHM / name).exists() for name in info["segments"])
    finally:
        _end(proc)
    async with Runtime(log_dir=tmp_path / "next"):
        pass  # sweeps the dead run's directory


async def test_after_a_process_group_kill_the_next_runtime_sweeps_only_dead_runs(
    tmp_path: Path, private_runs: Path
) -> None:
    dead, dead_info = _start(tmp_path / "dead")
    live, live_info = _start(tmp_path / "live")
    try:
        for pid in dead_info["actors"]:
            os.killpg(pid, signal.SIGKILL)  # each actor leads a process group of its own
        os.killpg(dead.pid, signal.SIGKILL)  # then the runtime and forkserver: all at once
        # its runtime is left unreaped for now: while its pid is taken, no runtime that
        # starts meanwhile (a demo, a benchmark, another session) sweeps the dead run
        rest = [p for p in _processes(dead_info) if p.pid != dead.pid]
        _gone, alive = psutil.wait_procs(rest, timeout=5)
        assert not alive
        assert not await wait_ended([psutil.Process(dead.pid)], timeout=5)
        # nobody was left to clean up
        assert all((SHM / name).exists() for name in dead_info["segments"])
        dead.wait(5)
        async with Runtime(log_dir=tmp_path / "next"):
            pass
        # swept by this runtime (alone on the machine, nothing else could have) or by one
        # outside the test that started in the instant since the reaping: every runtime
        # sweeps dead runs' segments
        assert not any((SHM / name).exists() for name in dead_info["segments"])
        assert all((SHM / name).exists() for name in live_info["segments"])  # untouched
        assert Path(live_info["run_dir"]).exists()
        recovered = [
            e for e in read_events(tmp_path / "next") if e["event"] == "runtime.stale_run_recovered"
        ]
        assert recovered
        assert Path(dead_info["run_dir"]).name in recovered[0]["runs"]  # its base: only ours
    finally:
        _end(dead)
        _end(live)
    async with Runtime(log_dir=tmp_path / "last"):
        pass  # and the live run, now killed too, is swept in turn
    assert not any((SHM / name).exists() for name in live_info["segments"])


def test_a_run_directory_left_half_removed_is_swept_once_the_process_it_names_is_gone(
    private_runs: Path,
) -> None:
    # the tracker copy, killed with the rest of the run's process group while it removes
    # the run's directory, can leave it without its owner.json
    private_runs.mkdir(parents=True)
    gone = subprocess.Popen(["true"])
    gone.wait(5)
    assert not psutil.pid_exists(gone.pid)
    dead = private_runs / f"run-{gone.pid}-aaaaaa"
    (dead / "locks").mkdir(parents=True)
    # without owner.json too, but their owner may be writing it: kept while young
    starting = private_runs / f"run-{os.getpid()}-bbbbbb"
    foreign = private_runs / "run-nopid"
    starting.mkdir()
    foreign.mkdir()
    try:
        assert RunDirectory.sweep_stale(private_runs) == [dead.name]
        assert not dead.exists()
        assert starting.exists()
        assert foreign.exists()
    finally:
        for entry in (dead, starting, foreign):
            shutil.rmtree(entry, ignore_errors=True)
