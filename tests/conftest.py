"""Shared fixtures: asyncio only, and a leak check around every test."""

from __future__ import annotations

import contextlib
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from runtime.shm.segments import run_of_segment
from runtime.wire.rundir import _base_dir
from tests.helpers import running

LEAK_GRACE = 5.0
#: how long an unnamed /dev/shm entry may take to go away before it counts as leaked
TRANSIENT = 1.0
#: where ``private_runs`` makes its bases: short, for socket paths
PRIVATE_ROOT, PRIVATE_PREFIX = "/tmp", "actors-test-"


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


def _run_entries() -> set[Path]:
    base = _base_dir()
    if not base.exists():
        return set()
    entries: set[Path] = set()
    for run in base.glob("run-*"):
        entries.add(run)
        with contextlib.suppress(FileNotFoundError):  # removed meanwhile by its runtime
            entries |= set(run.rglob("*"))
    return entries


# A demo, a benchmark, a script or another test session of the same user may run beside
# this one, and its runs appear here too. Run directories and our segments are named after
# the run, whose id starts with the pid of the process that made it (``run-<pid>-...``,
# ``actors_<pid>-...``): those of a live process outside this test process's tree are its
# own. Other entries of /dev/shm (the named semaphores of multiprocessing) are someone
# else's while such a process maps them. What no live process holds counts as leaked.


def _run_of(name: str) -> str | None:
    """The run id in the name of a run directory or of one of our segments, else None."""
    return name.removeprefix("run-") if name.startswith("run-") else run_of_segment(name)


def _foreign(name: str, ours: set[int]) -> bool:
    """Whether ``name`` (a run directory, or a segment of ours) belongs to a running
    process that is neither this test process nor one of its children."""
    run = _run_of(name)
    pid = run.split("-", 1)[0] if run is not None else ""
    if not pid.isdigit() or int(pid) in ours:
        return False
    with contextlib.suppress(psutil.NoSuchProcess):
        return bool(running([psutil.Process(int(pid))]))
    return False


def _mapped_by_others(names: set[str], ours: set[int]) -> set[str]:
    """The entries of /dev/shm among ``names`` that a process outside ``ours`` maps."""
    held: set[str] = set()
    for pid in psutil.pids():
        if pid in ours:
            continue
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        held |= {name for name in names if f"/dev/shm/{name}" in maps}
    return held


def others(new_runs: set[Path], new_shm: set[str]) -> tuple[set[Path], set[str]]:
    """Of the run entries and /dev/shm entries new since a test began, those of others."""
    me = psutil.Process()
    ours = {me.pid} | {p.pid for p in me.children(recursive=True)}
    base = _base_dir()
    runs = {p for p in new_runs if _foreign(p.relative_to(base).parts[0], ours)}
    shm = {name for name in new_shm if _foreign(name, ours)}
    # a killed run of another session's private_runs test, before that test sweeps it
    shm |= {name for name in new_shm - shm if _in_a_private_base(name)}
    # what another user made is never this suite's (it may not be able to read their maps)
    shm |= {name for name in new_shm if _owner(f"/dev/shm/{name}") not in (None, os.getuid())}
    unnamed = {name for name in new_shm - shm if run_of_segment(name) is None}
    if unnamed:
        shm |= _mapped_by_others(unnamed, ours)
        shm |= _transient(unnamed - shm)
    return runs, shm


def _owner(path: str) -> int | None:
    """The uid owning ``path``, or None if it is gone."""
    try:
        return os.stat(path).st_uid
    except OSError:
        return None


def _in_a_private_base(segment: str) -> bool:
    """Whether ``segment``'s run has its directory in a ``private_runs`` base (this test's
    own base is removed before the leak check looks: any such base is another test's)."""
    run = run_of_segment(segment)
    return run is not None and any(Path(PRIVATE_ROOT).glob(f"{PRIVATE_PREFIX}*/actors/run-{run}"))


def _transient(names: set[str]) -> set[str]:
    """Those of ``names`` that go away within ``TRANSIENT``: made or being removed by a
    process outside this test (multiprocessing names a semaphore before it maps it, and its
    resource tracker unlinks it after its owner exited); a leak stays."""
    deadline = time.monotonic() + TRANSIENT
    left = set(names)
    while left and time.monotonic() < deadline:
        time.sleep(0.01)  # polling other processes' doing; nothing here can be waited on
        left = {name for name in left if os.path.exists(f"/dev/shm/{name}")}
    return names - left


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
    alive = running(alive)
    for p in alive:
        p.kill()
    assert not alive, f"test leaked processes: {[(p.pid, p.cmdline()) for p in alive]}"
    new_runs = _run_entries() - before_runs
    new_shm = set(os.listdir("/dev/shm")) - before_shm
    if new_runs or new_shm:
        their_runs, their_shm = others(new_runs, new_shm)
        new_runs -= their_runs
        new_shm -= their_shm
    assert not new_runs, f"test leaked run directories or socket files: {sorted(new_runs)}"
    assert not new_shm, f"test leaked shared memory segments: {sorted(new_shm)}"


@pytest.fixture
def private_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A base of run directories for this test alone (``$XDG_RUNTIME_DIR/actors``).

    For tests that kill a runtime and check what the next one sweeps: a runtime outside
    the test (a demo, a benchmark, another session) that starts meanwhile does not see the
    dead run's directory, so it does not sweep it first. Checked for leftovers here, since
    the leak check around every test looks at the usual base.
    """
    root = Path(tempfile.mkdtemp(prefix=PRIVATE_PREFIX, dir=PRIVATE_ROOT))  # short paths
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(root))
    assert _base_dir() == root / "actors"
    yield root / "actors"
    left = sorted((root / "actors").glob("run-*"))
    shutil.rmtree(root, ignore_errors=True)
    assert not left, f"test leaked run directories: {left}"
