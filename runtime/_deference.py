"""Deference: a sender held back by a full mailbox leaves the CPU to its receiver.

A sender that runs out of credit sleeps until the receiver frees slots. The receiver's
credit frame wakes it, and Linux treats a wake-up over a unix socket as a hand-over: it
puts the woken sender on the receiver's CPU and lets it preempt the receiver there. But
the receiver is not done, it is the one process that sets the pace of a full mailbox,
and in a fan-in it lost its CPU to a sender about three times per thousand messages.

So while it waits for credit, the sender's thread runs under ``SCHED_BATCH``: the same
priority and share of the CPU, but its wake-up preempts nobody; it waits for the next
scheduling decision or a free CPU. It is ``SCHED_OTHER`` again as soon as it runs. (BEAM
makes a similar trade: a process that sends to a long message queue is charged extra
reductions, so that the receiver catches up.)

A thread whose policy is not ``SCHED_OTHER`` (set by the user) is left alone, and so is
a platform without ``SCHED_BATCH``. A process forked meanwhile starts as ``SCHED_OTHER``;
one started with ``exec`` (``subprocess``) keeps the policy, as exec does.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["deferring"]

_BATCH: int = getattr(os, "SCHED_BATCH", -1)
_OTHER: int = getattr(os, "SCHED_OTHER", -1)


class _ThreadState(threading.local):
    # a scheduling policy belongs to a thread: so does the count of its waiting tasks
    waiting = 0
    switched = False


_state = _ThreadState()
_usable = _BATCH >= 0 and _OTHER >= 0 and hasattr(os, "sched_setscheduler")


@contextmanager
def deferring() -> Iterator[None]:
    """Run the block (a wait for credit) with this thread's wake-ups not preempting.

    Re-entrant across the tasks of one event loop: the first waiter switches the thread's
    policy, the last one to finish switches it back.
    """
    state = _state
    if state.waiting == 0 and _usable:
        state.switched = _set_policy(_OTHER, _BATCH)
    state.waiting += 1
    try:
        yield
    finally:
        state.waiting -= 1
        if state.waiting == 0 and state.switched:
            state.switched = False
            _set_policy(_BATCH, _OTHER)


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
    # the child runs none of the waits it was forked in: it starts as the thread was
    state = _state
    if state.switched:
        state.switched = False
        _set_policy(_BATCH, _OTHER)
    state.waiting = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
