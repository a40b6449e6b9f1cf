"""Writes batched per event-loop step.

A sender that tells in a loop would pay one ``send`` system call per message, the largest
single cost of a small tell. Instead, the first frame a connection sends in a step of the
event loop goes to the kernel at once (a lone message is not delayed), and the frames that
follow it in the same step are held and written together when the step ends: when the
sending task next waits, and at the latest after ``tell``'s periodic yield
(``polling.YIELD_EVERY``).

A frame written at once (an ask, a reply, credit) first releases every held frame of the
process, on every connection: a process's tells are on their way before any answer or
question it sends after them. A busy-polling wait (``busy_poll``) releases them too,
since the loop does not run while it polls.

Per-message log events are batched per step as well; they are written after the frames of
the step, so a process killed between the two leaves the same record as before batching:
a message may be handled without its ``message.sent`` line, never the reverse.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["end_of_step", "flush_now", "pending"]

_due: list[Callable[[], None]] = []


def end_of_step(flush: Callable[[], None]) -> None:
    """Call ``flush`` when the running step of the event loop ends (or at ``flush_now``)."""
    if not _due:
        try:
            asyncio.get_running_loop().call_soon(flush_now)
        except RuntimeError:  # no running loop: nothing will end the step
            flush()
            return
    _due.append(flush)


def pending() -> bool:
    """Whether flushes are due at the end of this step."""
    return bool(_due)


def flush_now() -> None:
    """Run every flush due at the end of this step, now."""
    while _due:
        due = _due[:]
        _due.clear()
        for flush in due:
            flush()
