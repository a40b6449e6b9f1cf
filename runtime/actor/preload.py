"""Imported by the forkserver only, before it forks any actor process.

Besides preloading the runtime, it makes Ctrl-C (SIGINT) ignored from the first
instruction of every actor process: the forkserver hands its children the handlers it
found after preloading, and the runtime, not each child, owns shutdown. Never import this
module anywhere else.

It also installs our loader of the script's ``__main__`` (see ``_main_import``), and
imports the script's own modules and the standard library modules it uses, listed by the
runtime in ``PRELOAD_ENV`` (``driver.process_host.script_modules``): an actor process
would otherwise import them again, each time, and that adds up at every start.
Each is imported as the script is in an actor process: a module that builds a
``Runtime()`` when imported stops there. One that fails is left for the actor processes to
import, as before; the forkserver itself must not fail.

And it makes the forkserver end at once when the script does (``_end_at_once``).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import multiprocessing.popen_forkserver  # noqa: F401 - unpickling the control socket needs it
import os
import signal

# anyio imports its asyncio backend on the first anyio.run: once here, not once per actor
import anyio._backends._asyncio  # noqa: F401

from .._entry import HANGUP_ENV, PRELOAD_ENV, PRELOAD_MAIN_ENV
from .._lean import without_managers
from .._main_import import importing_main, install_main_import_hooks, prerun_main
from .._stdio import flush_stdio
from . import bootstrap  # noqa: F401

# each actor's process object names aiomultiprocess's types: loaded once here, as the
# script loads it
with without_managers():
    import aiomultiprocess  # noqa: F401

install_main_import_hooks()

_SERVER_PID = os.getpid()


def _end_at_once() -> None:
    """The forkserver's exit handler: flush its output, then end without finalizing.

    The forkserver ends when the script does. Tearing down the modules preloaded here
    takes a while, all the while holding the script's stdout and stderr open, so a
    pipeline, or a caller reading the script's output, would wait that much longer for it.
    It needs no orderly end: it ends only once the script is gone, and it has no logs open
    and nothing to flush but these two streams.
    """
    if os.getpid() != _SERVER_PID:  # an actor process (they end by os._exit anyway)
        return
    flush_stdio()
    os._exit(0)


# before the script's modules are imported: exit handlers run last-in first-out, so
# those the script's modules register still run first
atexit.register(_end_at_once)


def _preload_script_modules() -> None:
    names = os.environ.get(PRELOAD_ENV, "")
    with importing_main():
        for name in filter(None, names.split(",")):
            try:
                importlib.import_module(name)
            except BaseException:  # any failure: the actor process imports it itself
                continue


_preload_script_modules()

# the script itself, when its top level only defines: once here rather than in every actor
with contextlib.suppress(Exception):  # a bad value: each actor process runs it instead
    prerun_main(json.loads(os.environ.get(PRELOAD_MAIN_ENV, "{}")))

signal.signal(signal.SIGINT, signal.SIG_IGN)

# A terminal's hang-up (SIGHUP) goes to the script's process group, the forkserver's too,
# and `systemctl stop` or `pkill -f script.py` send SIGTERM to every process of the run.
# The forkserver ends with the script anyway, and must outlive it long enough to report
# the exit status of each actor the script stops. Actors get back the SIGHUP disposition
# the script had; SIGTERM they handle themselves.
os.environ[HANGUP_ENV] = (
    "ignore" if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN else "default"
)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)

# Everything loaded so far is shared with every actor process, page for page, until one of
# them writes to it: the collector's passes over these objects would write to every page
# (their headers), giving each actor its own copy. Frozen, they are never traversed.
gc.freeze()
