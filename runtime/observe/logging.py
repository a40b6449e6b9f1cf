"""Structured JSON-lines logs: one file per process, one line per event.

Each process writes its own file in the run's log directory, with one ``write`` per event,
so the last events of a process that is killed are already on disk. The runtime never
touches the global structlog configuration of the script's process; inside actor
processes it also configures structlog globally, so an actor's own
``structlog.get_logger()`` calls land in the actor's file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import itertools
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from .._config import ENV_LOG_DIR
from .._lean import without_rich

with without_rich():
    import structlog
    from structlog.processors import ExceptionRenderer
    from structlog.tracebacks import ExceptionDictTransformer
    from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from ..wire.batching import end_of_step, flush_now
from ..wire.rundir import ensure_private_dir, private_alternative

__all__ = [
    "EVENT_SEQ",
    "EventLog",
    "default_log_root",
    "new_run_log_dir",
    "prune_run_logs",
    "run_is_over",
    "Log",
    "LogConfig",
    "emitter",
    "get_log",
    "open_log",
    "private_file",
    "log_stem",
    "safe_name",
]

#: how many runs' log directories ``prune_run_logs`` keeps under the default root
_KEEP_RUN_LOGS = 20
#: a log directory younger than this whose run has no log file open yet is kept (seconds)
_NEW_RUN_GRACE = 60.0

#: a process's logger, as ``open_log`` makes it
Log = FilteringBoundLogger


class EventLog(Protocol):
    """What code that only logs events needs: a ``Log``, or one that also publishes them."""

    def debug(self, event: str, **fields: Any) -> Any: ...

    def info(self, event: str, **fields: Any) -> Any: ...

    def warning(self, event: str, **fields: Any) -> Any: ...

    def error(self, event: str, **fields: Any) -> Any: ...


class LogConfig:
    """Where and what a process logs; pickled into every actor's spawn arguments."""

    __slots__ = ("log_dir", "node", "run_id", "trace")

    def __init__(self, log_dir: Path, run_id: str, *, trace: bool, node: str = "") -> None:
        self.log_dir = log_dir
        self.run_id = run_id
        #: per-message events (debug level) on or off
        self.trace = trace
        #: the machine ``log_dir`` is on, on a cluster ("": the local backend's only one);
        #: a process elsewhere logs to a directory of its own machine, gathered at the end
        self.node = node

    def __getstate__(self) -> tuple[Path, str, bool, str]:
        return (self.log_dir, self.run_id, self.trace, self.node)

    def __setstate__(self, state: tuple[Path, str, bool, str]) -> None:
        self.log_dir, self.run_id, self.trace, self.node = state

    def elsewhere(self, log_dir: Path) -> LogConfig:
        """The same, for a process on another machine that logs to its own ``log_dir``."""
        return LogConfig(log_dir, self.run_id, trace=self.trace, node=self.node)


def log_stem(name: str, actor_id: str, pid: int) -> str:
    """The file name, without suffix, of an actor process's log and ``.stderr`` files."""
    return f"{safe_name(name)}.{actor_id}.{pid}"


def safe_name(name: str) -> str:
    """Make an actor name usable inside a file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]


#: what a write gets from a full or failing disk: the log drops lines, the process runs on
_DISK_REFUSED = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


class _LogFile(io.FileIO):
    """A process's log file, whose writes never fail the process.

    A disk that refuses a write (full, over quota, failing) drops those lines, and later
    writes are tried as usual: an actor would otherwise crash at every message it logs,
    and restart into the same full disk. A write cut short is taken back, so no line is
    cut in two. With ``warn``, the first drop is said once on stderr.
    """

    def __init__(self, path: Path, *, warn: bool) -> None:
        super().__init__(path, "ab", opener=private_file)
        self._warn = warn

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            try:
                done += super().write(view[done:])
            except OSError as exc:
                if exc.errno not in _DISK_REFUSED:
                    raise
                self._drop(done, exc)
                break
        return len(view)

    def _drop(self, written: int, exc: OSError) -> None:
        """Drop the lines of a write of which the first ``written`` bytes made it."""
        if written:  # taken back: no line is cut in two
            with contextlib.suppress(OSError):
                end = os.lseek(self.fileno(), 0, os.SEEK_END)
                os.ftruncate(self.fileno(), end - written)
        if self._warn:
            self._warn = False
            with contextlib.suppress(Exception):
                sys.stderr.write(
                    f"actors: cannot write the run's log {self.name} ({exc.strerror}): its "
                    "lines are dropped until the disk takes them again, and so are the "
                    "actors'; every actor keeps running\n"
                )


#: one sequence for every event of this process, whichever path wrote it
EVENT_SEQ = itertools.count()


def _add_static(static: dict[str, object]) -> Processor:
    def add(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
        # an event's own keys win: the runtime logs `actor=` for the actor it is about
        for key, value in static.items():
            event.setdefault(key, value)
        event["seq"] = next(EVENT_SEQ)
        return event

    return add


class _Emitter:
    """Writes per-message events (the hot path of tracing) without structlog's pipeline.

    Same line format, same file, same sequence: a JSON object with the event's keys,
    ``event``, ``level``, an ISO ``timestamp``, the process's static keys and ``seq``. The
    timestamp's date and time are formatted once per second.
    """

    __slots__ = ("_date", "_file", "_pending", "_second", "_tail")

    def __init__(self, file: IO[bytes] | None, static: dict[str, object]) -> None:
        self._file = file
        # the process's static keys, serialised once: `,"run_id":...,"pid":...,"seq":`
        self._tail = "," + orjson.dumps(static)[1:-1].decode() + ',"seq":'
        self._second = -1
        self._date = ""
        self._pending: list[bytes] = []

    def stamp(self, now: float = 0.0) -> str:
        """The end of an event line up to its seq number.

        That is the timestamp (of ``now``, or of the current time) and its closing quote,
        then the process's static keys and ``"seq":``.
        """
        if not now:
            now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._date = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        # zfill, not a :06d format spec: it is cheaper, and this runs once per traced event
        return f'{self._date}.{str(int((now - second) * 1_000_000)).zfill(6)}Z"{self._tail}'

    def later(self, event: str, fields: dict[str, Any]) -> None:
        """Queue an event; it is written when the running task next lets the loop run.

        Events of one step of the event loop go out in one system call. A process killed
        in the middle of a step loses that step's queued events, never an earlier one's.
        """
        head = _EVENT_KEYS.get(event)
        if head is None:
            head = _EVENT_KEYS[event] = (
                b',"event":' + orjson.dumps(event) + b',"level":"debug","timestamp":"'
            )
        keys = orjson.dumps(fields)[:-1]
        if keys == b"{":  # no keys of its own: no comma before "event"
            head = head[1:]
        self.queue(b"%b%b%b%d}\n" % (keys, head, self.stamp().encode(), next(EVENT_SEQ)))

    def queue(self, line: bytes) -> None:
        """Queue a whole event line (``_tracing``'s builders) for the end of the step."""
        first = not self._pending
        self._pending.append(line)
        if first:
            end_of_step(self.flush)

    def flush(self) -> None:
        """Write queued events now."""
        if self._pending:
            self.write(b"")

    def write(self, lines: bytes) -> None:
        """Write queued events and ``lines`` (whole event lines), in one system call."""
        flush_now()  # frames the step sent go first (see _batching)
        if self._pending:
            lines = b"".join(self._pending) + lines
            self._pending.clear()
        if self._file is not None and lines:
            self._file.write(lines)


#: the bytes between an event's own keys and its timestamp, per event name
_EVENT_KEYS: dict[str, bytes] = {}

_emit = _Emitter(None, {})


def emitter() -> _Emitter:
    """This process's per-message event writer, to batch lines made in one go."""
    return _emit


def _processors(static: dict[str, object]) -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_static(static),
        # the default transformer puts every frame's local variables in the log
        ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
        structlog.processors.JSONRenderer(serializer=orjson.dumps),
    ]


_log: Log = structlog.wrap_logger(
    structlog.BytesLogger(open(os.devnull, "wb")),  # noqa: SIM115 - lives as long as the process
    processors=_processors({}),
    wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL),
)


def get_log() -> Log:
    """Return this process's runtime logger (a no-op one until ``open_log``)."""
    return _log


def open_log(
    config: LogConfig,
    file_stem: str,
    static: dict[str, object],
    *,
    configure_global: bool,
    warn_when_full: bool = False,
) -> tuple[Log, IO[bytes]]:
    """Open ``<log_dir>/<file_stem>.jsonl`` and make it this process's runtime log.

    Returns the logger and its file, which the caller closes when the process ends. The
    file is mode 0600, and this process holds a shared ``flock`` on it while it is open:
    that is how rotation tells a live run's directory from a finished one. A disk that
    refuses its writes drops lines (``_LogFile``); ``warn_when_full`` says so on stderr,
    once (the script's log does, for the whole run).
    """
    global _log, _emit
    config.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    file = _LogFile(config.log_dir / f"{file_stem}.jsonl", warn=warn_when_full)
    fcntl.flock(file.fileno(), fcntl.LOCK_SH)  # dropped by the kernel however we end
    static = {"run_id": config.run_id, "pid": os.getpid(), **static}
    _emit = _Emitter(file, static)
    level = logging.DEBUG if config.trace else logging.INFO
    wrapper = structlog.make_filtering_bound_logger(level)
    _log = structlog.wrap_logger(
        structlog.BytesLogger(file), processors=_processors(static), wrapper_class=wrapper
    )
    if configure_global:
        structlog.configure(
            processors=_processors(static),
            wrapper_class=wrapper,
            logger_factory=structlog.BytesLoggerFactory(file),
            cache_logger_on_first_use=True,
        )
    return _log, file


def private_file(path: str, flags: int) -> int:
    """An ``open`` opener for a process's own files: mode 0600, never through a symlink."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def default_log_root() -> Path:
    """Where runs keep their logs unless told otherwise.

    ``$ACTORS_LOG_DIR`` if set, else ``$XDG_RUNTIME_DIR/actors-logs`` if that directory
    exists (it is the user's alone), else ``$TMPDIR/actors-logs-<uid>``.
    """
    if env := os.environ.get(ENV_LOG_DIR):
        return Path(env)
    if (runtime_dir := os.environ.get("XDG_RUNTIME_DIR")) and os.path.isdir(runtime_dir):
        return Path(runtime_dir) / "actors-logs"
    return Path(tempfile.gettempdir()) / f"actors-logs-{os.getuid()}"


def _check_root(root: Path) -> None:
    """Create the default log root 0700, or check that it is this user's alone.

    One that ``$ACTORS_LOG_DIR`` names is the user's choice: it is only created if missing.

    Raises:
        UnsafeDirectoryError: the root is another user's, a symlink, or open to others.
    """
    if os.environ.get(ENV_LOG_DIR):
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return
    root.parent.mkdir(parents=True, exist_ok=True)
    instead = private_alternative() / "actors-logs"
    ensure_private_dir(
        root,
        f"set {ENV_LOG_DIR}={instead} (or pass Runtime(log_dir=...)) to keep logs in a "
        "directory of your own",
    )


def run_is_over(path: Path) -> bool:
    """Whether no process of the run logging in ``path`` is alive, provably.

    Each process of a run holds a shared ``flock`` on its log file while it has the file
    open (``open_log``), and the kernel drops it when the process ends, however it ends.
    A directory none of whose log files is locked has no live writer. One with no log
    file yet is over only once it is older than a run takes to open its first one.
    """
    found = False
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                if not entry.name.endswith(".jsonl") or not entry.is_file(follow_symlinks=False):
                    continue
                found = True
                try:
                    fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue  # removed meanwhile
                try:
                    # fails (EWOULDBLOCK) while a live process of the run holds it
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                finally:
                    os.close(fd)
    except OSError:
        return False  # locked, or not checkable: not provably over
    if found:
        return True
    try:
        return time.time() - os.lstat(path).st_mtime > _NEW_RUN_GRACE
    except OSError:
        return False


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:  # removed meanwhile by another runtime's rotation
        return 0.0


def new_run_log_dir(run_id: str) -> Path:
    """Make a directory for a new run's logs under ``default_log_root()``.

    ``prune_run_logs`` removes old runs' directories, apart, as that can take a while.

    Raises:
        UnsafeDirectoryError: the default root is another user's, a symlink, or open to
            others.
    """
    root = default_log_root()
    _check_root(root)
    path = root / run_id
    path.mkdir(mode=0o700)
    latest = root / "latest"
    if latest.is_symlink() or not latest.exists():
        latest.unlink(missing_ok=True)
        latest.symlink_to(path.name)
    return path


def prune_run_logs() -> None:
    """Keep the last few runs' directories under ``default_log_root()``, and every run's
    that is not over (``run_is_over``): only finished runs' are removed, oldest first.

    Blocking: a big run's logs are thousands of files. Best effort: a root that cannot be
    listed (removed meanwhile, say) is left as it is, and the run goes on.
    """
    root = default_log_root()
    try:
        runs = sorted(
            (p for p in root.iterdir() if p.is_dir() and not p.is_symlink()),
            key=_mtime,
        )
    except OSError:
        return
    excess = len(runs) - _KEEP_RUN_LOGS
    for old in runs:
        if excess <= 0:
            break
        if run_is_over(old):
            shutil.rmtree(old, ignore_errors=True)
            excess -= 1
