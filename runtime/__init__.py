"""The machinery that runs actors: processes, mailboxes, transport, logs.

A script needs one name from here: ``Runtime``::

    async with Runtime() as rt:
        ref = await rt.spawn(MyActor, name="worker")
"""

from __future__ import annotations

from ._hosting import Host as Host
from ._hosting import HostedProcess as HostedProcess
from ._hosting import ProcessHost as ProcessHost
from ._probe import EventProbe as EventProbe
from ._runtime import Runtime as Runtime
from ._runtime import default_log_root as default_log_root
from ._supervision import ShutdownReport as ShutdownReport

__all__ = [
    "EventProbe",
    "Host",
    "HostedProcess",
    "ProcessHost",
    "Runtime",
    "ShutdownReport",
    "default_log_root",
]
