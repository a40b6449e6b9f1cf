"""The hang watchdog: kills an incarnation whose loop stops beating or whose message overruns."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio

from .registry import ActorRecord, Life

__all__ = ["watch_for_hangs"]


async def watch_for_hangs(
    rec: ActorRecord,
    life: Life,
    interval: float,
    hang_timeout: float | None,
    kill_hung: Callable[[ActorRecord, Life, str], Awaitable[None]],
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
        silent = now - life.last_beat
        why = ""
        if hang_timeout is not None and silent > hang_timeout:
            why = f"no heartbeat for {silent:.1f} s (hang_timeout={hang_timeout:g} s)"
        elif deadline is not None:
            since = life.handling_since
            if since and now - since > deadline:
                why = f"one message handled for {now - since:.1f} s (deadline {deadline:g} s)"
            elif silent > deadline + 2 * interval:
                why = f"event loop blocked for {silent:.1f} s (deadline {deadline:g} s)"
        if why and not life.exited.is_set() and life.stop_requested is None:
            await kill_hung(rec, life, why)
            return
