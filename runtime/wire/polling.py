"""Busy polling: when an asker or an idle actor reads its sockets instead of sleeping.

On small VMs, waking a process that sleeps in epoll costs more than a whole quick round
trip. So a process that expects a frame within microseconds polls for it, for at most
``busy_poll`` seconds (docs/internals/design-choices.md, Busy polling), and stops doing
so when frames do not come in time.
"""

from __future__ import annotations

__all__ = ["YIELD_EVERY", "PollBackoff"]

#: a process whose messages come by polling still lets its event loop run this often
#: (seconds): heartbeats, stop requests and acknowledgements are tasks of that loop
YIELD_EVERY = 0.001
#: after this many polls in a row that caught nothing, poll only now and then...
MISSES = 3
#: ... once every this many times
PROBE_EVERY = 16


class PollBackoff:
    """Whether to poll next time: always while polls catch something, else 1 in 16."""

    __slots__ = ("_misses", "_skipped")

    def __init__(self) -> None:
        self._misses = 0
        self._skipped = 0

    def should_poll(self) -> bool:
        if self._misses < MISSES:
            return True
        self._skipped += 1
        if self._skipped >= PROBE_EVERY:
            self._skipped = 0
            return True
        return False

    def caught(self, hit: bool) -> None:
        """Record how the last poll went."""
        self._misses = 0 if hit else self._misses + 1
