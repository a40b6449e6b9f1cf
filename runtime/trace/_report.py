"""The viewer's tables and trees, drawn with rich."""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ._run import Event, Message, Run
from ._stacks import Frame, hang_stacks, is_yours, short_path

__all__ = ["error_report", "flow_table", "render", "summary_table", "trace_tree"]

#: what a per-message figure shows when tracing was off: unknown, not zero
UNKNOWN = "\u2013"  # an en dash: not "-", which says "none"
TRACING_OFF_HINT = (
    "tracing was off in this run: in, out, died, p50/p99, busy and max depth need per-message "
    f"events and show {UNKNOWN}; handled, failed and dead come from what each incarnation "
    "counted when it ended. Turn tracing on with Runtime(trace=True), ACTORS_TRACE=1 or a "
    "demo's --trace"
)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _exits(exits: dict[str, int]) -> str:
    return ", ".join(reason if n == 1 else f"{reason} ({n})" for reason, n in exits.items())


def summary_table(run: Run) -> Table:
    table = Table(
        title=(
            "Actors: messages in and out, outcomes, handle and busy time, deepest mailbox, "
            "incarnations"
        ),
        title_justify="left",
    )
    table.add_column("actor", no_wrap=True)
    for name in (
        "in",
        "out",
        "handled",
        "failed",
        "dead",
        "died",
        "in doubt",
        "p50 ms",
        "p99 ms",
        "busy ms",
        "max depth",
        "starts",
        "restarts",
    ):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("exits", no_wrap=True)
    for row in run.summary():
        traced = row.per_message

        def known(text: str, traced: bool = traced) -> str:
            return text if traced else UNKNOWN

        table.add_row(
            row.actor,
            known(str(row.received)),
            known(str(row.sent)),
            str(row.handled),
            str(row.failed),
            str(row.dead_lettered),
            known(str(row.died)),
            str(row.in_doubt),
            known(_ms(row.p50_ms)),
            known(_ms(row.p99_ms)),
            known(_ms(row.busy_ms)),
            known("-" if row.max_depth is None else str(row.max_depth)),
            str(row.starts) if row.starts or row.exits else "-",
            str(row.restarts),
            _exits(row.exits),
        )
    return table


def flow_table(run: Run) -> RenderableType:
    if not run.traced:
        return Text(f"Flow: {UNKNOWN} (needs tracing on: sends are not logged without it)")
    flow = run.flow()
    names = run.actors()
    senders = [n for n in names if any(s == n for s, _ in flow)]
    receivers = [n for n in names if any(r == n for _, r in flow)]
    table = Table(title="Flow: messages sent, sender → receiver", title_justify="left")
    table.add_column("sender \\ receiver", no_wrap=True)
    for name in receivers:
        table.add_column(name, justify="right", no_wrap=True)
    for sender in senders:
        table.add_row(sender, *(str(flow.get((sender, r), "")) for r in receivers))
    return table


def _step(m: Message) -> str:
    return f"{m.sender} → {m.receiver} {m.msg_type} ({m.msg_id})"


def _ended(event: Event) -> str:
    detail = f" {event['error_type']}" if event.get("error_type") else ""
    return (
        f"✗ {event['actor']} incarnation {event.get('incarnation', '?')} ended: "
        f"{event['reason']}{detail}"
    )


def error_report(run: Run) -> RenderableType:
    failures = run.failures()
    crashes = run.crashes()
    dead = [m for m in run.messages.values() if m.outcome == "dead_lettered"]
    doubtful = run.in_doubt()
    died = [m for m in run.messages.values() if m.outcome == "died"]
    resolved = len(run.resolved())
    if not failures and not crashes and not dead and not doubtful and not resolved:
        return Text("Errors: none")
    tree = Tree(
        Text(
            f"Errors: {len(failures)} failed, {len(dead)} dead-lettered, "
            f"{len(doubtful)} in doubt (unresolved), {len(died)} died with their receiver, "
            f"{len(crashes)} incarnations ended by failing"
        )
    )
    for m in failures:
        chain = run.chain(m.msg_id)
        branch = tree.add(Text(f"✗ {m.receiver}: {m.error_type} handling {_step(m)}", "red"))
        for cause in chain[:-1]:
            branch.add(Text(f"caused by {_step(cause)}"))
    reasons: dict[str, int] = {}
    for m in dead:
        key = f"{m.receiver} ({m.reason})"
        reasons[key] = reasons.get(key, 0) + 1
    for key, count in sorted(reasons.items()):
        tree.add(Text(f"dead-lettered at {key}: {count}", "yellow"))
    unknown: dict[str, int] = {}
    for m in doubtful:
        unknown[m.receiver] = unknown.get(m.receiver, 0) + 1
    for receiver, count in sorted(unknown.items()):
        tree.add(
            Text(
                f"in doubt at {receiver} (it died before confirming; its log does not say "
                f"whether it handled them): {count}",
                "yellow",
            )
        )
    if resolved:
        tree.add(Text(f"in doubt at their senders, resolved from the receivers' logs: {resolved}"))
    for event in crashes:
        branch = tree.add(Text(_ended(event), "red"))
        lost = run.died_with(event)
        if lost and lost[0].died_handling:
            branch.add(Text(f"while handling {_step(lost[0])}"))
            lost = lost[1:]
        if lost:
            branch.add(Text(f"with {len(lost)} more received and unfinished"))
        hung = run.hang_of(event) if event.get("reason") == "hung" else None
        if hung is not None:
            _add_hang(branch, hung)
    return tree


def _add_hang(branch: Tree, hung: Event) -> None:
    """Why an incarnation was judged hung, and where the user's code was then."""
    if hung.get("why"):
        branch.add(Text(f"hung: {hung['why']}"))
    stacks = hang_stacks(hung)
    if not stacks:
        return
    where = branch.add(
        Text("where your code was (every thread and task: --merged, event actor.hung, key stack)")
    )
    shown: set[tuple[Frame, ...]] = set()
    for stack in stacks:
        if stack.kind == "thread" and not stack.runs_the_loop:
            continue  # the runtime's and the user's other threads: in the whole dump
        yours = [i for i, f in enumerate(stack.frames) if is_yours(f)]
        frames = tuple(stack.frames[i] for i in yours)
        if not yours or frames in shown:  # a blocked task shows in its thread too
            continue
        shown.add(frames)
        if stack.kind == "thread":
            label = f"thread {stack.name}, the event loop's"
        elif stack.running:
            label = f"task {stack.name} (running: blocking its thread)"
        else:
            label = f"task {stack.name}"
        node = where.add(Text(label))
        for f in frames:
            node.add(Text(f"{short_path(f.file)}:{f.line} in {f.function}", "bold"))
        after = yours[-1] + 1
        if after < len(stack.frames):
            inner = stack.frames[after]
            node.add(Text(f"→ in {inner.function} ({short_path(inner.file)}:{inner.line})", "dim"))
        elif stack.awaiting:
            node.add(Text(f"→ awaiting a {stack.awaiting}", "dim"))
    if not shown:
        where.add(Text("no frame of your code in the dump", "yellow"))


def _outcome(m: Message) -> str:
    if m.outcome == "handled" and m.duration_s is not None:
        return f"handled in {m.duration_s * 1000:.3f} ms"
    if m.outcome == "failed":
        return f"failed: {m.error_type}"
    if m.outcome == "dead_lettered":
        return f"dead_lettered: {m.reason}"
    if m.outcome == "died":
        when = "while handling it" if m.died_handling else "with it received, unfinished"
        return f"died: {m.receiver} ended {m.reason} {when}"
    if m.outcome == "in_doubt":
        return f"in doubt: {m.receiver} died before confirming it"
    return m.outcome or "?"


def trace_tree(run: Run, trace_id: str) -> RenderableType:
    messages = run.trace(trace_id)
    if not messages:
        return Text(f"no messages in trace {trace_id!r}; trace ids are in message.sent events")
    by_id = {m.msg_id: m for m in messages}
    tree = Tree(Text(f"trace {trace_id}"))
    nodes: dict[str, Tree] = {}
    for m in messages:
        label = f"{_step(m)} [{_outcome(m)}]"
        if m.ask and m.round_trip_s is not None:
            if m.outcome in ("died", "in_doubt", "dead_lettered") and not m.reply_ok:
                label += f", the asker got an error after {m.round_trip_s * 1000:.3f} ms"
            else:
                label += f", answered after {m.round_trip_s * 1000:.3f} ms"
        parent = nodes.get(m.parent_id) if m.parent_id in by_id else None
        nodes[m.msg_id] = (parent or tree).add(Text(label))
    return tree


def which_run(run: Run) -> str | None:
    """A line naming the run shown, when its log directory holds several."""
    if len(run.runs) < 2:
        return None
    shown = next((r for r in run.runs if r.run_id == run.run_id), None)
    started = f" started {shown.started_iso}" if shown else ""
    latest = " (the latest)" if run.runs[-1].run_id == run.run_id else ""
    return (
        f"run {run.run_id}{started}{latest}: this log directory holds {len(run.runs)} runs; "
        "--runs lists them, --run ID shows another"
    )


def render(run: Run, console: Console, trace_id: str | None = None) -> None:
    note = which_run(run)
    if note:
        console.print(Text(note, "bold"))
    if trace_id is not None:
        console.print(trace_tree(run, trace_id))
        return
    span = run.end - run.start
    console.print(
        f"{len(run.events)} events, {len(run.messages)} messages, {span:.3f} s",
        highlight=False,
    )
    if not run.traced:
        console.print(Text(TRACING_OFF_HINT, "yellow"))
    console.print(Group(summary_table(run), flow_table(run), error_report(run)))
