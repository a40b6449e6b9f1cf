"""The leak check around every test: another process's live run is not a leak of the test,
and a run that nobody alive holds is."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from runtime import Runtime
from tests.conftest import _run_entries, others

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


async def test_a_run_outside_the_test_is_its_owners_while_it_runs_and_leaked_once_dead(
    tmp_path: Path, private_runs: Path
) -> None:
    before = _run_entries()
    # started by a shell that exits at once: a runtime outside this test process's tree,
    # as a demo or another session's would be (the pipe stays open in it)
    shell = subprocess.Popen(
        ["sh", "-c", f"{sys.executable} -m tests.scripts.hold_shared &"],
        cwd=ROOT,
        env={**os.environ, "ACTORS_LOG_DIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        start_new_session=True,  # its own process group, so we can kill all of it
    )
    assert shell.stdout is not None
    try:
        shell.wait(5)
        info = json.loads(shell.stdout.readline())
        assert info["pid"] not in {p.pid for p in psutil.Process().children(recursive=True)}
        run_dir = Path(info["run_dir"])
        runs = {p for p in _run_entries() - before if p == run_dir or run_dir in p.parents}
        assert run_dir in runs
        assert run_dir / "owner.json" in runs
        segments = set(info["segments"])
        assert others(runs, segments) == (runs, segments)

        os.killpg(shell.pid, signal.SIGKILL)  # its runtime, actors and forkserver
        _gone, alive = psutil.wait_procs([psutil.Process(info["pid"])], timeout=5)
        assert not alive or alive[0].status() == psutil.STATUS_ZOMBIE
        # its directory is left behind and nobody running holds it: a leak, were it ours
        left = {p for p in _run_entries() - before if p == run_dir or run_dir in p.parents}
        assert run_dir in left
        assert others(left, set()) == (set(), set())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
        shell.stdout.close()
    async with Runtime(log_dir=tmp_path / "next"):
        pass  # sweeps the dead run's directory
    assert not run_dir.exists()


def test_shared_memory_made_by_another_user_is_never_counted_as_a_leak() -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to make a /dev/shm entry owned by another user")
    # as multiprocessing names a semaphore: no run id, so only its owner tells whose it is
    entry = Path(f"/dev/shm/sem.mp-test-{os.getpid()}")
    entry.write_bytes(b"\0" * 32)
    try:
        os.chown(entry, 65534, 65534)  # nobody, as another user's process would leave it
        assert others(set(), {entry.name}) == (set(), {entry.name})
        os.chown(entry, os.getuid(), os.getgid())
        assert others(set(), {entry.name}) == (set(), set())  # ours, unmapped, staying: a leak
    finally:
        entry.unlink()
