"""Read a run's logs back: what every message did, as tables, trees and pictures.

``python -m runtime.trace RUN_DIR`` prints a summary per actor, the flow matrix and the
errors with their causal chains, with where a hung actor's code was (``run.hang_of``);
``--trace ID``, ``--mermaid FILE`` and ``--plot FILE.png`` and ``--chrome FILE.json`` (for
ui.perfetto.dev) show more; ``--runs`` lists the runs of a reused log directory and ``--run
ID`` picks one (default: the latest). From Python::

    from runtime.trace import load_run
    run = load_run(rt.log_dir)
    run.summary(), run.flow(), run.chain(msg_id), run.unaccounted()

Each message has exactly one ``outcome`` (``OUTCOMES``): what its receiver's log says wins
over its sender's provisional "in doubt" record (``run.resolved()``); ``run.in_doubt()``
lists the messages only their sender's record speaks of.
"""

from __future__ import annotations

from ._chrome import chrome_trace as chrome_trace
from ._chrome import write_chrome_trace as write_chrome_trace
from ._mermaid import sequence_diagram as sequence_diagram
from ._plot import MissingPlotLibraryError as MissingPlotLibraryError
from ._plot import plot_timeline as plot_timeline
from ._report import render as render
from ._run import OUTCOMES as OUTCOMES
from ._run import ActorSummary as ActorSummary
from ._run import Message as Message
from ._run import Run as Run
from ._run import RunInfo as RunInfo
from ._run import list_runs as list_runs
from ._run import load_run as load_run
from ._run import merge_logs as merge_logs

__all__ = [
    "OUTCOMES",
    "ActorSummary",
    "Message",
    "MissingPlotLibraryError",
    "Run",
    "RunInfo",
    "chrome_trace",
    "list_runs",
    "load_run",
    "merge_logs",
    "plot_timeline",
    "render",
    "sequence_diagram",
    "write_chrome_trace",
]
