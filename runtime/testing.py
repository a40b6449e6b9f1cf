"""Assert on the message flow of a run in your own tests, like ``structlog.testing``.

Example::

    async with Runtime(trace=True) as rt:
        with capture_flow(rt) as flow:
            await head.tell(("item", 1))
            await head.ask("barrier")              # everything sent before it is done
        assert flow.messages(receiver="sink", outcome="handled")
        flow.assert_accounted()

Every process writes its own log file as events happen; ``flow`` reads them all, keeping
the events between entering and leaving the ``with`` block.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .driver.fake_host import FakeClock as FakeClock
from .driver.fake_host import FakeHost as FakeHost
from .driver.fake_host import FakeIncarnation as FakeIncarnation
from .driver.fake_host import HostEvent as HostEvent
from .trace import Message, Run, merge_logs

if TYPE_CHECKING:
    from .driver.runtime import Runtime

__all__ = ["FakeClock", "FakeHost", "FakeIncarnation", "Flow", "HostEvent", "capture_flow"]


class Flow:
    """The messages of a run within a time window, joined from every process's log."""

    def __init__(self, log_dir: Path, since: float) -> None:
        self.log_dir = log_dir
        self.since = since
        self.until: float | None = None

    def run(self) -> Run:
        """Read the logs now and join the events of the window."""
        until = self.until if self.until is not None else float("inf")
        events = [e for e in merge_logs(self.log_dir) if self.since <= e["_t"] <= until]
        return Run(events)

    def messages(
        self,
        *,
        sender: str | None = None,
        receiver: str | None = None,
        msg_type: str | None = None,
        outcome: str | None = None,
    ) -> list[Message]:
        """The messages matching every given field, in the order they were sent.

        Each message has exactly one ``outcome``, resolved from every log: what its
        receiver recorded wins over its sender's provisional "in doubt" record; "died"
        when its receiving incarnation died with it unfinished; "in_doubt" when its
        sender's record is all there is (``runtime.trace.Message.outcome``).
        """
        found = [
            m
            for m in self.run().messages.values()
            if (sender is None or m.sender == sender)
            and (receiver is None or m.receiver == receiver)
            and (msg_type is None or m.msg_type == msg_type)
            and (outcome is None or m.outcome == outcome)
        ]
        return sorted(found, key=lambda m: m.sent_at or m.received_at or 0.0)

    def in_doubt(self) -> list[Message]:
        """Messages still in doubt: recorded by their sender, unresolved by the receiver's log."""
        return sorted(self.run().in_doubt(), key=lambda m: m.sent_at or m.outcome_at or 0.0)

    def assert_accounted(self) -> None:
        """Every message sent has exactly one outcome; every cause is in its trace.

        A tell or ask ends handled, failed, dead-lettered, bounced, lost with a receiver
        that died while it held it, or in doubt (its sender's record when the receiver
        died before confirming it, which accounts for it when nothing else does).

        Raises:
            AssertionError: listing the messages that break the rule.
        """
        run = self.run()
        problems = []
        if missing := run.unaccounted():
            problems.append(f"sent, with no outcome: {[m.msg_id for m in missing[:20]]}")
        if unfinished := run.unfinished():
            problems.append(f"received, with no outcome: {[m.msg_id for m in unfinished[:20]]}")
        if twice := run.conflicts():
            problems.append(
                f"more than one outcome: {[(m.msg_id, m.receiver_outcomes) for m in twice[:20]]}"
            )
        if broken := run.broken_links():
            problems.append(f"causes missing or in another trace: {[m.msg_id for m in broken]}")
        if problems:
            raise AssertionError("; ".join(problems))


@contextmanager
def capture_flow(rt: Runtime) -> Iterator[Flow]:
    """Capture the message flow of ``rt`` (which must trace) while the block runs."""
    if not rt.config.trace:
        raise ValueError(
            "capture_flow needs per-message events: create the runtime with "
            "Runtime(trace=True) or set ACTORS_TRACE=1"
        )
    flow = Flow(rt.log_dir, time.time())
    try:
        yield flow
    finally:
        flow.until = time.time()
