"""Shared fixtures: asyncio only, and a leak check around every test."""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import shutil
import socket
import subprocess
import sys
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
    base = _base_dir()
    if base.parent == Path("/dev/shm"):  # the run directories' base, made once and kept
        new_shm.discard(base.name)
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


# -- the Ray backend ------------------------------------------------------------------------
# One Ray head serves the whole session: a fresh cluster costs seconds. It is started with
# `ray start` (so its processes are not this test process's children, which the leak check
# counts) and stopped by the pids it started, never `ray stop`, which would also stop any
# other Ray cluster of the user's.

RAY_TEMP_PREFIX = "/tmp/ray-t-"  # short: Ray's socket paths live under it
# Ray 2.60 turns on token authentication for a cluster that ray.init() starts once a token
# file exists in ~/.ray, and then a driver joining a cluster started without one is refused:
# every cluster and driver of the suite (demos started by tests too) agree on no tokens.
# They listen on this machine only, for the suite's own processes.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
#: how long a killed incarnation's Ray actor and worker may take to be reported gone
RAY_LEAK_GRACE = 10.0


#: the processes of the session's Ray head, whose descendants host the tests' actors
_SESSION_CLUSTER: list[psutil.Process] = []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """The address of a Ray head started for this session, joined by this process."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install -e '.[test]' installs it)")
    import ray

    temp = tempfile.mkdtemp(prefix=RAY_TEMP_PREFIX)
    port = _free_port()
    ray_bin = str(Path(sys.executable).with_name("ray"))
    command = [
        ray_bin,
        "start",
        "--head",
        f"--port={port}",
        f"--temp-dir={temp}",
        "--num-cpus=2",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    started: list[psutil.Process] = []
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=180)
        started = [p for p in psutil.process_iter(["cmdline"]) if _of_cluster(p, temp)]
        _SESSION_CLUSTER[:] = started
        address = f"127.0.0.1:{port}"
        ray.init(address=address, log_to_driver=False, configure_logging=False)
        yield address
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        _stop_cluster(started, temp, port)
        shutil.rmtree(temp, ignore_errors=True)


def _of_cluster(proc: psutil.Process, temp: str, port: int | None = None) -> bool:
    """Whether ``proc`` belongs to the cluster in ``temp``: by its temp dir, or (the Ray
    client server, started detached and without it) by the head's address."""
    with contextlib.suppress(psutil.Error):
        return any(
            temp in part
            or (port is not None and part.startswith("--address=") and part.endswith(f":{port}"))
            for part in proc.cmdline()
        )
    return False


def _stop_cluster(started: list[psutil.Process], temp: str, port: int) -> None:
    """Stop the processes the session's `ray start` made, and whatever they started."""
    procs = {p.pid: p for p in started}
    for p in started:
        with contextlib.suppress(psutil.Error):
            procs.update({c.pid: c for c in p.children(recursive=True)})
    procs.update({p.pid: p for p in psutil.process_iter(["cmdline"]) if _of_cluster(p, temp, port)})
    for p in procs.values():
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _gone, alive = psutil.wait_procs(list(procs.values()), timeout=5)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=5)


def local_only_reason(node: pytest.Item) -> str | None:
    marker = node.get_closest_marker("local_only")
    if marker is None:
        return None
    return str(marker.args[0]) if marker.args else "local processes only"


@pytest.fixture(params=["local", "ray"])
def backend(request: pytest.FixtureRequest) -> str:
    """Run the test on each backend: ``Runtime(..., backend=backend)``.

    On Ray, a test marked ``@pytest.mark.local_only("why")`` is skipped with its reason.
    """
    if request.param == "ray":
        reason = local_only_reason(request.node)
        if reason is not None:
            pytest.skip(f"local backend only: {reason}")
        request.getfixturevalue("ray_address")
    return str(request.param)


def _ray_leftovers() -> tuple[list[str], list[int]]:
    """Named actors of runs (namespace ``actors-*``) still alive, and the session cluster's
    worker processes still hosting one (other clusters on the machine are not ours)."""
    import ray

    if not ray.is_initialized():
        return [], []
    actors = [
        f"{a['namespace']}/{a['name']}"
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"].startswith("actors-")
    ]
    workers = []
    for root in _SESSION_CLUSTER:
        with contextlib.suppress(psutil.Error):
            for p in root.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if any(part.startswith("ray::IncarnationHost") for part in p.cmdline()):
                        workers.append(p.pid)
    return actors, workers


@pytest.fixture(autouse=True)
def no_ray_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """On Ray, fail the test if a run's actor or its worker process is left behind."""
    uses_ray = "backend" in request.fixturenames and "ray" in request.node.name
    uses_ray = uses_ray or "ray_address" in request.fixturenames
    yield
    if not uses_ray:
        return
    deadline = time.monotonic() + RAY_LEAK_GRACE
    while True:
        actors, workers = _ray_leftovers()
        if not (actors or workers) or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # Ray reports a killed actor dead a moment later: nothing to wait on
    assert not actors, f"test left Ray actors alive: {actors}"
    assert not workers, f"test left Ray worker processes hosting actors: {workers}"
    # what actors on other machines logged there, before the driver gathered it
    left = Path(tempfile.gettempdir()) / f"actors-ray-logs-{os.getuid()}"
    runs = sorted(p.name for p in left.iterdir()) if left.is_dir() else []
    assert not runs, f"test left Ray actors' log files on a machine, for runs {runs}"
