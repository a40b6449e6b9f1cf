"""The run's private directory: socket files live here, mode 0700, swept when stale."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import stat
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunDirectory", "peer_credentials", "process_start_time"]

_PEERCRED = struct.Struct("3i")
# sun_path holds 108 bytes; keep room for "/<actor_id>.sock"
_MAX_BASE = 80


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


def _base_dir() -> Path:
    candidates = []
    if runtime_dir := os.environ.get("XDG_RUNTIME_DIR"):
        candidates.append(Path(runtime_dir) / "actors")
    candidates.append(Path(tempfile.gettempdir()) / f"actors-{os.getuid()}")
    candidates.append(Path("/tmp") / f"actors-{os.getuid()}")
    for base in candidates:
        if len(str(base)) <= _MAX_BASE - 30:
            return base
    raise OSError(
        "no short enough directory for actor sockets; set TMPDIR to a short path such as /tmp"
    )


def _ensure_private_dir(path: Path) -> None:
    """Create ``path`` with mode 0700, or check that an existing one is ours and private."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise PermissionError(
            f"{path} exists but is not a directory owned by uid {os.getuid()}; remove it "
            "(someone else may be trying to intercept actor sockets)"
        )
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


@dataclass
class RunDirectory:
    """A private directory for one run; removed by ``remove`` or by a later sweep."""

    path: Path
    run_id: str

    @classmethod
    def create(cls) -> tuple[RunDirectory, list[str]]:
        """Make a fresh run directory; return it and the stale runs it swept."""
        base = _base_dir()
        base.parent.mkdir(parents=True, exist_ok=True)
        _ensure_private_dir(base)
        swept = cls.sweep_stale(base)
        run_id = f"{os.getpid()}-{secrets.token_hex(3)}"
        path = base / f"run-{run_id}"
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
                # half-created or foreign: only sweep it once it is old enough
                alive = _younger_than(entry, 60.0)
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
        """Delete the directory and every socket file left in it."""
        shutil.rmtree(self.path, ignore_errors=True)


def _younger_than(path: Path, seconds: float) -> bool:
    import time

    try:
        return time.time() - path.stat().st_mtime < seconds
    except OSError:
        return False
