"""RuntimeConfig: every option of a run, validated once, read from the environment once.

The driver builds it from ``Runtime(...)``'s arguments and the ``ACTORS_*`` variables, and
carries it whole to every actor process, so both sides take their defaults from one place.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from actors import (
    DEFAULT_MAX_RESTARTS,
    DEFAULT_PERIOD,
    InvalidConfigError,
    MissingDependencyError,
)
from actors._checks import seconds

__all__ = [
    "ENV_BACKEND",
    "ENV_BUSY_POLL",
    "ENV_FORKSERVER",
    "ENV_LOG_DIR",
    "ENV_RAY_ADDRESS",
    "ENV_TRACE",
    "ENV_UVLOOP",
    "Backend",
    "Forkserver",
    "RuntimeConfig",
    "beat_interval",
]

#: where actors run: one local process each, or Ray actors on a Ray cluster
Backend = Literal["local", "ray"]
#: what actor processes are forked from: a copy of the script's process when that is safe,
#: else a fresh interpreter ("auto"), or always a fresh interpreter ("fresh")
Forkserver = Literal["auto", "fresh"]

ENV_TRACE = "ACTORS_TRACE"
ENV_BUSY_POLL = "ACTORS_BUSY_POLL"
ENV_UVLOOP = "ACTORS_UVLOOP"
ENV_FORKSERVER = "ACTORS_FORKSERVER"
ENV_BACKEND = "ACTORS_BACKEND"
ENV_RAY_ADDRESS = "ACTORS_RAY_ADDRESS"
#: options that only mean something for local processes: set on Ray, they are refused
#: rather than ignored, so that nobody measures or relies on a setting that does nothing
LOCAL_ONLY_OPTIONS = ("busy_poll", "uvloop", "forkserver", "shm_threshold", "shm_budget")
#: read by ``observe.logging.default_log_root``, the one place log roots are chosen
ENV_LOG_DIR = "ACTORS_LOG_DIR"

#: the most a busy poll may last: longer only burns CPU that a sleeping peer needs
_MAX_BUSY_POLL = 0.01


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeConfig:
    """The options of one run; see ``Runtime`` for what each one means.

    Build one with ``RuntimeConfig.from_options(...)``: unset options (``None``) take
    their environment variable or default there, and every value is checked. It is
    immutable, and pickles: actor processes get the same one.
    """

    log_dir: Path | None = None
    trace: bool = False
    mailbox_size: int = 1000
    stop_timeout: float = 5.0
    start_timeout: float = 30.0
    max_message_size: int = 64 * 1024 * 1024
    shm_threshold: int | None = 1 << 20
    shm_budget: int | None = None
    restart_wait: float = 5.0
    hang_timeout: float | None = 60.0
    heartbeat_interval: float | None = None
    busy_poll: float = 0.0002
    uvloop: bool = False
    forkserver: Forkserver = "auto"
    handle_sigterm: bool = True
    #: the root supervisor's restart intensity: ``max_restarts`` within ``period`` seconds
    max_restarts: int = DEFAULT_MAX_RESTARTS
    period: float = DEFAULT_PERIOD
    backend: Backend = "local"
    #: the Ray cluster to use: None starts a local one, "auto" joins the current one
    address: str | None = None

    def __post_init__(self) -> None:
        if self.backend not in get_args(Backend):
            raise InvalidConfigError(
                f"backend must be one of {', '.join(map(repr, get_args(Backend)))}, "
                f"not {self.backend!r}"
            )
        if self.address is not None and not isinstance(self.address, str):
            raise InvalidConfigError(f"address must be a str or None, not {self.address!r}")
        if self.address is not None and self.backend != "ray":
            raise InvalidConfigError(
                f"address={self.address!r} names a Ray cluster: it needs backend='ray' "
                f"(or {ENV_BACKEND}=ray)"
            )
        if self.backend == "ray" and importlib.util.find_spec("ray") is None:
            raise MissingDependencyError(
                "backend='ray' needs Ray: pip install 'actors-runtime[ray]' (or pip install ray)"
            )
        _count("mailbox_size", self.mailbox_size, minimum=1)
        for what in ("stop_timeout", "start_timeout", "restart_wait"):
            _seconds(what, getattr(self, what))
        if self.heartbeat_interval is not None:
            _seconds("heartbeat_interval", self.heartbeat_interval)
        _seconds("period", self.period)
        _count("max_restarts", self.max_restarts, minimum=0)
        if self.hang_timeout is not None:
            _seconds("hang_timeout", self.hang_timeout)
            if self.heartbeat_interval is not None and not (
                self.hang_timeout > self.heartbeat_interval
            ):
                raise InvalidConfigError(
                    f"hang_timeout ({self.hang_timeout!r} s) must be longer than "
                    f"heartbeat_interval ({self.heartbeat_interval!r} s), or None"
                )
        _count("max_message_size", self.max_message_size, minimum=1)
        if self.shm_threshold is not None:
            _count("shm_threshold", self.shm_threshold, minimum=1)
        if self.shm_budget is not None:
            _count("shm_budget", self.shm_budget, minimum=0)
        busy = self.busy_poll
        if (
            isinstance(busy, bool)
            or not isinstance(busy, (int, float))
            or not 0 <= busy <= _MAX_BUSY_POLL
        ):
            raise InvalidConfigError(
                f"busy_poll must be between 0 and {_MAX_BUSY_POLL} seconds, not {busy!r}"
            )
        for what in ("trace", "uvloop", "handle_sigterm"):
            if not isinstance(getattr(self, what), bool):
                raise InvalidConfigError(
                    f"{what} must be True or False, not {getattr(self, what)!r}"
                )
        if self.forkserver not in get_args(Forkserver):
            raise InvalidConfigError(
                f"forkserver must be one of {', '.join(map(repr, get_args(Forkserver)))}, "
                f"not {self.forkserver!r}"
            )
        if self.uvloop and importlib.util.find_spec("uvloop") is None:
            raise MissingDependencyError(
                f"uvloop was asked for (Runtime(uvloop=True) or {ENV_UVLOOP}=1) but is not "
                "installed: pip install uvloop, or install this package with [speed]"
            )

    @classmethod
    def from_options(
        cls,
        environ: Mapping[str, str] | None = None,
        **options: object,
    ) -> RuntimeConfig:
        """Build a config from ``Runtime``'s keyword arguments and the environment.

        An option given as ``None`` takes its environment variable (``ACTORS_TRACE``,
        ``ACTORS_BUSY_POLL``, ``ACTORS_UVLOOP``, ``ACTORS_FORKSERVER``) if it has one, else
        its default.

        Raises:
            InvalidConfigError: an unknown option, a bad value, or a bad variable.
        """
        env = os.environ if environ is None else environ
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InvalidConfigError(f"unknown runtime option(s) {', '.join(unknown)}")
        given = {k: v for k, v in options.items() if v is not None}
        if options.get("trace") is None and ENV_TRACE in env:
            given["trace"] = _flag(env[ENV_TRACE])
        if options.get("uvloop") is None and ENV_UVLOOP in env:
            given["uvloop"] = _flag(env[ENV_UVLOOP])
        if options.get("forkserver") is None and env.get(ENV_FORKSERVER, "").strip():
            given["forkserver"] = env[ENV_FORKSERVER].strip().lower()
        if options.get("busy_poll") is None and env.get(ENV_BUSY_POLL, "").strip():
            text = env[ENV_BUSY_POLL].strip()
            try:
                given["busy_poll"] = float(text)
            except ValueError:
                raise InvalidConfigError(
                    f"{ENV_BUSY_POLL} must be a number of seconds, not {text!r}"
                ) from None
        if options.get("backend") is None and env.get(ENV_BACKEND, "").strip():
            given["backend"] = env[ENV_BACKEND].strip().lower()
        if (
            options.get("address") is None
            and given.get("backend") == "ray"
            and env.get(ENV_RAY_ADDRESS, "").strip()
        ):
            given["address"] = env[ENV_RAY_ADDRESS].strip()
        if given.get("backend") == "ray":
            # explicit: given as an option (None included where None means "off"), or
            # through its variable
            explicit = [
                what
                for what in LOCAL_ONLY_OPTIONS
                if options.get(what) is not None
                or (what in options and what.startswith("shm_"))
                or (what == "busy_poll" and env.get(ENV_BUSY_POLL, "").strip())
                or (what == "uvloop" and _flag(env.get(ENV_UVLOOP, "")))
                or (what == "forkserver" and env.get(ENV_FORKSERVER, "").strip())
            ]
            if explicit:
                raise InvalidConfigError(
                    f"{', '.join(explicit)} apply only to the local backend: on Ray, "
                    "messages travel through Ray and actors run on Ray's event loop; "
                    "remove the option (or its ACTORS_* variable) for backend='ray'"
                )
            given["busy_poll"] = 0.0  # nothing polls sockets on Ray
        if "log_dir" in given:
            given["log_dir"] = Path(given["log_dir"])  # type: ignore[arg-type]
        # explicit None for these means "none", not "the default"
        for what in ("shm_threshold", "shm_budget", "hang_timeout"):
            if what in options and options[what] is None:
                given[what] = None
        return cls(**given)  # type: ignore[arg-type]


def _flag(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


#: the longest automatic interval between heartbeats, in seconds
MAX_AUTO_BEAT = 5.0


def beat_interval(
    config: RuntimeConfig, hang_timeout: float | None, deadline: float | None
) -> float:
    """Seconds between an actor's heartbeats: the configured interval, or else a tenth of
    its hang timeout and a quarter of its message deadline, and at most ``MAX_AUTO_BEAT``.

    Beats cost every idle actor, and the driver, a wake-up each: they come as seldom as
    the checks they serve allow.
    """
    if config.heartbeat_interval is not None:
        return config.heartbeat_interval
    hang = hang_timeout or config.hang_timeout
    candidates = [MAX_AUTO_BEAT]
    if hang is not None:
        candidates.append(hang / 10)
    if deadline is not None:
        candidates.append(deadline / 4)
    return min(candidates)


def _seconds(what: str, value: object) -> None:
    seconds(what, value, error=InvalidConfigError)


def _count(what: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        unit = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise InvalidConfigError(f"{what} must be {unit}, not {value!r}")
