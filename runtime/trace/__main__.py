"""``python -m runtime.trace RUN_DIR``: what every message of a run did."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import orjson
from rich.console import Console

from ..observe.logging import default_log_root
from . import (
    MissingPlotLibraryError,
    list_runs,
    load_run,
    merge_logs,
    plot_timeline,
    render,
    write_chrome_trace,
)
from ._mermaid import sequence_diagram


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.trace",
        description="Summarise a run from its logs: per actor, sender → receiver, errors.",
    )
    parser.add_argument(
        "run_dir",
        nargs="?",
        help="the run's log directory (default: the latest run under the default log root)",
    )
    parser.add_argument("--trace", metavar="ID", help="show one trace as a tree")
    parser.add_argument("--mermaid", metavar="FILE", help="write a Mermaid sequence diagram")
    parser.add_argument("--plot", metavar="FILE.png", help="draw a timeline (needs matplotlib)")
    parser.add_argument(
        "--chrome", metavar="FILE.json", help="write a trace for ui.perfetto.dev / chrome://tracing"
    )
    parser.add_argument(
        "--run", metavar="ID", help="the run to show, when the directory holds several (latest)"
    )
    parser.add_argument("--runs", action="store_true", help="list the runs in the directory")
    parser.add_argument("--limit", type=int, default=300, help="messages in the diagram (300)")
    parser.add_argument("--merged", action="store_true", help="print all events as JSON lines")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir) if args.run_dir else default_log_root() / "latest"
    # a pipe or a file gets the full tables rather than the 80 columns of a dumb terminal
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    try:
        if args.runs:
            for info in list_runs(run_dir):
                tracing = {True: "traced", False: "tracing off", None: "tracing ?"}[info.trace]
                console.print(
                    f"{info.run_id}  started {info.started_iso}  {tracing}  {info.events} events"
                )
            return 0
        if args.merged:
            out = sys.stdout.buffer
            run_id = args.run or load_run(run_dir).run_id
            for event in merge_logs(run_dir, run_id):
                event.pop("_t", None)
                out.write(orjson.dumps(event) + b"\n")
            return 0
        run = load_run(run_dir, args.run)
    except (FileNotFoundError, ValueError) as exc:
        sys.stderr.write(f"python -m runtime.trace: {exc}\n")
        return 2
    if args.trace and not run.trace(args.trace):
        sys.stderr.write(
            f"python -m runtime.trace: no trace {args.trace!r} in {run_dir}; a trace id is "
            "the msg_id of the message that started it (see `--merged`, key trace_id)\n"
        )
        return 2
    if not run.messages and not args.trace and run.traced:
        console.print(
            "no message events in these logs: run with tracing on "
            "(Runtime(trace=True), ACTORS_TRACE=1 or a demo's --trace)"
        )
    render(run, console, args.trace)
    if args.mermaid:
        Path(args.mermaid).write_text(sequence_diagram(run, trace_id=args.trace, limit=args.limit))
        console.print(f"wrote {args.mermaid}")
    if args.chrome:
        write_chrome_trace(run, args.chrome)
        console.print(f"wrote {args.chrome} (open it at https://ui.perfetto.dev)")
    if args.plot:
        try:
            plot_timeline(run, args.plot)
        except MissingPlotLibraryError as exc:
            sys.stderr.write(f"python -m runtime.trace: {exc}\n")
            return 3
        console.print(f"wrote {args.plot}")
    return 0


def run_cli() -> int:
    """``main``, ending quietly when the reader of its output goes away (``| head``)."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # nothing more can be written: point stdout at /dev/null so that the interpreter's
        # own flush at exit does not fail again, and end as a program killed by SIGPIPE
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return code


if __name__ == "__main__":
    sys.exit(run_cli())
