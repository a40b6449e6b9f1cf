"""The hang watchdog: kills an incarnation whose loop stops or whose message overruns.

One timer, ``HangWatch``, checks every incarnation. A local actor's signs of life are in
its account, which the driver reads, so no actor is woken for it; an actor on Ray or on
uvloop sends heartbeats instead, which the driver's reader of its control link records.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import field

import anyio
import anyio.abc

from actors._record import record

from ..observe.account import Liveness
from .registry import ActorRecord, Life

__all__ = ["HangWatch"]

KillHung = Callable[[ActorRecord, Life, str], Awaitable[None]]


@record(frozen=False)
class _Watched:
    """One incarnation under watch: what was last seen of it, and when."""

    life: Life
    #: its account's signs of life; None: it beats (``life.last_beat``)
    signs: Callable[[], Liveness | None] | None
    interval: float
    hang_timeout: float | None
    deadline: float | None
    checked_at: float
    progress_at: float
    handling_at: float = 0.0
    turns: int = -1
    handling: int = 0
    why: str = ""
    hung: anyio.Event = field(default_factory=anyio.Event)

    def judge(self, now: float) -> str:
        """Why it is hung as of ``now`` ("" if it is not)."""
        if self.signs is None:
            silent, since = now - self.life.last_beat, self.life.handling_since
        else:
            seen = self.signs()
            if seen is None:  # it has ended
                return ""
            if seen.waiting or seen.turns != self.turns:
                self.progress_at, self.turns = now, seen.turns
            if seen.handling != self.handling:
                self.handling_at, self.handling = now, seen.handling
            silent = now - self.progress_at
            since = self.handling_at if self.handling > 0 else 0.0
        if self.hang_timeout is not None and silent > self.hang_timeout:
            return f"no heartbeat for {silent:.1f} s (hang_timeout={self.hang_timeout:g} s)"
        deadline = self.deadline
        if deadline is not None:
            if since and now - since > deadline:
                return f"one message handled for {now - since:.1f} s (deadline {deadline:g} s)"
            if silent > deadline + 2 * self.interval:
                return f"event loop blocked for {silent:.1f} s (deadline {deadline:g} s)"
        return ""


class HangWatch:
    """Checks every watched incarnation on one timer, each every ``interval``.

    Hung means: its event loop made no turn (and was not waiting for work), or sent no
    heartbeat, for ``hang_timeout`` seconds; or one message handled for longer than the
    actor's ``message_deadline`` (or a loop blocked past it).
    """

    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        self._tg = tg
        self._watched: set[_Watched] = set()
        self._sweeping = False

    async def watch(
        self,
        rec: ActorRecord,
        life: Life,
        interval: float,
        hang_timeout: float | None,
        kill_hung: KillHung,
    ) -> None:
        """Watch ``life`` (running); return only once it was found hung (after
        ``kill_hung``), or if it is never to be judged. The caller cancels it when the
        incarnation ends."""
        deadline = rec.options.message_deadline
        if hang_timeout is None and deadline is None:
            return
        now = time.monotonic()
        signs = None if life.beats else life.hosted.liveness
        watched = _Watched(life, signs, interval, hang_timeout, deadline, now, now)
        self._watched.add(watched)
        if not self._sweeping:
            self._sweeping = True
            self._tg.start_soon(self._sweep)
        try:
            await watched.hung.wait()
        finally:
            self._watched.discard(watched)
        if not life.exited.is_set() and life.stop_requested is None:
            await kill_hung(rec, life, watched.why)

    async def _sweep(self) -> None:
        judged = True
        try:
            while self._watched:
                tick = min(w.interval for w in self._watched)
                before = time.monotonic()
                await anyio.sleep(tick)
                now = time.monotonic()
                if now - before > 2 * tick and judged:
                    # this process itself was paused (SIGSTOP, a starved machine): the
                    # heartbeats sent meanwhile are still unread, and what the actors did
                    # shows only now, so judge at the next round, not now
                    judged = False
                    for watched in self._watched:
                        watched.checked_at = now
                    continue
                judged = True
                for watched in list(self._watched):
                    life = watched.life
                    if life.exited.is_set() or life.stop_requested is not None:
                        continue
                    if now - watched.checked_at < watched.interval * 0.99:
                        continue
                    watched.checked_at = now
                    why = watched.judge(now)
                    if why:
                        watched.why = why
                        watched.hung.set()
        finally:
            self._sweeping = False
