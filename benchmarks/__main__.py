"""The benchmark suite: every speed figure next to a raw baseline from the same run.

    python -m benchmarks [--quick] [--json PATH]      (or: make bench)
    python -m benchmarks --backend ray [--quick] [--json PATH]   (benchmarks/bench_ray.py)

Each figure is measured through the public API and reported with a baseline measured in
the same run on the same machine, and their ratio: absolute times on shared 2-core
machines swing by 2x, ratios much less. Throughput figures and the counter demo are the
median of ``REPS`` runs, ours and the baselines alike, and list each run's ratio to the
baseline's run beside it (``runs``: how far one run strays). ``--quick`` (under a minute) uses
small sizes and is what CI runs, as a smoke test: no test asserts a timing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from benchmarks import bench_core, bench_shared
from benchmarks._actors import Driver
from benchmarks._baselines import pipe_sender
from benchmarks._figure import Figure, fmt
from benchmarks._figure import pairs as _pairs
from benchmarks.bench_core import BusySink, Echo, Sink
from runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
#: throughput figures are the median of this many runs, ours and the baselines alike
REPS = 5
#: loop turns of work per message in the busy handler's fan-in (about 2 µs here): what
#: fan-in costs once the receiver does some work, as real handlers do
HANDLER_WORK = 250

FULL = {
    "asks": 2000,
    "tells": 50_000,
    "spawns": 10,
    "fleet": 50,
    "mib": 100,
    "handoffs": 5,
    "kills": 20,
    "count": 50_000_000,
    "trace_tells": 30_000,
}
QUICK = {
    "asks": 200,
    "tells": 5_000,
    "spawns": 3,
    "fleet": 10,
    "mib": 16,
    "handoffs": 2,
    "kills": 3,
    "count": 2_000_000,
    "trace_tells": 3_000,
}


def _p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- measurements ----------------------------------------------------------------------------


async def _in_runtime(sizes: dict[str, int], logs: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with Runtime(log_dir=logs, trace=False, hang_timeout=None) as rt:
        echo = await rt.spawn(Echo)
        sink = await rt.spawn(Sink)
        driver = await rt.spawn(Driver)
        # ask round trips, from the script and from another actor
        for i in range(50):
            await echo.ask(i)
        times = []
        for i in range(sizes["asks"]):
            started = time.perf_counter()
            await echo.ask(i)
            times.append(time.perf_counter() - started)
        out["ask_rt"] = times
        out["ask_aa"] = await driver.ask(("asks", echo, 50, sizes["asks"]), timeout=300)
        # tell throughput, script -> actor and actor -> actor, and fan-in: the median of
        # REPS runs each (the Pipe baselines likewise), as one run is at the mercy of one
        # scheduling hiccup on these machines; each rep runs the Pipe baselines between
        # ours, so that the machine's drift over a run hits both sides
        n = sizes["tells"]
        drivers = [await rt.spawn(Driver) for _ in range(4)]
        busy = await rt.spawn(BusySink, HANDLER_WORK)

        async def drive(d: Any, target: Any, begun: list[float]) -> None:
            begun.append(await d.ask(("tells", target, n // 4), timeout=300))

        async def senders_on_cpu(senders: list[Any]) -> float:
            return float(sum([(await d.ask("sched"))[0] for d in senders]))

        async def one_to_one(target: Any = sink) -> tuple[float, float, float, float, float]:
            """Driver -> sink: msg/s; the sink's seconds on a CPU, waiting; elapsed; and the
            driver's seconds on a CPU."""
            sent0 = await senders_on_cpu([driver])
            before, (on0, wait0) = await target.ask("sched")
            begun = await driver.ask(("tells", target, n), timeout=300)
            after, (on1, wait1) = await target.ask("sched", timeout=300)
            # perf_counter is CLOCK_MONOTONIC on Linux: the actor's clock compares with ours
            elapsed = time.perf_counter() - begun
            sent = await senders_on_cpu([driver]) - sent0
            return (after - before) / elapsed, on1 - on0, wait1 - wait0, elapsed, sent

        async def fan_in(target: Any = sink) -> tuple[float, float, float, float, float]:
            """The four drivers -> sink at once; the same figures."""
            sent0 = await senders_on_cpu(drivers)
            before, (on0, wait0) = await target.ask("sched")
            begun: list[float] = []
            async with anyio.create_task_group() as tg:
                for d in drivers:
                    tg.start_soon(drive, d, target, begun)
            after, (on1, wait1) = await target.ask("sched", timeout=300)
            # from the first driver's start, as one_to_one times from its driver's
            elapsed = time.perf_counter() - min(begun)
            sent = await senders_on_cpu(drivers) - sent0
            return (after - before) / elapsed, on1 - on0, wait1 - wait0, elapsed, sent

        rates: dict[str, list[float]] = {
            "tell_rt": [],
            "tell_aa": [],
            "fan_in": [],
            "pipe_tell": [],
            "pipe_fan_in": [],
            "busy_aa": [],
            "busy_fan_in": [],
        }
        # how the 1->1 and fan-in runs spent the CPUs (the Linux scheduler's accounting):
        # the receiver's seconds on a CPU and runnable but waiting for one, the elapsed
        # seconds, and the senders' seconds on a CPU
        cpu = {"aa": [0.0, 0.0, 0.0, 0.0], "fan_in": [0.0, 0.0, 0.0, 0.0]}
        for _ in range(REPS):
            started = time.perf_counter()
            for i in range(n):
                await sink.tell(i)
            await sink.ask("count", timeout=300)
            rates["tell_rt"].append(n / (time.perf_counter() - started))
            # (in a thread: the runtime's loop keeps serving its actors meanwhile)
            rates["pipe_tell"].append(await anyio.to_thread.run_sync(bench_core._base_tell, n))
            rate, *spent = await one_to_one()
            rates["tell_aa"].append(rate)
            _add(cpu["aa"], *spent)
            rate, *spent = await fan_in()
            rates["fan_in"].append(rate)
            _add(cpu["fan_in"], *spent)
            rates["pipe_fan_in"].append(await anyio.to_thread.run_sync(_pipe_fan_in, n))
            rates["busy_aa"].append((await one_to_one(busy))[0])
            rates["busy_fan_in"].append((await fan_in(busy))[0])
        # the same two runs with every process involved on one CPU, where both are bound by
        # CPU time alone: what fan-in costs per message, apart from sharing two cores
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if len(cpus) > 1:
            pids = [await ref.ask("pid") for ref in (sink, driver, *drivers)]
            rates["one_cpu_aa"], rates["one_cpu_fan_in"] = [], []
            try:
                for pid in (os.getpid(), *pids):
                    os.sched_setaffinity(pid, cpus[:1])
                for _ in range(REPS):
                    rates["one_cpu_aa"].append((await one_to_one())[0])
                    rates["one_cpu_fan_in"].append((await fan_in())[0])
            finally:
                for pid in (os.getpid(), *pids):
                    os.sched_setaffinity(pid, cpus)
        out.update({key: statistics.median(values) for key, values in rates.items()})
        out["runs"] = rates
        for key, (on, waiting, elapsed, sent) in cpu.items():
            out[f"cpu_{key}"] = on / elapsed
            out[f"wait_{key}"] = waiting / elapsed
            out[f"cpus_{key}"] = (on + sent) / elapsed  # CPUs kept busy by the whole run
        # spawn-to-ready, one at a time, and a fleet at once
        times = []
        for _ in range(sizes["spawns"]):
            started = time.perf_counter()
            ref = await rt.spawn(Echo)
            times.append(time.perf_counter() - started)
            await rt.stop(ref)
        out["spawn"] = times
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(sizes["fleet"]):
                tg.start_soon(rt.spawn, Echo)
        out["fleet"] = time.perf_counter() - started
    return out


def _add(totals: list[float], *values: float) -> None:
    for i, value in enumerate(values):
        totals[i] += value


def _pipe_fan_in(n: int) -> float:
    ctx = multiprocessing.get_context("forkserver")
    pipes = []
    procs = []
    started = time.perf_counter()
    for _ in range(4):
        ours, theirs = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=pipe_sender, args=(theirs, n // 4), daemon=True)
        proc.start()
        theirs.close()  # so that a sender that dies gives EOF, not a hang
        procs.append(proc)
        pipes.append(ours)
    got = 0
    open_pipes = list(pipes)
    while open_pipes:
        for conn in wait(open_pipes):
            assert isinstance(conn, Connection)
            try:
                message = conn.recv()
            except EOFError:
                open_pipes.remove(conn)
                continue
            if message is None:
                open_pipes.remove(conn)
            else:
                got += 1
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join()
    if got != n // 4 * 4:
        raise RuntimeError(f"Pipe fan-in got {got} of {n // 4 * 4} messages")
    return got / elapsed


def _fleet_baseline(count: int) -> float:
    ctx = multiprocessing.get_context("forkserver")
    started = time.perf_counter()
    procs, readers = [], []
    for _ in range(count):
        reader, writer = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=bench_core._ready_child, args=(writer,), daemon=True)
        proc.start()
        writer.close()
        procs.append(proc)
        readers.append(reader)
    for reader in readers:
        reader.recv()
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join()
    return elapsed


def _counter(count: int) -> tuple[list[float], list[float]]:
    def run(cmd: list[str]) -> float:
        started = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True)
        return time.perf_counter() - started

    base_cmd = [sys.executable, "benchmarks/counter_baseline.py", "--count", str(count)]
    demos: list[float] = []
    bases: list[float] = []
    with tempfile.TemporaryDirectory() as logs:
        demo_cmd = [
            *(sys.executable, "-m", "demos.counter", "--no-progress"),
            *("--count", str(count), "--log-dir", logs),
        ]
        for rep in range(REPS):  # alternating which goes first: load drifts within a run
            if rep % 2:
                bases.append(run(base_cmd))
                demos.append(run(demo_cmd))
            else:
                demos.append(run(demo_cmd))
                bases.append(run(base_cmd))
    return demos, bases


def measure(sizes: dict[str, int], progress: Any) -> list[Figure]:
    from benchmarks import bench_restart, bench_trace

    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as logs:
        progress("messages, spawns (ours)")
        ours = anyio.run(_in_runtime, sizes, logs)
    progress("Pipe baselines")
    pipe_ask = bench_core._base_ask(50, sizes["asks"])
    pipe_tell, pipe_fan = ours["pipe_tell"], ours["pipe_fan_in"]
    runs = ours["runs"]
    p50_pipe = statistics.median(pipe_ask)
    # each run's lead over Pipe, 1->1 and fan-in: two rows each, and the quotient of both
    aa_vs_pipe = _pairs(runs["tell_aa"], runs["pipe_tell"])
    fan_vs_pipes = _pairs(runs["fan_in"], runs["pipe_fan_in"])
    figures += [
        Figure(
            "ask round trip p50, script→actor",
            statistics.median(ours["ask_rt"]),
            "s",
            "Pipe ping-pong p50",
            p50_pipe,
            "lower",
            "≤ 2x",
        ),
        Figure(
            "ask round trip p99, script→actor",
            _p(ours["ask_rt"], 0.99),
            "s",
            "Pipe ping-pong p99",
            _p(pipe_ask, 0.99),
            "lower",
        ),
        Figure(
            "ask round trip p50, actor→actor",
            statistics.median(ours["ask_aa"]),
            "s",
            "Pipe ping-pong p50",
            p50_pipe,
            "lower",
            "≤ 2x",
        ),
        Figure(
            "ask round trip p99, actor→actor",
            _p(ours["ask_aa"], 0.99),
            "s",
            "Pipe ping-pong p99",
            _p(pipe_ask, 0.99),
            "lower",
        ),
        Figure(
            "tell throughput, script→actor",
            ours["tell_rt"],
            "msg/s",
            "Pipe send, child counts",
            pipe_tell,
            "higher",
            "≥ 2x",
            _pairs(runs["tell_rt"], runs["pipe_tell"]),
        ),
        Figure(
            "tell throughput, actor→actor",
            ours["tell_aa"],
            "msg/s",
            "Pipe send, child counts",
            pipe_tell,
            "higher",
            "≥ 2x",
            aa_vs_pipe,
        ),
        Figure(
            "fan-in 4→1 throughput",
            ours["fan_in"],
            "msg/s",
            "our actor→actor 1→1",
            ours["tell_aa"],
            "higher",
            "≥ 1x",
            _pairs(runs["fan_in"], runs["tell_aa"]),
        ),
        Figure(
            "fan-in 4→1 throughput (vs Pipe)",
            ours["fan_in"],
            "msg/s",
            "4 Pipes into 1 process",
            pipe_fan,
            "higher",
            runs=fan_vs_pipes,
        ),
        # the fan-in target read as the targets are stated, each figure against its raw
        # baseline: does our lead over Pipe hold from 1->1 to 4->1? (the row above, over the
        # tell row's ratio; the same as fan-in/1->1 over raw Pipes' own 4->1/1->1)
        Figure(
            "fan-in 4→1 vs 4 Pipes, over 1→1 vs Pipe",
            ours["fan_in"] / pipe_fan,
            "x",
            "actor→actor 1→1 vs Pipe 1→1",
            ours["tell_aa"] / pipe_tell,
            "higher",
            "≥ 1x",
            _pairs(fan_vs_pipes, aa_vs_pipe),
        ),
        # the same with a handler that works about 2 µs a message: the receiver then sets
        # the pace in both, and fan-in's extra CPU time still fits in two CPUs
        Figure(
            "fan-in 4→1 throughput, busy handler",
            ours["busy_fan_in"],
            "msg/s",
            "actor→actor 1→1, same handler",
            ours["busy_aa"],
            "higher",
            runs=_pairs(runs["busy_fan_in"], runs["busy_aa"]),
        ),
        # why fan-in trails 1->1 on a small machine: its receiver shares the CPUs with four
        # busy senders, and waits for one instead of working; raw Pipes show the same
        Figure(
            "fan-in 4→1 with raw Pipes",
            pipe_fan,
            "msg/s",
            "Pipe send 1→1",
            pipe_tell,
            "higher",
            runs=_pairs(runs["pipe_fan_in"], runs["pipe_tell"]),
        ),
        Figure(
            "fan-in receiver: time on a CPU",
            ours["cpu_fan_in"],
            "%",
            "1→1 receiver",
            ours["cpu_aa"],
            "higher",
        ),
        Figure(
            "fan-in receiver: time waiting for a CPU",
            ours["wait_fan_in"],
            "%",
            "1→1 receiver",
            ours["wait_aa"],
            "lower",
        ),
        # the whole bill: fan-in keeps more of the machine busy than 1->1, but pays more CPU
        # time per message (five processes taking turns on the CPUs), which throughput
        # divides by: rate = CPUs busy / CPU time per message
        Figure(
            "fan-in: CPUs busy (4 senders and receiver)",
            ours["cpus_fan_in"],
            "CPUs",
            "1→1 (sender and receiver)",
            ours["cpus_aa"],
            "higher",
        ),
        Figure(
            "fan-in: CPU time per message, all processes",
            ours["cpus_fan_in"] / ours["fan_in"],
            "s",
            "1→1, both processes",
            ours["cpus_aa"] / ours["tell_aa"],
            "lower",
        ),
    ]
    if "one_cpu_fan_in" in ours:
        figures.append(
            Figure(
                "fan-in 4→1, all on one CPU",
                ours["one_cpu_fan_in"],
                "msg/s",
                "1→1, both on that CPU",
                ours["one_cpu_aa"],
                "higher",
                runs=_pairs(runs["one_cpu_fan_in"], runs["one_cpu_aa"]),
            )
        )
    progress("spawn baselines")
    fork = bench_core._base_spawn("forkserver", sizes["spawns"])
    figures += [
        Figure(
            "spawn to ready p50",
            statistics.median(ours["spawn"]),
            "s",
            "forkserver child + Pipe p50",
            statistics.median(fork),
            "lower",
            "≤ 30 ms",
        ),
        Figure(
            f"{sizes['fleet']} actors ready",
            ours["fleet"],
            "s",
            f"{sizes['fleet']} forkserver children ready",
            _fleet_baseline(sizes["fleet"]),
            "lower",
        ),
    ]
    progress(f"{sizes['mib']} MiB hand-off")
    array = np.random.default_rng(1).random(sizes["mib"] * 1024 * 1024 // 8)
    shared = anyio.run(bench_shared._ours, array, sizes["handoffs"], 200)
    pipe_handoff = statistics.median(bench_shared._pipe_handoff(array, sizes["handoffs"]))
    figures += [
        Figure(
            f"{sizes['mib']} MiB hand-off, by handle",
            statistics.median(shared["by handle, mapped"]),
            "s",
            "pickled through a Pipe",
            pipe_handoff,
            "lower",
            "< 1 ms",
        ),
        Figure(
            f"{sizes['mib']} MiB hand-off, inside a message",
            statistics.median(shared["inside a message"]),
            "s",
            "pickled through a Pipe",
            pipe_handoff,
            "lower",
            "≤ 0.1x",
        ),
    ]
    progress("restart after SIGKILL")
    restart = anyio.run(bench_restart._ours, sizes["kills"])
    base_restart = bench_restart._baseline(sizes["kills"])
    figures.append(
        Figure(
            "SIGKILL to restarted actor answering, p50",
            statistics.median(restart),
            "s",
            "SIGKILL + fork + Pipe answer",
            statistics.median(base_restart),
            "lower",
            "≤ 100 ms",
        )
    )
    progress("counter demo")
    demos, bases = _counter(sizes["count"])
    figures.append(
        Figure(
            "counter demo, whole process",
            statistics.median(demos),
            "s",
            "multiprocessing.Queue script",
            statistics.median(bases),
            "lower",
            "≤ 1.05x",
            _pairs(demos, bases),
        )
    )
    progress("tracing")
    # the median of REPS runs each, alternating which goes first (like the others)
    offs, ons = [], []
    for rep in range(REPS):
        for trace in (False, True) if rep % 2 == 0 else (True, False):
            rate = anyio.run(bench_trace._ours, sizes["trace_tells"], trace)
            (ons if trace else offs).append(rate)
    off, on = statistics.median(offs), statistics.median(ons)
    figures.append(
        Figure(
            "tell throughput, tracing on",
            on,
            "msg/s",
            "same, tracing off",
            off,
            "higher",
            "≥ 0.25x",
            _pairs(ons, offs),
        )
    )
    return figures


def machine() -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load": os.getloadavg(),
        "commit": commit,
        "uvloop": os.environ.get("ACTORS_UVLOOP", "") == "1",
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    parser.add_argument(
        "--uvloop", action="store_true", help="actor processes on uvloop (ACTORS_UVLOOP=1)"
    )
    parser.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local: the suite above; ray: our Ray backend beside plain Ray calls and beside "
        "the local backend (benchmarks/bench_ray.py)",
    )
    parser.add_argument(
        "--ray-address",
        metavar="HOST:PORT",
        help="with --backend ray: join this cluster instead of starting a head for the run",
    )
    args = parser.parse_args()
    if args.uvloop:
        if args.backend == "ray":
            parser.error("--uvloop applies to the local backend only")
        os.environ["ACTORS_UVLOOP"] = "1"  # every Runtime of the run, and the demo's process
    if args.ray_address and args.backend != "ray":
        parser.error("--ray-address needs --backend ray")
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)

    def progress(text: str) -> None:
        console.print(f"[dim]… {text}[/]")

    began = time.perf_counter()
    if args.backend == "ray":
        from benchmarks import bench_ray

        sizes = bench_ray.QUICK if args.quick else bench_ray.FULL
        reps = sizes["reps"]
        figures = bench_ray.measure(sizes, progress, args.ray_address)
        section = "Ray backend"
    else:
        sizes = QUICK if args.quick else FULL
        reps = REPS
        figures = measure(sizes, progress)
        from benchmarks import bench_jobs, bench_scale

        progress("whole jobs against multiprocessing.Pool")
        figures += bench_jobs.measure(bench_jobs.QUICK if args.quick else bench_jobs.FULL, progress)
        progress("many idle actors, in a process of their own")
        figures += bench_scale.measure_in_own_process(args.quick, progress)
        section = "benchmarks"
    info = machine()
    table = Table(
        title=f"{section} ({'quick' if args.quick else 'full'}), {info['date']}, "
        f"{info['cpus']} CPUs, CPython {info['python']}, commit {info['commit']}"
        + (", actors on uvloop" if info["uvloop"] else "")
    )
    columns = ("figure", "ours", "baseline", "baseline value", "ratio", "runs", "target", "met")
    for column in columns:
        table.add_column(column, justify="left" if column in ("figure", "baseline") else "right")
    for f in figures:
        ratio = "-" if f.ratio is None else f"{f.ratio:{'.2f' if f.ratio >= 0.1 else '.2g'}}x"
        spread = f"{min(f.runs):.2f}-{max(f.runs):.2f}x" if f.runs else ""
        met = {None: "", True: "yes", False: "NO"}[f.met]
        table.add_row(
            escape(f.name),
            fmt(f.ours, f.unit),
            escape(f.note or f.baseline_name),
            fmt(f.baseline, f.unit),
            ratio,
            spread,
            f.target,
            met,
        )
    console.print(table)
    console.print(
        f"ratio: ours / baseline (lower is better for times, higher for rates); runs: the "
        f"lowest and highest ratio of one of the {reps} runs to the baseline's run beside it; "
        f"took {time.perf_counter() - began:.0f} s"
    )
    if args.json:
        report = {
            "machine": info,
            "backend": args.backend,
            "sizes": sizes,
            "figures": [asdict(f) | {"ratio": f.ratio, "met": f.met} for f in figures],
        }
        args.json.write_text(json.dumps(report, indent=2))
        console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
