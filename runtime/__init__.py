"""The machinery that runs actors: processes, mailboxes, transport, logs.

A script needs one name from here: ``Runtime``::

    async with Runtime() as rt:
        ref = await rt.spawn(MyActor, name="worker")
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ._stdio import hold_stdio

# first, before any module of ours opens a file and before the script's event loop exists
# (in a script that imports us at its top): a closed stdio number must not go to them
hold_stdio()

if TYPE_CHECKING:
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

# Each name loads its module on first use: an actor process imports runtime.actor.*,
# which must not drag in the driver's side, and a script pays only for what it uses.
_WHERE = {
    "ControlLink": ".driver.hosting",
    "EventProbe": ".observe.probe",
    "Host": ".driver.hosting",
    "HostedIncarnation": ".driver.hosting",
    "ProcessHost": ".driver.process_host",
    "Runtime": ".driver.runtime",
    "RuntimeConfig": "._config",
    "StackDump": ".driver.hosting",
    "ShutdownReport": ".driver.report",
    "default_log_root": ".observe.logging",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    from .driver.import_heap import import_quietly

    module = import_quietly(where, __name__, sys._getframe(1))
    value = getattr(module, name)
    globals()[name] = value  # once: later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
