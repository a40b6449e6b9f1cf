"""The run's private directory: socket files live here, mode 0700, swept when stale.

Its base (``$XDG_RUNTIME_DIR/actors``, else ``/dev/shm/actors-<uid>`` unless ``$TMPDIR`` is
set, else ``$TMPDIR/actors-<uid>``) and the log root are
checked by one function, ``ensure_private_dir``: a directory another user made first, or a
symlink, is refused with an error naming the directory to use instead.

multiprocessing keeps its forkserver's socket in a temporary directory of its own, removed
at exit only: a killed runtime would leave it behind. The runtime names that directory
``pymp-actors-<pid>-<start time>-<random>`` so that a later runtime can tell that its
process is gone and sweep it, as it sweeps run directories.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import multiprocessing.util
import os
import re
import shutil
import socket
import stat
import struct
import tempfile
from pathlib import Path

from actors import UnsafeDirectoryError
from actors._record import record

__all__ = [
    "RunDirectory",
    "ensure_private_dir",
    "multiprocessing_dir",
    "peer_credentials",
    "private_alternative",
    "process_start_time",
    "removed_while_running",
]

_PEERCRED = struct.Struct("3i")
# sun_path holds 108 bytes; keep room for "/<actor_id>.sock"
_MAX_BASE = 80
#: multiprocessing's temporary directory, as the runtime names it: pid and start time
_MP_PREFIX = "pymp-actors-"
_MP_NAME = re.compile(rf"{_MP_PREFIX}([0-9]+)-([0-9]+)-")
# the forkserver's socket is "<that directory>/listener-<8 characters>", within sun_path
_MAX_MP_DIR = 90


def process_start_time(pid: int) -> int | None:
    """Return the kernel start time of ``pid`` (clock ticks), or None if it is gone.

    A pid plus its start time names a process uniquely even after pid reuse.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: split after the last ")"
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[19])


def peer_credentials(sock: socket.socket) -> tuple[int, int]:
    """Return ``(pid, uid)`` of the process at the other end of a Unix socket."""
    pid, uid, _gid = _PEERCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    )
    return pid, uid


#: where shared memory lives: memory, like ``$XDG_RUNTIME_DIR`` in a login session
_SHM = Path("/dev/shm")


def _base_dir() -> Path:
    candidates = []
    if runtime_dir := os.environ.get("XDG_RUNTIME_DIR"):
        candidates.append(Path(runtime_dir) / "actors")
    temp = Path(tempfile.gettempdir())
    if temp == Path("/tmp") and _SHM.is_dir() and os.access(_SHM, os.W_OK | os.X_OK):
        # no runtime dir, and no $TMPDIR of the user's choosing: memory rather than a disk
        # file system, where each actor's socket and account file cost an inode's writes
        candidates.append(_SHM / f"actors-{os.getuid()}")
    candidates.append(temp / f"actors-{os.getuid()}")
    candidates.append(Path("/tmp") / f"actors-{os.getuid()}")
    for base in candidates:
        if len(str(base)) <= _MAX_BASE - 30:
            return base
    raise OSError(
        "no short enough directory for actor sockets; set TMPDIR to a short path such as /tmp"
    )


def private_alternative() -> Path:
    """A directory of this user's alone to suggest when a shared one is unsafe.

    ``/run/user/<uid>`` (what ``$XDG_RUNTIME_DIR`` names in a login session) if it is
    there and ours, else ``~/.cache``.
    """
    runtime_dir = Path(f"/run/user/{os.getuid()}")
    with contextlib.suppress(OSError):
        st = os.lstat(runtime_dir)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid():
            return runtime_dir
    return Path.home() / ".cache"


def ensure_private_dir(path: Path, remedy: str) -> None:
    """Create ``path`` with mode 0700, or check that an existing one is ours and private.

    The check is made on the directory itself, never through a symlink: it must be a
    directory this user owns that no one else can write to (one only readable by others
    is made 0700). The run directories' base and the log root are checked here.

    Raises:
        UnsafeDirectoryError: any check fails; ``remedy`` says what to do instead.
    """
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    try:
        # O_NOFOLLOW: a symlink fails to open (ELOOP) rather than leading elsewhere
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        problem = "is a symlink" if os.path.islink(path) else f"cannot be used ({exc.strerror})"
        raise UnsafeDirectoryError(str(path), problem, remedy) from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid():
            raise UnsafeDirectoryError(
                str(path),
                f"belongs to uid {st.st_uid}, not to this user (uid {os.getuid()}): someone "
                "else made it, and could read or replace what is put in it",
                remedy,
            )
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o022:
            raise UnsafeDirectoryError(
                str(path),
                f"has mode {mode:o}: other users can write to it, so what is in it may be theirs",
                f"remove it, or {remedy}",
            )
        if mode != 0o700:
            os.fchmod(fd, 0o700)  # only readable by others: nothing in it can be theirs
    finally:
        os.close(fd)


def _base_remedy() -> str:
    instead = private_alternative()
    if instead.name != ".cache":
        return f"set XDG_RUNTIME_DIR={instead} so that actor sockets go to {instead / 'actors'}"
    return f"set TMPDIR to a short directory of your own, such as {instead}"


@record(frozen=False)
class RunDirectory:
    """A private directory for one run; removed by ``remove`` or by a later sweep."""

    path: Path
    run_id: str

    @classmethod
    def create(cls) -> tuple[RunDirectory, list[str]]:
        """Make a fresh run directory; return it and the stale runs it swept."""
        base = _base_dir()
        base.parent.mkdir(parents=True, exist_ok=True)
        ensure_private_dir(base, _base_remedy())
        swept = cls.sweep_stale(base) + _sweep_multiprocessing_dirs()
        _name_multiprocessing_dir()
        run_id = f"{os.getpid()}-{os.urandom(3).hex()}"
        path = base / f"run-{run_id}"
        try:
            path.mkdir(mode=0o700)
        except FileNotFoundError:  # the last run of another process removed the base
            ensure_private_dir(base, _base_remedy())
            path.mkdir(mode=0o700)
        (path / "locks").mkdir(mode=0o700)
        (path / "accounts").mkdir(mode=0o700)
        owner = {"pid": os.getpid(), "start_time": process_start_time(os.getpid())}
        (path / "owner.json").write_text(json.dumps(owner))
        return cls(path, run_id), swept

    @staticmethod
    def sweep_stale(base: Path) -> list[str]:
        """Remove run directories whose owning process is gone (e.g. was SIGKILLed).

        A directory whose owner still runs (same pid and start time) is never touched.
        """
        swept = []
        for entry in base.glob("run-*"):
            try:
                owner = json.loads((entry / "owner.json").read_text())
                alive = process_start_time(int(owner["pid"])) == owner["start_time"]
            except (OSError, ValueError, KeyError, TypeError):
                # half-created, or half-removed by a process killed meanwhile (the tracker
                # copy, with the rest of the run's process group): the pid in its name is
                # the owner's; if that one runs, or it names none, sweep it only once old
                alive = _named_owner_may_run(entry) and _younger_than(entry, 60.0)
            if not alive:
                shutil.rmtree(entry, ignore_errors=True)
                swept.append(entry.name)
        return swept

    @staticmethod
    def existing_run_ids() -> set[str]:
        """The ids of the runs that have a directory now (live, or too young to judge)."""
        return {entry.name[len("run-") :] for entry in _base_dir().glob("run-*")}

    def socket_path(self, actor_id: str) -> str:
        """Where actor ``actor_id`` listens."""
        return str(self.path / f"{actor_id}.sock")

    @property
    def lock_dir(self) -> Path:
        """Where the lock files of shared arrays and semaphores live."""
        return self.path / "locks"

    def remove(self) -> None:
        """Delete the directory and every socket file left in it, and the base too if no
        other run is in it (so that nothing of ours stays in /dev/shm)."""
        shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(OSError):  # another run's directory is in it: it stays
            self.path.parent.rmdir()


def removed_while_running(path: str | Path) -> str:
    """Why a run directory may be gone while its runtime runs, and what to do about it."""
    return (
        f"the run directory {path}, where actors are reached by their socket files, was "
        "removed while the runtime ran. systemd-logind removes a user's files in /dev/shm "
        "and $XDG_RUNTIME_DIR once their last session ends (RemoveIPC=yes, its default, "
        "for users that are not system users), and a cleaner of temporary files removes "
        "old ones. Run the script as a system service, or keep the user's session "
        "(`loginctl enable-linger`), or set TMPDIR to a directory nothing cleans; then "
        "start it again"
    )


def multiprocessing_dir() -> str | None:
    """multiprocessing's temporary directory in this process, where the forkserver listens
    (None until one is made)."""
    tempdir: str | None = multiprocessing.current_process()._config.get("tempdir")  # type: ignore[attr-defined]
    return tempdir


def _name_multiprocessing_dir() -> None:
    """Make multiprocessing's temporary directory, named so a later runtime can sweep it.

    Left alone if this process has one already (made by an earlier run, or by the script's
    own use of multiprocessing): the forkserver may be listening in it.
    """
    if multiprocessing_dir() is not None:
        return
    start = process_start_time(os.getpid())
    path = tempfile.mkdtemp(prefix=f"{_MP_PREFIX}{os.getpid()}-{start}-")  # 0700, random
    if len(path) > _MAX_MP_DIR:
        os.rmdir(path)  # too long for a socket path: let multiprocessing choose
        return
    # removed at exit as multiprocessing removes its own; a killed process's is swept
    multiprocessing.util.Finalize(
        None, shutil.rmtree, args=(path,), kwargs={"ignore_errors": True}, exitpriority=-100
    )
    multiprocessing.current_process()._config["tempdir"] = path  # type: ignore[attr-defined]


def _sweep_multiprocessing_dirs() -> list[str]:
    """Remove our ``pymp-actors-*`` directories whose process is gone (e.g. SIGKILLed)."""
    swept = []
    uid = os.getuid()
    for entry in Path(tempfile.gettempdir()).glob(f"{_MP_PREFIX}*"):
        match = _MP_NAME.match(entry.name)
        try:
            st = os.lstat(entry)
        except OSError:
            continue
        if match is None or not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
            continue  # not one of ours: never touched
        pid, start = int(match[1]), int(match[2])
        if process_start_time(pid) == start:
            continue  # its process (and maybe its forkserver) still runs
        shutil.rmtree(entry, ignore_errors=True)
        swept.append(entry.name)
    return swept


def _named_owner_may_run(entry: Path) -> bool:
    """Whether the process a run directory is named after (``run-<pid>-<hex>``) may still
    be running: False only when no process has that pid."""
    pid = entry.name.removeprefix("run-").partition("-")[0]
    return not pid.isdigit() or process_start_time(int(pid)) is not None


def _younger_than(path: Path, seconds: float) -> bool:
    import time

    try:
        return time.time() - path.stat().st_mtime < seconds
    except OSError:
        return False
