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

__all__ = [
    "OUTCOMES",
    "ActorSummary",
    "Message",
    "Run",
    "RunInfo",
    "hard_death",
    "list_runs",
    "load_run",
    "merge_logs",
]

Event = dict[str, Any]

#: what a message's ``outcome`` can be, once resolved (None: nothing says)
OUTCOMES = ("handled", "failed", "dead_lettered", "bounced", "died", "in_doubt")

#: how its receiver can say a message ended; "bounced": an ending incarnation gave an ask
#: back unhandled, and its asker sent it again as a new message
_OUTCOMES = ("message.handled", "message.failed", "message.dead_lettered", "message.bounced")
#: the reason of the dead letter a sender records for a message whose receiver died before
#: confirming it: provisional, the receiver's own log may say what became of it
_IN_DOUBT = "in_doubt"
#: exit reasons that are not failures
_CLEAN_EXITS = {
    "shutdown",
    "stopped",
    "requested",
    "restart",
    "parent_ended",
    "escalated",
    "sigterm",
    "sighup",
}


def hard_death(reason: str) -> bool:
    """Whether an incarnation that exited for ``reason`` ended without finishing its work.

    Killed by a signal, exited on its own (``exit:3``), killed as hung or for not stopping
    in time: what it had received and not finished it never finished.
    """
    return reason.startswith(("signal:", "exit:")) or reason in ("hung", "shutdown_timeout")


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


def merge_logs(run_dir: str | Path, run_id: str | None = None) -> list[Event]:
    """Every event of every process of a run, in one stream ordered by time.

    Events of one process keep their order (``seq``) whatever their timestamps. A log
    directory reused by several runs holds them all: ``run_id`` keeps one (``list_runs``).
    """
    events: list[Event] = []
    for path in _files(Path(run_dir)):
        events.extend(_read(path))
    for event in events:
        event["_t"] = _time(event)
    events.sort(key=lambda e: (e["_t"], e.get("pid", 0), e.get("seq", 0)))
    if run_id is not None:
        events = [e for e in events if e.get("run_id", run_id) == run_id]
    return events


@dataclass(frozen=True)
class RunInfo:
    """One run found in a log directory."""

    run_id: str
    #: when its ``runtime.started`` was logged (its first event's time if none was)
    started: float
    #: whether it traced every message (None: no ``runtime.started`` says)
    trace: bool | None
    events: int

    @property
    def started_iso(self) -> str:
        return dt.datetime.fromtimestamp(self.started, dt.UTC).isoformat(timespec="seconds")


def _runs(events: list[Event]) -> list[RunInfo]:
    first: dict[str, float] = {}
    started: dict[str, Event] = {}
    counts: Counter[str] = Counter()
    for event in events:
        run_id = event.get("run_id")
        if run_id is None:
            continue
        run_id = str(run_id)
        counts[run_id] += 1
        first.setdefault(run_id, event["_t"])
        if event["event"] == "runtime.started":
            started.setdefault(run_id, event)
    infos = [
        RunInfo(
            run_id,
            started[run_id]["_t"] if run_id in started else first[run_id],
            bool(started[run_id].get("trace")) if run_id in started else None,
            counts[run_id],
        )
        for run_id in first
    ]
    return sorted(infos, key=lambda r: r.started)


def list_runs(run_dir: str | Path) -> list[RunInfo]:
    """The runs whose events a log directory holds, oldest first."""
    return _runs(merge_logs(run_dir))


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
    #: exactly one of ``OUTCOMES``, resolved from every log; None while nothing says.
    #: "handled", "failed", "dead_lettered" (for sure), "bounced": its receiver said so;
    #: "died": its receiving incarnation died (killed, exited, hung) with it received and
    #: no outcome logged (``reason`` is the exit's); "in_doubt": only its sender's record says
    #: anything: the receiver died before confirming it, and its log does not say whether
    #: it was handled
    outcome: str | None = None
    outcome_at: float | None = None
    duration_s: float | None = None
    error_type: str | None = None
    reason: str | None = None
    replied_at: float | None = None
    round_trip_s: float | None = None
    #: whether the reply told the asker it went well (None: no reply.received)
    reply_ok: bool | None = None
    children: list[str] = field(default_factory=list)
    #: its sender recorded it in doubt (its receiver died before confirming it); when the
    #: receiver's log says what became of it, that is the outcome and the doubt is resolved
    sender_in_doubt: bool = False
    #: the final outcomes its receiver recorded, in time order: more than one is a conflict
    receiver_outcomes: list[str] = field(default_factory=list)
    #: the OS pids of the processes that logged it sent, and received (None: no such event)
    sent_pid: int | None = None
    received_pid: int | None = None
    #: "died" only: it was the oldest message its incarnation had received and not
    #: finished, so the one being handled when it died (the others waited in its mailbox).
    #: A killed process loses the event lines of its last event-loop step: messages it
    #: handled in that very step show as "died" too, the oldest of them as this one
    died_handling: bool = False

    @property
    def resolved(self) -> bool:
        """Its sender recorded it in doubt, and the receiver's log says what became of it."""
        return self.sender_in_doubt and self.outcome != "in_doubt"


@dataclass
class ActorSummary:
    """One row of the per-actor summary."""

    actor: str
    received: int = 0
    sent: int = 0
    handled: int = 0
    failed: int = 0
    dead_lettered: int = 0
    #: received, then lost with the incarnation that died (killed, exited, hung)
    died: int = 0
    #: recorded in doubt by their senders, with nothing in this actor's log to resolve it
    in_doubt: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_depth: int | None = None
    restarts: int = 0
    #: total time in its handlers (handled and failed messages that say how long), in ms
    busy_ms: float | None = None
    #: incarnations that logged ``actor.started``
    starts: int = 0
    #: how its incarnations ended: reason -> how many
    exits: dict[str, int] = field(default_factory=dict)
    #: the run traced every message: False when tracing was off, and then the per-message
    #: figures (in, out, died, times, depth) are unknown rather than 0, and handled, failed
    #: and dead-lettered come from the counts its incarnations logged when they ended
    per_message: bool = True


class Run:
    """A run's merged events and its messages, joined by ``msg_id``."""

    def __init__(
        self, events: list[Event], *, run_id: str | None = None, runs: list[RunInfo] | None = None
    ) -> None:
        self.events = events
        #: the run shown, and every run its log directory holds (oldest first)
        self.run_id = run_id
        self.runs: list[RunInfo] = runs if runs is not None else _runs(events)
        started = next((e for e in events if e["event"] == "runtime.started"), None)
        #: whether per-message events were logged: only a ``runtime.started`` saying
        #: ``trace: false`` says they were not
        self.traced = started is None or bool(started.get("trace", True))
        self.messages: dict[str, Message] = {}
        self.start = events[0]["_t"] if events else 0.0
        self.end = events[-1]["_t"] if events else 0.0
        self._records: dict[str, list[Event]] = defaultdict(list)
        self._doubts: dict[str, Event] = {}
        #: (actor, pid) of a receiving process -> the msg_ids it received, in order
        self._received: dict[tuple[str, int], list[str]] = defaultdict(list)
        for event in events:
            self._join(event)
        self._resolve()
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
            if isinstance(event.get("pid"), int):
                message.sent_pid = event["pid"]
        elif name == "message.received":
            message.received_at = event["_t"]
            message.depth = event.get("depth")
            pid = event.get("pid")
            if isinstance(pid, int):
                message.received_pid = pid
                actor = str(event.get("actor") or message.receiver)
                self._received[(actor, pid)].append(message.msg_id)
        elif name == "message.dead_lettered" and event.get("reason") == _IN_DOUBT:
            # the sender's record: provisional until the receiver's log is read
            message.sender_in_doubt = True
            message.ask = message.ask or bool(event.get("ask"))
            self._doubts.setdefault(message.msg_id, event)
            if message.sender == "?" and event.get("source"):
                message.sender = str(event["source"])  # the process that logged it
        elif name in _OUTCOMES:
            message.receiver_outcomes.append(name.split(".", 1)[1])
            self._records[message.msg_id].append(event)
        elif name == "reply.received":
            message.replied_at = event["_t"]
            message.round_trip_s = event.get("round_trip_s")
            if "ok" in event:
                message.reply_ok = bool(event["ok"])

    def _resolve(self) -> None:
        """Give each message exactly one outcome: its receiver's word over its sender's."""
        for msg_id, records in self._records.items():
            # a later "dead_lettered" does not undo what the receiver did with it
            final = next((e for e in records if e["event"] != "message.dead_lettered"), records[0])
            message = self.messages[msg_id]
            message.outcome = final["event"].split(".", 1)[1]
            message.outcome_at = final["_t"]
            message.duration_s = final.get("duration_s")
            message.error_type = final.get("error_type")
            message.reason = final.get("reason")
        for exited in self.where("actor.exited"):
            pid = exited.get("pid")
            if not isinstance(pid, int) or not hard_death(str(exited.get("reason", ""))):
                continue
            unfinished = [
                self.messages[msg_id]
                for msg_id in self._received.get((str(exited["actor"]), pid), ())
                if self.messages[msg_id].outcome is None
            ]
            for i, message in enumerate(unfinished):
                message.outcome = "died"
                message.outcome_at = exited["_t"]
                message.reason = str(exited["reason"])
                message.error_type = exited.get("error_type")
                message.died_handling = i == 0
        for msg_id, doubt in self._doubts.items():
            message = self.messages[msg_id]
            if message.outcome is None:
                message.outcome = "in_doubt"
                message.outcome_at = doubt["_t"]
                message.reason = _IN_DOUBT

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
            elif m.outcome == "died":
                row.died += 1
            elif m.outcome == "in_doubt":
                row.in_doubt += 1
        busy: dict[str, float] = defaultdict(float)
        for m in self.messages.values():
            if m.receiver in rows and m.outcome in ("handled", "failed") and m.duration_s:
                busy[m.receiver] += m.duration_s * 1000
        for name, total in busy.items():
            rows[name].busy_ms = total
        for event in self.where("actor.restarted"):
            if event["actor"] in rows:
                rows[event["actor"]].restarts += 1
        for event in self.where("actor.started"):
            if event.get("actor") in rows:
                rows[event["actor"]].starts += 1
        for event in self.where("actor.exited"):
            if event.get("actor") in rows:
                exits = rows[event["actor"]].exits
                reason = str(event.get("reason", "?"))
                exits[reason] = exits.get(reason, 0) + 1
        if not self.traced:
            self._lifecycle_counts(rows)
        for name, samples in times.items():
            samples.sort()
            rows[name].p50_ms = statistics.median(samples)
            rows[name].p99_ms = samples[min(len(samples) - 1, int(0.99 * len(samples)))]
        return list(rows.values())

    def _lifecycle_counts(self, rows: dict[str, ActorSummary]) -> None:
        """Handled, failed and dead-lettered from the counts each incarnation logged at its end.

        Without tracing only failures and dead letters have events of their own; an
        incarnation that logged no counts (killed) is counted from those events.
        """
        counted: dict[tuple[str, int], Event] = {}
        for name in ("actor.exited", "actor.stopped"):  # the driver's word first
            for event in self.where(name):
                pid = event.get("pid")
                if isinstance(pid, int) and "handled" in event:
                    counted.setdefault((str(event.get("actor")), pid), event)
        for row in rows.values():
            row.per_message = False
            row.handled = row.failed = row.dead_lettered = 0
        for (actor, _), event in counted.items():
            if actor in rows:
                row = rows[actor]
                row.handled += int(event.get("handled") or 0)
                row.failed += int(event.get("failed") or 0)
                row.dead_lettered += int(event.get("dead_lettered") or 0)
        for msg_id, records in self._records.items():
            message = self.messages[msg_id]
            pid = records[0].get("pid")
            actor = str(records[0].get("actor") or message.receiver)
            if actor not in rows or (actor, pid) in counted:
                continue
            if message.outcome == "failed":
                rows[actor].failed += 1
            elif message.outcome == "dead_lettered":
                rows[actor].dead_lettered += 1

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

    def hang_of(self, exited: Event) -> Event | None:
        """The ``actor.hung`` event of the incarnation that ``exited`` ended, if it hung.

        It says why it was judged hung, and holds its stack dump (``stack``: its threads'
        and its asyncio tasks' stacks).
        """
        keys = ("actor", "actor_id", "pid", "incarnation")
        return next(
            (
                e
                for e in self.where("actor.hung")
                if all(e.get(k) == exited.get(k) for k in keys if k in exited)
            ),
            None,
        )

    def unaccounted(self) -> list[Message]:
        """Messages sent (tells and asks) that nothing says what became of.

        A message its sender recorded in doubt is accounted for: that record is the honest
        answer when the receiver's log has none (``in_doubt()``).
        """
        return [m for m in self.messages.values() if m.sent_at is not None and m.outcome is None]

    def unfinished(self) -> list[Message]:
        """Messages received that neither ended handled, failed, dead-lettered nor died."""
        return [
            m for m in self.messages.values() if m.received_at is not None and m.outcome is None
        ]

    def in_doubt(self) -> list[Message]:
        """Messages in doubt, unresolved: their sender's record is all the logs say of them."""
        return [m for m in self.messages.values() if m.outcome == "in_doubt"]

    def resolved(self) -> list[Message]:
        """Messages their sender recorded in doubt whose receiver's log says what became of them.

        Each has its receiver's outcome; the sender's record is not a second one.
        """
        return [m for m in self.messages.values() if m.resolved]

    def died_with(self, exited: Event) -> list[Message]:
        """The messages lost with the incarnation of ``exited`` (an ``actor.exited`` event).

        In the order it received them: the first is the one it was handling (but see
        ``Message.died_handling``).
        """
        received = self._received.get((str(exited.get("actor")), exited.get("pid", -1)), [])
        return [
            m
            for m in (self.messages[msg_id] for msg_id in received)
            if m.outcome == "died" and m.outcome_at == exited["_t"]
        ]

    def conflicts(self) -> list[Message]:
        """Messages with more than one final outcome from their receiver (handled twice...)."""
        return [m for m in self.messages.values() if len(m.receiver_outcomes) > 1]

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


def load_run(run_dir: str | Path, run_id: str | None = None) -> Run:
    """Read and join every log of a run (the directory of its ``.jsonl`` files).

    A directory reused by several runs holds them all; the one whose ``runtime.started``
    is the latest is read, or the one ``run_id`` names (``Run.runs`` lists them).

    Raises:
        ValueError: no run ``run_id`` in the directory.
    """
    events = merge_logs(run_dir)
    runs = _runs(events)
    if run_id is None:
        run_id = runs[-1].run_id if runs else None
    elif run_id not in {r.run_id for r in runs}:
        found = ", ".join(r.run_id for r in runs) or "none"
        raise ValueError(f"no run {run_id!r} in {run_dir} (runs found: {found}); --runs lists them")
    if run_id is not None and len(runs) > 1:
        events = [e for e in events if e.get("run_id", run_id) == run_id]
    return Run(events, run_id=run_id, runs=runs)
