"""A Mermaid sequence diagram of a run (or of one trace)."""

from __future__ import annotations

import re

from ._run import Run

__all__ = ["sequence_diagram"]

_UNSAFE = re.compile(r"[^\w .:\-/()=]")


def _label(text: str) -> str:
    # Mermaid ends a message at ";" or "#"; keep labels to safe characters
    return _UNSAFE.sub("_", text)[:60]


def sequence_diagram(run: Run, *, trace_id: str | None = None, limit: int = 300) -> str:
    """Return ``sequenceDiagram`` text: messages, replies, failures, crashes and restarts."""
    messages = (
        run.trace(trace_id)
        if trace_id
        else sorted(
            (m for m in run.messages.values() if m.sent_at is not None),
            key=lambda m: m.sent_at or 0.0,
        )
    )
    shown = messages[:limit]
    names = [n for n in run.actors() if any(n in (m.sender, m.receiver) for m in shown)]
    ids = {name: f"p{i}" for i, name in enumerate(names)}
    lines = ["sequenceDiagram"]
    lines.extend(f"    participant {ids[name]} as {_label(name)}" for name in names)
    steps: list[tuple[float, int, str]] = []
    for order, m in enumerate(shown):
        if m.sender not in ids or m.receiver not in ids:
            continue
        a, b = ids[m.sender], ids[m.receiver]
        arrow = "-x" if m.outcome in ("dead_lettered", "died") else "->>"
        text = _label(m.msg_type + (" (ask)" if m.ask else ""))
        steps.append((m.sent_at or 0.0, order, f"    {a}{arrow}{b}: {text}"))
        notes = {
            "failed": f"failed {_label(m.error_type or '')}",
            "dead_lettered": f"dead letter ({_label(m.reason or '')})",
            "died": f"died with it ({_label(m.reason or '')})",
            "in_doubt": "in doubt (died before confirming it)",
        }
        if m.outcome in notes:
            note = f"    Note over {b}: {notes[m.outcome]}"
            steps.append(((m.outcome_at or 0.0), order, note))
        if m.ask and m.replied_at is not None:
            steps.append((m.replied_at, order, f"    {b}-->>{a}: reply"))
    if shown:
        first = shown[0].sent_at or 0.0
        last = max((m.outcome_at or m.sent_at or 0.0) for m in shown)
        for event in run.crashes():
            if event["actor"] in ids and first <= event["_t"] <= last:
                note = f"    Note over {ids[event['actor']]}: crashed ({_label(event['reason'])})"
                steps.append((event["_t"], -1, note))
        steps.extend(
            (event["_t"], -1, f"    Note over {ids[event['actor']]}: restarted")
            for event in run.where("actor.restarted")
            if event["actor"] in ids and first <= event["_t"] <= last
        )
    steps.sort(key=lambda s: (s[0], s[1]))
    lines.extend(text for _, _, text in steps)
    if len(messages) > limit:
        anchor = ids[names[0]] if names else "p0"
        lines.append(f"    Note over {anchor}: {len(messages) - limit} more messages not shown")
    return "\n".join(lines) + "\n"
