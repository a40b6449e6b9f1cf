"""The machinery that runs actors: processes, mailboxes, transport, logs.

A script needs one name from here: ``Runtime``::

    async with Runtime() as rt:
        ref = await rt.spawn(MyActor, name="worker")
"""

from __future__ import annotations

from .driver.process_host import Host as Host
from .driver.process_host import HostedProcess as HostedProcess
from .driver.process_host import ProcessHost as ProcessHost
from .driver.runtime import Runtime as Runtime
from .driver.supervision import ShutdownReport as ShutdownReport
from .observe.logging import default_log_root as default_log_root
from .observe.probe import EventProbe as EventProbe

__all__ = [
    "EventProbe",
    "Host",
    "HostedProcess",
    "ProcessHost",
    "Runtime",
    "ShutdownReport",
    "default_log_root",
]
