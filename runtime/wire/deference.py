"""Deference: a sender held back by a full mailbox leaves the CPU to its receiver.

A sender that runs out of credit sleeps until the receiver frees slots. The receiver's
credit frame wakes it, and Linux treats a wake-up over a unix socket as a hand-over: it
puts the woken sender on the receiver's CPU and lets it preempt the receiver there. But
the receiver is not done, it is the one process that sets the pace of a full mailbox,
and in a fan-in it kept losing its CPU to the senders it had just woken.

So a sender that has to wait for credit runs under ``SCHED_BATCH``: the same priority and
share of the CPU, but its wake-ups preempt nobody; they wait for the next scheduling
decision or a free CPU. (BEAM makes a similar trade: a process that sends to a long
message queue is charged extra reductions, so that the receiver catches up.)

It stays so while it keeps running into full mailboxes, and is ``SCHED_OTHER`` again once
it has not waited for ``CALM`` seconds, or when its transport closes. Switching back at
every wait would cost more than it saves: a change of policy is itself a point where
Linux may switch tasks, and in a fan-in it often does.

A thread whose policy is not ``SCHED_OTHER`` (set by the user) is left alone, and so is
a platform without ``SCHED_BATCH``. A process forked meanwhile starts as ``SCHED_OTHER``;
one started with ``exec`` (``subprocess``) keeps the policy, as exec does.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["CALM", "calm", "deferring"]

#: a sender that has not waited for credit for this long (seconds) is SCHED_OTHER again
CALM = 0.005

_BATCH: int = getattr(os, "SCHED_BATCH", -1)
_OTHER: int = getattr(os, "SCHED_OTHER", -1)


class _ThreadState(threading.local):
    # a scheduling policy belongs to a thread: so does this
    waiting = 0  # tasks of this thread waiting for credit now
    switched = False  # this thread is SCHED_BATCH because of them
    last_wait = 0.0  # time.monotonic() when a wait last ended
    timer: asyncio.TimerHandle | None = None


_state = _ThreadState()
_usable = _BATCH >= 0 and _OTHER >= 0 and hasattr(os, "sched_setscheduler")


@contextmanager
def deferring() -> Iterator[None]:
    """Run the block (a wait for credit) with this thread under ``SCHED_BATCH``.

    The thread stays so until it has not waited for ``CALM`` seconds (checked by a timer
    of the running event loop; without one, when the wait ends), or until ``calm``.
    """
    state = _state
    if not state.switched and _usable and _set_policy(_OTHER, _BATCH):
        state.switched = True
        _check_later(state)
    state.waiting += 1
    try:
        yield
    finally:
        state.waiting -= 1
        state.last_wait = time.monotonic()
        if state.switched and state.timer is None and not state.waiting:
            calm()  # no event loop to check later


def calm() -> None:
    """Make this thread ``SCHED_OTHER`` again now, if deferring made it ``SCHED_BATCH``.

    For a transport that closes: its event loop may end before the timer fires.
    """
    state = _state
    if state.timer is not None:
        state.timer.cancel()
        state.timer = None
    if state.switched:
        state.switched = False
        _set_policy(_BATCH, _OTHER)


def _check_later(state: _ThreadState) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no loop: ``deferring`` calms the thread when the wait ends
        return
    state.timer = loop.call_later(CALM, _check, state)


def _check(state: _ThreadState) -> None:
    state.timer = None
    if state.switched and (state.waiting or time.monotonic() - state.last_wait < CALM):
        _check_later(state)
        return
    calm()


def _set_policy(expected: int, policy: int) -> bool:
    """Switch this thread from ``expected`` to ``policy``; False if it had another."""
    global _usable
    try:
        if os.sched_getscheduler(0) != expected:
            return False
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError:  # not permitted here (a seccomp filter): never try again
        _usable = False
        return False
    return True


def _after_fork_in_child() -> None:
    # the child runs none of the waits it was forked in, nor the parent's event loop
    state = _state
    state.timer = None  # the parent's loop's: not ours to cancel
    calm()
    state.waiting = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
