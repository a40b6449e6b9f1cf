"""Shared fixtures: asyncio only, and a leak check around every test."""

from __future__ import annotations

import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from runtime._rundir import _base_dir

LEAK_GRACE = 5.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _infrastructure() -> set[int]:
    """Processes shared by all runs of this test process: the forkserver and the tracker."""
    pids = set()
    fs_pid = multiprocessing.forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    rt_pid = multiprocessing.resource_tracker._resource_tracker._pid  # type: ignore[attr-defined]
    for pid in (fs_pid, rt_pid):
        if pid:
            pids.add(pid)
    return pids


def _status(p: psutil.Process) -> str | None:
    try:
        return str(p.status())
    except psutil.NoSuchProcess:
        return None


def _run_entries() -> set[Path]:
    base = _base_dir()
    if not base.exists():
        return set()
    return {p for p in base.glob("run-*/**/*")} | set(base.glob("run-*"))


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail the test if it leaves an actor process, a run directory, a socket or shm behind."""
    me = psutil.Process()
    before_procs = {p.pid for p in me.children(recursive=True)}
    before_runs = _run_entries()
    before_shm = set(os.listdir("/dev/shm"))
    yield
    infra = _infrastructure()
    leaked = [
        p for p in me.children(recursive=True) if p.pid not in before_procs and p.pid not in infra
    ]
    _gone, alive = psutil.wait_procs(leaked, timeout=LEAK_GRACE)
    alive = [p for p in alive if _status(p) not in (psutil.STATUS_ZOMBIE, None)]
    for p in alive:
        p.kill()
    assert not alive, f"test leaked processes: {[(p.pid, p.cmdline()) for p in alive]}"
    new_runs = _run_entries() - before_runs
    assert not new_runs, f"test leaked run directories or socket files: {sorted(new_runs)}"
    new_shm = set(os.listdir("/dev/shm")) - before_shm
    assert not new_shm, f"test leaked shared memory segments: {sorted(new_shm)}"
