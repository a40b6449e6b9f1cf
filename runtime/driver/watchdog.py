"""The hang watchdog: kills an incarnation whose loop stops or whose message overruns.

A local actor's signs of life are in its account, which the driver reads: one timer,
``AccountWatch``, checks them all, and no actor is woken for it. An actor on Ray or on
uvloop beats instead, and ``watch_for_hangs`` checks its heartbeats.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import anyio.abc

from ..observe.account import Liveness
from .registry import ActorRecord, Life

__all__ = ["AccountWatch", "watch_for_hangs"]

KillHung = Callable[[ActorRecord, Life, str], Awaitable[None]]


def verdict(
    silent: float,
    since: float,
    now: float,
    hang_timeout: float | None,
    deadline: float | None,
    interval: float,
) -> str:
    """Why an actor is hung ("" if it is not): its loop silent for ``silent`` seconds, the
    message it handles seen first at ``since`` (0: none), checked every ``interval``."""
    if hang_timeout is not None and silent > hang_timeout:
        return f"no heartbeat for {silent:.1f} s (hang_timeout={hang_timeout:g} s)"
    if deadline is not None:
        if since and now - since > deadline:
            return f"one message handled for {now - since:.1f} s (deadline {deadline:g} s)"
        if silent > deadline + 2 * interval:
            return f"event loop blocked for {silent:.1f} s (deadline {deadline:g} s)"
    return ""


async def watch_for_hangs(
    rec: ActorRecord,
    life: Life,
    interval: float,
    hang_timeout: float | None,
    kill_hung: KillHung,
) -> None:
    """Check ``life``'s heartbeats every ``interval``; call ``kill_hung`` once it is hung.

    Hung means: no heartbeat for ``hang_timeout`` seconds, or one message handled for
    longer than the actor's ``message_deadline`` (or a loop blocked past it).
    """
    deadline = rec.options.message_deadline
    if hang_timeout is None and deadline is None:
        return
    await life.running.wait()
    judged = True
    while not life.exited.is_set() and life.stop_requested is None:
        before = time.monotonic()
        await anyio.sleep(interval)
        now = time.monotonic()
        if now - before > 2 * interval and judged:
            # this process itself was paused (SIGSTOP, a starved machine): the heartbeats
            # sent meanwhile are still unread, so judge at the next round, not now
            judged = False
            continue
        judged = True
        why = verdict(
            now - life.last_beat, life.handling_since, now, hang_timeout, deadline, interval
        )
        if why and not life.exited.is_set() and life.stop_requested is None:
            await kill_hung(rec, life, why)
            return


@dataclass(eq=False)
class _Watched:
    """One actor under ``AccountWatch``: what it last saw, and when."""

    life: Life
    signs: Callable[[], Liveness | None]
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
        seen = self.signs()
        if seen is None:  # it has ended
            return ""
        if seen.waiting or seen.turns != self.turns:
            self.progress_at, self.turns = now, seen.turns
        if seen.handling != self.handling:
            self.handling_at, self.handling = now, seen.handling
        since = self.handling_at if self.handling > 0 else 0.0
        return verdict(
            now - self.progress_at, since, now, self.hang_timeout, self.deadline, self.interval
        )


class AccountWatch:
    """Checks the accounts of all local actors on one timer, each every ``interval``.

    As ``watch_for_hangs`` does with heartbeats: hung means its event loop made no turn
    (and was not waiting for work) for ``hang_timeout`` seconds, or one message handled
    for longer than its ``message_deadline``. A check is a read of mapped memory.
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
        """Return only if ``life`` was found hung (after ``kill_hung``), or is never to be
        judged; the caller cancels it when the incarnation ends."""
        deadline = rec.options.message_deadline
        if hang_timeout is None and deadline is None:
            return
        now = time.monotonic()
        watched = _Watched(life, life.hosted.liveness, interval, hang_timeout, deadline, now, now)
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
                    # this process itself was paused: what the actors did meanwhile shows
                    # now, so judge at the next round (as with heartbeats)
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
