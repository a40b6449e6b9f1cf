"""A history checker over a traced run's logs, in the spirit of Jepsen's total-queue.

Every message sent by ``tell`` must end handled, failed or dead-lettered (a message whose
receiver died before confirming it is dead-lettered by its sender, reason ``in_doubt``);
none may be handled twice (at most once); and each receiving incarnation must handle each
sender's messages in the order they were sent (FIFO per pair).

A sender's ``in_doubt`` record is provisional: ``outcomes`` holds each message's one
outcome as the viewer resolves it (``runtime.trace.Run``), the receiver's log first, and
``two_outcomes`` the messages that still have more than one final outcome (a bug).
``dead`` keeps every dead letter as logged, the senders' in-doubt records included.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.trace import load_run


def _split(msg_id: str) -> tuple[str, int]:
    box, _, ident = msg_id.rpartition(".")
    return box, int(ident)


@dataclass
class History:
    sent: set[str] = field(default_factory=set)
    asked: set[str] = field(default_factory=set)
    handled: Counter[str] = field(default_factory=Counter)
    failed: set[str] = field(default_factory=set)
    dead: dict[str, str] = field(default_factory=dict)
    fifo_violations: list[tuple[str, str, int, int]] = field(default_factory=list)
    #: incarnations ("<actor_id>.<n>") that were killed: they may die between handing a
    #: message to the kernel and logging message.sent, so its receipt has no sent record
    killed_boxes: set[str] = field(default_factory=set)
    #: each message's one outcome, resolved as the viewer does (``runtime.trace.OUTCOMES``)
    outcomes: dict[str, str] = field(default_factory=dict)
    #: messages whose receiver recorded more than one final outcome, with those outcomes
    two_outcomes: dict[str, list[str]] = field(default_factory=dict)
    #: messages recorded in doubt by their sender and resolved by their receiver's log
    resolved: set[str] = field(default_factory=set)

    @property
    def unaccounted(self) -> set[str]:
        return self.sent - set(self.handled) - self.failed - set(self.dead)

    @property
    def duplicated(self) -> list[str]:
        return [m for m, n in self.handled.items() if n > 1]

    @property
    def unexpected(self) -> set[str]:
        """Handled, but never sent: only allowed from a sender killed right after sending."""
        never_sent = set(self.handled) - self.sent - self.asked
        return {m for m in never_sent if _split(m)[0] not in self.killed_boxes}

    def dead_by_reason(self) -> Counter[str]:
        return Counter(self.dead.values())

    @property
    def in_doubt(self) -> set[str]:
        """Recorded in doubt by the sender, with nothing in the receiver's log to resolve it."""
        return {m for m, outcome in self.outcomes.items() if outcome == "in_doubt"}

    def by_outcome(self) -> Counter[str]:
        """How many messages ended each way, one outcome per message."""
        return Counter(self.outcomes.values())


def check_history(log_dir: Path) -> History:
    history = History()
    if not any(log_dir.glob("*.jsonl")):
        return history
    run = load_run(log_dir)
    events = run.events
    for message in run.messages.values():
        if message.outcome is not None:
            history.outcomes[message.msg_id] = message.outcome
        if len(message.receiver_outcomes) > 1:
            history.two_outcomes[message.msg_id] = message.receiver_outcomes
        if message.resolved:
            history.resolved.add(message.msg_id)
    # each receiving process's own order: sort by (pid, seq) within its file
    by_receiver: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        name = event["event"]
        if name == "message.sent":
            (history.asked if event.get("ask") else history.sent).add(event["msg_id"])
        elif name == "message.handled":
            history.handled[event["msg_id"]] += 1
            by_receiver[event["pid"]].append(event)
        elif name == "message.failed":
            history.failed.add(event["msg_id"])
        elif name == "message.dead_lettered":
            history.dead.setdefault(event["msg_id"], event["reason"])
        elif name == "actor.exited" and str(event.get("reason", "")).startswith("signal:"):
            history.killed_boxes.add(f"{event['actor_id']}.{event['incarnation']}")
    for pid, handled in by_receiver.items():
        last: dict[str, int] = {}
        for event in sorted(handled, key=lambda e: e["seq"]):
            box, ident = _split(event["msg_id"])
            if box in last and ident <= last[box]:
                history.fifo_violations.append((str(pid), box, last[box], ident))
            last[box] = ident
    return history
