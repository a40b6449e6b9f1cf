"""Where an actor process begins: the one place the driver side names the actor side.

multiprocessing pickles these functions by name and calls them in the new process; only
there do they import the actor side, so the driver's modules never load it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "LOOP_OPTION",
    "HANGUP_ENV",
    "PRELOAD",
    "PRELOAD_ENV",
    "PRELOAD_MAIN_ENV",
    "actor_main",
    "bootstrap",
    "ray_incarnation_host",
    "ray_log_collector",
]

#: the module the forkserver imports before it forks any actor process
PRELOAD = "runtime.actor.preload"
#: the environment variable listing the script's modules the forkserver imports too
PRELOAD_ENV = "_ACTORS_FORKSERVER_MODULES"
#: the environment variable telling the forkserver where the script's ``__main__`` comes
#: from, and its ``sys.argv`` (JSON), so that it can run a top level that only defines once
PRELOAD_MAIN_ENV = "_ACTORS_FORKSERVER_MAIN"
#: the environment variable by which the forkserver tells each actor process whether the
#: script ignored SIGHUP ("ignore") or not ("default"): the forkserver ignores it either way
HANGUP_ENV = "_ACTORS_SCRIPT_SIGHUP"
#: the keyword argument of an actor process's unit that says whether it runs on uvloop
#: (the driver's choice, passed to each process: a forkserver keeps the environment it
#: started with)
LOOP_OPTION = "_actors_uvloop"


def bootstrap(unit: Any) -> None:
    """aiomultiprocess ``process_target``: run the actor process to its end."""
    from .actor.bootstrap import bootstrap as run

    run(unit)


async def actor_main(spec: bytes, control: Any) -> int:
    """Run one actor incarnation; return the process exit code."""
    from .actor.bootstrap import actor_main as run

    return await run(spec, control)


def ray_incarnation_host() -> type:
    """The class of the Ray actor that hosts an incarnation (the Ray backend)."""
    from .actor.ray_worker import IncarnationHost

    return IncarnationHost


def ray_log_collector() -> Any:
    """The function that takes a run's log files from a machine (the Ray backend)."""
    from .actor.ray_worker import collect_logs

    return collect_logs
