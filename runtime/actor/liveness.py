"""Signs of life in the account file: what the driver's hang watchdog reads.

An actor's event loop notes in its account (``runtime.observe.account``) when it waits
for something to do and how many turns it has made; the handler notes which message it
is on. The driver reads these when it checks for hangs, so an idle actor is never woken
to prove it is alive: with a thousand of them, heartbeats kept a CPU busy.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any

from ..observe.account import LOOP_TURNS, LOOP_WAITING

__all__ = ["install_loop_probe"]


def install_loop_probe(loop: asyncio.AbstractEventLoop, cells: memoryview) -> bool:
    """Have ``loop`` note in ``cells`` when it waits and each turn it makes.

    Returns False, changing nothing, for a loop without a Python selector (uvloop): its
    actor sends heartbeats instead.
    """
    selector = getattr(loop, "_selector", None)
    if not isinstance(selector, selectors.BaseSelector):
        return False
    select = selector.select

    def select_noting(timeout: float | None = None) -> list[tuple[Any, int]]:
        # no try/finally, on the hot path: a select that raises ends the loop anyway
        cells[LOOP_WAITING] = 1
        events = select(timeout)
        cells[LOOP_WAITING] = 0
        cells[LOOP_TURNS] += 1
        return events

    selector.select = select_noting  # type: ignore[method-assign]
    return True
