"""A timeline picture of a run: one lane per actor, messages between lanes, crashes marked."""

from __future__ import annotations

from pathlib import Path

from ._run import Run

__all__ = ["MissingPlotLibraryError", "plot_timeline"]


#: the colour of a message's line, by outcome (others: grey)
_COLORS = {
    "failed": "tab:red",
    "dead_lettered": "tab:orange",
    "died": "tab:red",
    "in_doubt": "tab:purple",
}


class MissingPlotLibraryError(RuntimeError):
    """matplotlib is not installed."""

    def __init__(self) -> None:
        super().__init__(
            "--plot needs matplotlib, an optional extra: pip install 'actors-runtime[plot]' "
            "(or pip install matplotlib)"
        )


def plot_timeline(run: Run, path: str | Path, *, limit: int = 3000) -> Path:
    """Draw the run into a PNG at ``path``; return the path.

    Raises:
        MissingPlotLibraryError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingPlotLibraryError() from None
    names = run.actors()
    lane = {name: i for i, name in enumerate(names)}
    t0 = run.start
    fig, ax = plt.subplots(figsize=(12, 1.2 + 0.6 * len(names)), dpi=110)
    messages = sorted(
        (m for m in run.messages.values() if m.sent_at is not None),
        key=lambda m: m.sent_at or 0.0,
    )
    step = max(1, len(messages) // limit)
    for m in messages[::step]:
        if m.sender not in lane or m.receiver not in lane or m.sent_at is None:
            continue
        end = m.received_at or m.outcome_at
        if end is None:
            continue
        color = _COLORS.get(m.outcome or "", "0.6")
        ax.plot(
            [m.sent_at - t0, end - t0],
            [lane[m.sender], lane[m.receiver]],
            color=color,
            linewidth=0.6,
            alpha=0.5 if color == "0.6" else 0.9,
        )
    for outcome, color, marker, label in (
        ("handled", "tab:blue", "|", "handled"),
        ("failed", "tab:red", "o", "failed"),
        ("dead_lettered", "tab:orange", "x", "dead-lettered"),
        ("died", "tab:red", "x", "died with its receiver"),
        ("in_doubt", "tab:purple", "x", "in doubt"),
    ):
        xs = [m.outcome_at - t0 for m in messages if m.outcome == outcome and m.outcome_at]
        ys = [lane.get(m.receiver, -1) for m in messages if m.outcome == outcome and m.outcome_at]
        if xs:
            ax.scatter(xs, ys, s=12, color=color, marker=marker, label=label, zorder=3)
    crashes = [e for e in run.crashes() if e["actor"] in lane]
    if crashes:
        ax.scatter(
            [e["_t"] - t0 for e in crashes],
            [lane[e["actor"]] for e in crashes],
            s=140,
            color="red",
            marker="X",
            label="crashed",
            zorder=4,
        )
    restarts = [e for e in run.where("actor.restarted") if e["actor"] in lane]
    if restarts:
        ax.scatter(
            [e["_t"] - t0 for e in restarts],
            [lane[e["actor"]] for e in restarts],
            s=70,
            color="tab:green",
            marker="^",
            label="restarted",
            zorder=4,
        )
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the run started")
    ax.set_title(f"{len(messages)} messages between {len(names)} actors")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper right", fontsize="small", ncols=5)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out
