"""The machinery that runs actors: processes, mailboxes, transport, logs.

A script needs one name from here: ``Runtime``::

    async with Runtime() as rt:
        ref = await rt.spawn(MyActor, name="worker")
"""

from __future__ import annotations

from ._config import RuntimeConfig as RuntimeConfig
from .driver.hosting import ControlLink as ControlLink
from .driver.hosting import Host as Host
from .driver.hosting import HostedIncarnation as HostedIncarnation
from .driver.hosting import StackDump as StackDump
from .driver.process_host import ProcessHost as ProcessHost
from .driver.report import ShutdownReport as ShutdownReport
from .driver.runtime import Runtime as Runtime
from .observe.logging import default_log_root as default_log_root
from .observe.probe import EventProbe as EventProbe

__all__ = [
    "ControlLink",
    "EventProbe",
    "Host",
    "HostedIncarnation",
    "ProcessHost",
    "Runtime",
    "RuntimeConfig",
    "StackDump",
    "ShutdownReport",
    "default_log_root",
]
