"""A run's logs, merged and joined per message: what every message did."""

from __future__ import annotations

import datetime as dt
import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ActorSummary", "Message", "Run", "load_run", "merge_logs"]

Event = dict[str, Any]

#: how a message can end; "bounced": an ending incarnation gave an ask back unhandled,
#: and its asker sent it again as a new message
_OUTCOMES = ("message.handled", "message.failed", "message.dead_lettered", "message.bounced")
#: exit reasons that are not failures
_CLEAN_EXITS = {"shutdown", "stopped", "requested", "restart", "parent_ended", "escalated"}


def _time(event: Event) -> float:
    return dt.datetime.fromisoformat(event["timestamp"]).timestamp()


def _files(run_dir: Path) -> list[Path]:
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"{run_dir} is not a directory of run logs; pass the run's log directory "
            "(--log-dir of the demos, or rt.log_dir)"
        )
    files = sorted(run_dir.glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"{run_dir} holds no .jsonl log files")
    return files


def _read(path: Path) -> Iterator[Event]:
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                # a process killed mid-write leaves at most its last line cut short
                if number > 1 and not line.endswith(b"\n"):
                    continue
                raise ValueError(f"{path}:{number} is not a JSON line") from None
            if isinstance(event, dict) and "event" in event and "timestamp" in event:
                yield event


def merge_logs(run_dir: str | Path) -> list[Event]:
    """Every event of every process of a run, in one stream ordered by time.

    Events of one process keep their order (``seq``) whatever their timestamps.
    """
    events: list[Event] = []
    for path in _files(Path(run_dir)):
        events.extend(_read(path))
    for event in events:
        event["_t"] = _time(event)
    events.sort(key=lambda e: (e["_t"], e.get("pid", 0), e.get("seq", 0)))
    return events


@dataclass
class Message:
    """One message, joined from its sender's and its receiver's events."""

    msg_id: str
    sender: str = "?"
    receiver: str = "?"
    msg_type: str = "?"
    trace_id: str | None = None
    parent_id: str | None = None
    ask: bool = False
    size: int | None = None
    sent_at: float | None = None
    received_at: float | None = None
    depth: int | None = None
    #: handled, failed or dead_lettered; None while nothing says what became of it
    outcome: str | None = None
    outcome_at: float | None = None
    duration_s: float | None = None
    error_type: str | None = None
    reason: str | None = None
    replied_at: float | None = None
    round_trip_s: float | None = None
    children: list[str] = field(default_factory=list)


@dataclass
class ActorSummary:
    """One row of the per-actor summary."""

    actor: str
    received: int = 0
    sent: int = 0
    handled: int = 0
    failed: int = 0
    dead_lettered: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_depth: int | None = None
    restarts: int = 0


class Run:
    """A run's merged events and its messages, joined by ``msg_id``."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.messages: dict[str, Message] = {}
        self.start = events[0]["_t"] if events else 0.0
        self.end = events[-1]["_t"] if events else 0.0
        for event in events:
            self._join(event)
        for message in self.messages.values():
            if message.parent_id and message.parent_id in self.messages:
                self.messages[message.parent_id].children.append(message.msg_id)

    def _message(self, event: Event) -> Message:
        msg_id = str(event["msg_id"])
        message = self.messages.get(msg_id)
        if message is None:
            message = self.messages[msg_id] = Message(msg_id)
        for key in ("sender", "receiver", "msg_type", "trace_id", "parent_id"):
            value = event.get(key)
            if value is not None and getattr(message, key) in ("?", None):
                setattr(message, key, value)
        return message

    def _join(self, event: Event) -> None:
        name = event["event"]
        if "msg_id" not in event or not name.startswith(("message.", "reply.")):
            return
        message = self._message(event)
        if name == "message.sent":
            message.sent_at = event["_t"]
            message.ask = bool(event.get("ask"))
            message.size = event.get("size")
        elif name == "message.received":
            message.received_at = event["_t"]
            message.depth = event.get("depth")
        elif name in _OUTCOMES:
            if message.outcome is None or name != "message.dead_lettered":
                message.outcome = name.split(".", 1)[1]
                message.outcome_at = event["_t"]
            message.duration_s = event.get("duration_s", message.duration_s)
            message.error_type = event.get("error_type", message.error_type)
            message.reason = event.get("reason", message.reason)
        elif name == "reply.received":
            message.replied_at = event["_t"]
            message.round_trip_s = event.get("round_trip_s")

    # -- questions ---------------------------------------------------------------------

    def where(self, name: str, **match: Any) -> list[Event]:
        """The events called ``name`` whose fields equal ``match``."""
        return [
            e
            for e in self.events
            if e["event"] == name and all(e.get(k) == v for k, v in match.items())
        ]

    def actors(self) -> list[str]:
        """Actor names in order of first appearance (``main`` first)."""
        names: dict[str, None] = {"main": None}
        for event in self.events:
            if event["event"] == "actor.spawned":
                names.setdefault(event["actor"], None)
        for message in self.messages.values():
            names.setdefault(message.sender, None)
            names.setdefault(message.receiver, None)
        names.pop("?", None)
        return list(names)

    def summary(self) -> list[ActorSummary]:
        """Per actor: messages in and out, their outcomes, handle times, deepest mailbox."""
        rows = {name: ActorSummary(name) for name in self.actors()}
        times: dict[str, list[float]] = defaultdict(list)
        for m in self.messages.values():
            if m.sender in rows and m.sent_at is not None:
                rows[m.sender].sent += 1
            if m.receiver not in rows:
                continue
            row = rows[m.receiver]
            if m.received_at is not None:
                row.received += 1
            if m.depth is not None:
                row.max_depth = max(row.max_depth or 0, m.depth)
            if m.outcome == "handled":
                row.handled += 1
                if m.duration_s is not None:
                    times[m.receiver].append(m.duration_s * 1000)
            elif m.outcome == "failed":
                row.failed += 1
            elif m.outcome == "dead_lettered":
                row.dead_lettered += 1
        for event in self.where("actor.restarted"):
            if event["actor"] in rows:
                rows[event["actor"]].restarts += 1
        for name, samples in times.items():
            samples.sort()
            rows[name].p50_ms = statistics.median(samples)
            rows[name].p99_ms = samples[min(len(samples) - 1, int(0.99 * len(samples)))]
        return list(rows.values())

    def flow(self) -> Counter[tuple[str, str]]:
        """Messages sent, per (sender, receiver)."""
        return Counter(
            (m.sender, m.receiver) for m in self.messages.values() if m.sent_at is not None
        )

    def chain(self, msg_id: str) -> list[Message]:
        """``msg_id`` and its causes, root first."""
        chain = []
        seen = set()
        current = self.messages.get(msg_id)
        while current is not None and current.msg_id not in seen:
            seen.add(current.msg_id)
            chain.append(current)
            current = self.messages.get(current.parent_id) if current.parent_id else None
        return chain[::-1]

    def trace(self, trace_id: str) -> list[Message]:
        """The messages of one trace, in the order they were sent."""
        found = [m for m in self.messages.values() if m.trace_id == trace_id]
        return sorted(found, key=lambda m: m.sent_at or m.received_at or 0.0)

    def failures(self) -> list[Message]:
        """Messages whose handler raised, in time order."""
        return sorted(
            (m for m in self.messages.values() if m.outcome == "failed"),
            key=lambda m: m.outcome_at or 0.0,
        )

    def crashes(self) -> list[Event]:
        """Incarnations that ended by failing (exception, signal, hang...)."""
        return [
            e for e in self.where("actor.exited") if str(e.get("reason", "")) not in _CLEAN_EXITS
        ]

    def unaccounted(self) -> list[Message]:
        """Tells that nothing says what became of: sent, but not handled, failed or dead."""
        return [
            m
            for m in self.messages.values()
            if not m.ask and m.sent_at is not None and m.outcome is None
        ]

    def unfinished(self) -> list[Message]:
        """Messages received that neither ended handled, failed, nor dead-lettered."""
        return [
            m for m in self.messages.values() if m.received_at is not None and m.outcome is None
        ]

    def broken_links(self) -> list[Message]:
        """Messages naming a cause that is not in the logs, or in another trace."""
        broken = []
        for m in self.messages.values():
            if not m.parent_id:
                continue
            parent = self.messages.get(m.parent_id)
            if parent is None or parent.trace_id != m.trace_id:
                broken.append(m)
        return broken


def load_run(run_dir: str | Path) -> Run:
    """Read and join every log of a run (the directory of its ``.jsonl`` files)."""
    return Run(merge_logs(run_dir))
