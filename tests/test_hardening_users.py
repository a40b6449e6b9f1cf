"""Another user on the same machine: squatted segment names, log roots made or redirected
by someone else, log rotation of live runs, and multiprocessing's socket of a killed run.

The other user's part is played with real uids: as root, files are made and handed over
with ``chown``, and a run that must not be root runs as ``actors-test-other`` (created if
missing). Without root these tests are skipped.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from actors import UnsafeDirectoryError
from runtime import Runtime
from runtime.observe.logging import _KEEP_RUN_LOGS, prune_run_logs
from runtime.shm.segments import create_segment, segment_name, unlink_segment
from tests.helpers import Echo, read_events

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
SHM = Path("/dev/shm")
OTHER = "actors-test-other"
#: the attacker's files belong to this uid (``nobody``): neither root nor the victim
ATTACKER = 65534


def _other_user() -> pwd.struct_passwd:
    """The second unprivileged user, created if missing; skips the test without root."""
    if os.getuid() != 0:
        pytest.skip("needs root, to make files owned by another user and to run as one")
    try:
        return pwd.getpwnam(OTHER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", OTHER], check=True)
        return pwd.getpwnam(OTHER)


@pytest.fixture
def shared_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh world-writable sticky ``$TMPDIR`` (as /tmp is) for this test's runtimes.

    The runtime's defaults (run directory base, log root) are made in it; no
    ``$XDG_RUNTIME_DIR`` or ``$ACTORS_LOG_DIR`` points elsewhere.
    """
    # this process's multiprocessing directory (the forkserver's socket) is made before
    # $TMPDIR moves: it must outlive this test's temporary directory
    multiprocessing.util.get_temp_dir()
    path = Path(tempfile.mkdtemp(prefix="actors-test-users-", dir="/tmp"))  # short paths
    path.chmod(0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("ACTORS_LOG_DIR", raising=False)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# -- squatted segment names --------------------------------------------------------------


def _squat(name: str) -> Path:
    """Make ``/dev/shm/<name>`` first, as the attacker: owned by them, writable by all."""
    path = SHM / name
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666)
    try:
        os.fchown(fd, ATTACKER, ATTACKER)
        os.fchmod(fd, 0o666)
    finally:
        os.close(fd)
    return path


def test_a_segment_name_taken_by_another_user_is_skipped_for_a_new_random_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _other_user()
    stem = segment_name(f"{os.getpid()}-abcdef", "a1")
    taken = _squat(f"{stem}.{'0' * 16}")
    name = ""
    try:
        # the first random part drawn is the squatted one: creation must move on to another
        draws = iter(["0" * 16, "1" * 16])
        monkeypatch.setattr("runtime.shm.segments._random_hex", lambda nbytes: next(draws))
        name, mapping = create_segment(stem, 4096)
        mapping.close()
        assert name == f"{stem}.{'1' * 16}"
        assert os.stat(SHM / name).st_uid == os.getuid()
        assert os.stat(taken).st_uid == ATTACKER  # theirs, untouched
    finally:
        taken.unlink()
        if name:
            unlink_segment(name)


# Run as the other user, not root: root may unlink anything in /dev/shm, a user may not
# unlink another user's file there (sticky directory). The interpreter lives under /root,
# so the process keeps one capability, to read files (not to remove others' files).
_VICTIM = """
import json, sys
import anyio
import numpy as np
from runtime import Runtime
from tests.helpers import SharedUser

async def main() -> None:
    async with Runtime() as rt:
        print(json.dumps({"run_id": rt.run_id, "run_dir": str(rt._rundir.path)}), flush=True)
        sys.stdin.readline()  # the other user squats the run's next segment names now
        data = await rt.shared_array((1024,), dtype="float64")
        user = await rt.spawn(SharedUser)
        await user.ask(("fill", data, 2.0))
        big = np.arange(1 << 18, dtype=np.float64)  # 2 MiB: through shared memory
        back = await user.ask(("echo", big))
        echoed = bool((back == big).all())
        print(json.dumps({"sum": float(np.asarray(data).sum()), "echoed": echoed}), flush=True)
    print("shut down", flush=True)

anyio.run(main)
"""


def _squatted_names(run_id: str) -> list[str]:
    """The names the runtime as found gave a run's next segments: arrays ``a<n>``, pool
    segments ``p<box>.<n>`` and one-off message segments ``m<box>_<sender>.<n>`` of the
    script (``a0``, box ``a0.1``) and its first actor (``a1``, box ``a1.1``)."""
    kinds = [f"a{n}" for n in range(1, 17)]
    for n in range(1, 9):
        kinds += [f"pa0.1.{n}", f"pa1.1.{n}", f"ma1.1_a0.{n}", f"ma0.1_a1.{n}"]
    return [segment_name(run_id, kind) for kind in kinds]


def test_segment_names_squatted_by_another_user_neither_stop_a_run_nor_crash_its_shutdown(
    tmp_path: Path,
) -> None:
    victim = _other_user()
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to run the victim as another user")
    log_dir = Path(tempfile.mkdtemp(prefix="actors-test-victim-", dir="/tmp"))
    os.chown(log_dir, victim.pw_uid, victim.pw_gid)
    squatted: list[Path] = []
    started: dict[str, str] = {}
    proc = subprocess.Popen(
        [
            "setpriv",
            f"--reuid={victim.pw_uid}",
            f"--regid={victim.pw_gid}",
            "--clear-groups",
            "--inh-caps=+dac_read_search",
            "--ambient-caps=+dac_read_search",
            sys.executable,
            "-c",
            _VICTIM,
        ],
        cwd=ROOT,
        env={
            "PATH": os.environ["PATH"],
            "ACTORS_LOG_DIR": str(log_dir),
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        started.update(json.loads(proc.stdout.readline()))
        # the run id shows in /dev/shm: the attacker makes the names that follow it
        squatted = [_squat(name) for name in _squatted_names(started["run_id"])]
        out, err = proc.communicate("go\n", timeout=60)
        assert proc.returncode == 0, err
        result, last = out.splitlines()
        assert json.loads(result) == {"sum": 2048.0, "echoed": True}
        assert last == "shut down"
        assert not Path(started["run_dir"]).exists()  # shutdown finished its cleanup
        assert _segments_of_user(started["run_id"], victim.pw_uid) == []
        assert all(p.stat().st_uid == ATTACKER for p in squatted)  # left alone
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for path in squatted:
            path.unlink(missing_ok=True)
        shutil.rmtree(log_dir, ignore_errors=True)
        if started:  # what a failed run left
            shutil.rmtree(started["run_dir"], ignore_errors=True)
            for name in _segments_of_user(started["run_id"], victim.pw_uid):
                (SHM / name).unlink(missing_ok=True)


def _segments_of_user(run_id: str, uid: int) -> list[str]:
    """The run's segments in /dev/shm that ``uid`` owns."""
    found = []
    for name in os.listdir(SHM):
        if name.startswith(segment_name(run_id, "")):
            with contextlib.suppress(FileNotFoundError):
                if os.stat(SHM / name).st_uid == uid:
                    found.append(name)
    return found


# -- the log root ------------------------------------------------------------------------


async def test_a_log_root_made_by_another_user_is_refused_naming_the_directory_to_use(
    shared_tmp: Path,
) -> None:
    other = _other_user()
    root = shared_tmp / f"actors-logs-{os.getuid()}"
    root.mkdir()
    os.chown(root, other.pw_uid, other.pw_gid)
    root.chmod(0o777)  # as its maker left it: open to everyone, root's logs readable
    with pytest.raises(UnsafeDirectoryError) as caught:
        async with Runtime():
            pass
    assert caught.value.path == str(root)
    assert f"uid {other.pw_uid}" in str(caught.value)
    assert "ACTORS_LOG_DIR=" in str(caught.value)  # what to use instead
    assert list(root.iterdir()) == []  # nothing was written there


async def test_a_log_root_that_is_another_users_symlink_is_refused_and_nothing_behind_it_goes(
    shared_tmp: Path,
) -> None:
    other = _other_user()
    target = shared_tmp / "roots-own"
    target.mkdir(mode=0o700)
    for n in range(25):
        (target / f"keep-{n}").mkdir()
        (target / f"keep-{n}" / "data").write_text("root's")
        os.utime(target / f"keep-{n}", (0, 0))  # old, as rotation's victims would be
    link = shared_tmp / f"actors-logs-{os.getuid()}"
    link.symlink_to(target)
    os.lchown(link, other.pw_uid, other.pw_gid)
    with pytest.raises(UnsafeDirectoryError, match="is a symlink"):
        async with Runtime():
            pass
    assert sorted(p.name for p in target.iterdir()) == sorted(f"keep-{n}" for n in range(25))


async def test_a_run_directory_base_made_by_another_user_is_refused_naming_the_directory_to_use(
    shared_tmp: Path,
) -> None:
    other = _other_user()
    base = shared_tmp / f"actors-{os.getuid()}"
    base.mkdir(mode=0o700)
    os.chown(base, other.pw_uid, other.pw_gid)
    with pytest.raises(UnsafeDirectoryError) as caught:
        async with Runtime():
            pass
    assert caught.value.path == str(base)
    assert "XDG_RUNTIME_DIR=" in str(caught.value) or "TMPDIR" in str(caught.value)


async def test_log_files_are_readable_by_their_user_alone(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        echo = await rt.spawn(Echo)
        assert await echo.ask("hello") == "hello"
    logs = sorted(tmp_path.glob("*.jsonl"))
    assert len(logs) == 2  # the script's and the actor's
    assert {stat.S_IMODE(p.stat().st_mode) for p in logs} == {0o600}


# -- rotation ----------------------------------------------------------------------------


async def test_log_rotation_removes_finished_runs_and_never_a_live_ones(
    tmp_path: Path, private_runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "logs"
    monkeypatch.setenv("ACTORS_LOG_DIR", str(root))
    held = subprocess.Popen(
        [sys.executable, "-m", "tests.scripts.hold_runtime"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert held.stdout is not None
        info = json.loads(held.stdout.readline())
        held_logs = root / Path(info["run_dir"]).name.removeprefix("run-")
        files = sorted(p.name for p in held_logs.iterdir())
        assert len([f for f in files if f.endswith(".jsonl")]) == 3  # runtime and 2 actors
        for _ in range(_KEEP_RUN_LOGS):  # short runs, each rotating while it runs
            async with Runtime():
                pass
        assert sorted(p.name for p in held_logs.iterdir()) == files
        # the finished runs still rotate: the oldest went, the live run stayed
        runs = [p for p in root.iterdir() if not p.is_symlink()]
        assert len(runs) == _KEEP_RUN_LOGS
        held.send_signal(signal.SIGTERM)
        _out, err = held.communicate(timeout=30)
        assert held.returncode == 143, err  # a clean stop on SIGTERM
        assert b"Traceback" not in err
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(held.pid, signal.SIGKILL)
        held.wait()
        held.stdout.close()  # type: ignore[union-attr]
    stopped = [e for e in read_events(held_logs) if e["event"] == "runtime.stopped"]
    (stop,) = stopped
    assert stop["reason"] == "sigterm"


# -- multiprocessing's socket ------------------------------------------------------------


def _listener_dir(pid: int) -> Path:
    """The directory of the Unix socket process ``pid`` listens on (a forkserver's)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[6] in inodes and "/listener-" in fields[7]:
            return Path(fields[7]).parent
    raise AssertionError(f"process {pid} listens on no socket file")


async def test_multiprocessings_socket_directory_of_a_killed_runtime_is_swept_by_the_next(
    tmp_path: Path, private_runs: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.scripts.hold_runtime"],
        cwd=ROOT,
        env={**os.environ, "ACTORS_LOG_DIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        start_new_session=True,  # its own process group, so we can kill all of it
    )
    left: Path | None = None
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        left = _listener_dir(info["forkserver"])
        processes = [psutil.Process(pid) for pid in [*info["actors"], info["forkserver"]]]
        os.killpg(proc.pid, signal.SIGKILL)
        # its runtime is left unreaped for now: while its pid is taken, no runtime that
        # starts meanwhile (a demo, another session) sweeps the dead run's leftovers
        _gone, alive = psutil.wait_procs(processes, timeout=10)  # actors leave by themselves
        assert not alive
        assert any(left.glob("listener-*"))  # nobody was left to remove it
        proc.wait(5)
        async with Runtime(log_dir=tmp_path / "next"):
            pass
        assert not left.exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        if left is not None:
            shutil.rmtree(left, ignore_errors=True)


@pytest.mark.timeout(10)
def test_pruning_old_logs_under_a_root_that_is_gone_does_nothing_and_raises_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # it runs beside the run, best effort: a root removed meanwhile must not end the run
    monkeypatch.setenv("ACTORS_LOG_DIR", str(tmp_path / "gone"))
    prune_run_logs()
    assert not (tmp_path / "gone").exists()
