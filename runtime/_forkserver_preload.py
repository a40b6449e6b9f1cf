"""Imported by the forkserver only, before it forks any actor process.

Besides preloading the runtime, it makes Ctrl-C (SIGINT) ignored from the first
instruction of every actor process: the forkserver hands its children the handlers it
found after preloading, and the runtime, not each child, owns shutdown. Never import this
module anywhere else.

It also installs our loader of the script's ``__main__`` (see ``_main_import``), and
imports the script's own modules and the standard library modules it uses, listed by the
runtime in ``_ACTORS_FORKSERVER_MODULES`` (``_hosting.script_modules``): an actor process
would import them again, which takes milliseconds each (tens where no ``.pyc`` is cached).
Each is imported as the script is in an actor process: a module that builds a
``Runtime()`` when imported stops there. One that fails is left for the actor processes to
import, as before; the forkserver itself must not fail.
"""

from __future__ import annotations

import importlib
import os
import signal

# anyio imports its asyncio backend on the first anyio.run: 10 ms per actor if not here
import anyio._backends._asyncio  # noqa: F401

from . import _bootstrap  # noqa: F401
from ._main_import import importing_main, install_main_import_hooks

install_main_import_hooks()


def _preload_script_modules() -> None:
    names = os.environ.get("_ACTORS_FORKSERVER_MODULES", "")
    with importing_main():
        for name in filter(None, names.split(",")):
            try:
                importlib.import_module(name)
            except BaseException:  # any failure: the actor process imports it itself
                continue


_preload_script_modules()

signal.signal(signal.SIGINT, signal.SIG_IGN)
