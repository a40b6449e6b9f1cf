"""Imported by the forkserver only, before it forks any actor process.

Besides preloading the runtime, it makes Ctrl-C (SIGINT) ignored from the first
instruction of every actor process: the forkserver hands its children the handlers it
found after preloading, and the runtime, not each child, owns shutdown. Never import this
module anywhere else.

It also installs our loader of the script's ``__main__`` (see ``_main_import``).
"""

from __future__ import annotations

import signal

# anyio imports its asyncio backend on the first anyio.run: 10 ms per actor if not here
import anyio._backends._asyncio  # noqa: F401

from . import _bootstrap  # noqa: F401
from ._main_import import install_main_import_hooks

install_main_import_hooks()

signal.signal(signal.SIGINT, signal.SIG_IGN)
