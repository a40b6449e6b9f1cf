"""A run as Chrome trace-event JSON, for the Perfetto UI (ui.perfetto.dev) or chrome://tracing.

One track per process (the script's and each actor incarnation's), a span per message
handled, and a flow arrow from each send to the span of its receipt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._run import Message, Run

__all__ = ["chrome_trace", "write_chrome_trace"]

#: outcomes whose time is the receiver's own: the end of the message's span
_RECEIVER_ENDS = ("handled", "failed", "dead_lettered", "bounced", "died")


def _span(m: Message) -> tuple[float, float] | None:
    """When the receiver started and ended with ``m`` (seconds), if it received it."""
    if m.received_at is None:
        return None
    end = m.outcome_at if m.outcome in _RECEIVER_ENDS and m.outcome_at is not None else None
    if end is None:
        return m.received_at, m.received_at
    start = end - m.duration_s if m.duration_s is not None else m.received_at
    # the handler cannot start before the message arrived, nor end before it started
    start = max(start, m.received_at)
    return start, max(end, start)


def chrome_trace(run: Run) -> dict[str, Any]:
    """The trace-event document of ``run``: ``{"traceEvents": [...]}``, times in µs."""

    def us(t: float) -> float:
        return round((t - run.start) * 1e6, 3)

    names: dict[int, str] = {}
    for event in run.events:
        pid = event.get("pid")
        if isinstance(pid, int) and pid not in names:
            names[pid] = str(event.get("actor") or event.get("source") or "?")
    out: list[dict[str, Any]] = []
    for order, (pid, name) in enumerate(names.items()):
        out.append(
            {"ph": "M", "name": "process_name", "pid": pid, "tid": pid,
             "args": {"name": f"{name} (pid {pid})"}}
        )  # fmt: skip
        out.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": pid,
                    "args": {"sort_index": order}})  # fmt: skip
        out.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": pid,
                    "args": {"name": name}})  # fmt: skip
    flow_id = 0
    for m in sorted(run.messages.values(), key=lambda m: m.sent_at or m.received_at or 0.0):
        span = _span(m)
        args = {
            "msg_id": m.msg_id,
            "trace_id": m.trace_id,
            "parent_id": m.parent_id,
            "sender": m.sender,
            "receiver": m.receiver,
            "outcome": m.outcome,
            "error_type": m.error_type,
            "reason": m.reason,
        }
        if span is not None and m.received_pid is not None:
            start, end = span
            out.append(
                {"ph": "X", "name": m.msg_type, "cat": m.outcome or "unfinished",
                 "ts": us(start), "dur": round((end - start) * 1e6, 3),
                 "pid": m.received_pid, "tid": m.received_pid, "args": args}
            )  # fmt: skip
            if m.sent_at is not None and m.sent_pid is not None:
                flow_id += 1
                sent = us(m.sent_at)
                out.append(
                    {"ph": "s", "name": m.msg_type, "cat": "message", "id": flow_id,
                     "ts": sent, "pid": m.sent_pid, "tid": m.sent_pid,
                     "args": {"msg_id": m.msg_id}}
                )  # fmt: skip
                # bound to the receiver's span; never before the send (clocks of two
                # processes may disagree by a little)
                out.append(
                    {"ph": "f", "bp": "e", "name": m.msg_type, "cat": "message", "id": flow_id,
                     "ts": max(us(start), sent), "pid": m.received_pid, "tid": m.received_pid,
                     "args": {"msg_id": m.msg_id}}
                )  # fmt: skip
        elif m.sent_at is not None and m.sent_pid is not None:
            # sent and never received: a mark on the sender's track, found by search
            out.append(
                {"ph": "i", "s": "t", "name": f"{m.msg_type} (not received)", "cat": "message",
                 "ts": us(m.sent_at), "pid": m.sent_pid, "tid": m.sent_pid, "args": args}
            )  # fmt: skip
    for event in run.events:
        if event["event"] not in ("actor.exited", "actor.restarted", "actor.hung"):
            continue
        pid = event.get("pid")
        if not isinstance(pid, int) or pid not in names:
            continue
        keys = ("actor", "incarnation", "reason", "exit_code", "error_type")
        out.append(
            {"ph": "i", "s": "p", "name": event["event"], "cat": "lifecycle",
             "ts": us(event["_t"]), "pid": pid, "tid": pid,
             "args": {k: event[k] for k in keys if k in event}}
        )  # fmt: skip
    return {"traceEvents": out, "displayTimeUnit": "ms"}


def write_chrome_trace(run: Run, path: str | Path) -> Path:
    """Write ``run`` as trace-event JSON at ``path``; open it at ui.perfetto.dev."""
    path = Path(path)
    path.write_text(json.dumps(chrome_trace(run)))
    return path
