"""Many idle actors: what N of them cost to start, to ask once, to keep, and to stop.

    python -m benchmarks.bench_scale [--quick] [--n N] [--reps R] [--json PATH]

Ours, through the public API: N actors spawned at once from one task group, one ask to
each, then, with all of them up and idle, the memory they hold (PSS, which shares out
pages common to several processes), the descriptors they cost the script's process, and
the CPU time the whole run burns while nothing happens; last, leaving ``Runtime``.
Baseline, same run and same forkserver (the runtime's, with its modules preloaded): N
``multiprocessing`` children that report ready over a ``Pipe``, answer one message, and
exit when told to.

The spawn, the asks and the stop are the median of ``reps`` runs, each followed by a run
of the baseline, and list each run's ratio to the baseline's beside it; memory,
descriptors and idle CPU come from the first run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import anyio

from actors import Actor
from benchmarks._figure import Figure, describe, pairs
from runtime import Runtime

FULL = {"actors": 1000, "settle": 3, "window": 10, "reps": 3}
QUICK = {"actors": 100, "settle": 1, "window": 3, "reps": 1}

MIB = 1024 * 1024
#: the targets are stated for this many actors; smaller runs show none for the figures that
#: grow with N
TARGET_N = FULL["actors"]
#: generous: on a loaded 2-core machine N first asks queue behind each other
ASK_TIMEOUT = 300.0


class Idle(Actor):
    async def receive(self, message: Any) -> Any:
        return os.getpid()


def _idle_child(conn: Connection) -> None:
    """The baseline: ready, then answer each message with our pid until None (or EOF)."""
    conn.send("ready")
    try:
        while conn.recv() is not None:
            conn.send(os.getpid())
    except EOFError:
        pass


# -- /proc ------------------------------------------------------------------------------------


def _pss(pid: int | str) -> int:
    """Bytes of ``pid``'s proportional set size; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _stat(pid: int | str) -> tuple[int, int] | None:
    """``(ppid, utime + stime in clock ticks)`` of ``pid``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # the command name may hold spaces and parentheses: split after its last ")"
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def _descendants(root: int) -> set[int]:
    """Every live process below ``root``: the forkserver, the actors it forked, helpers."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (got := _stat(entry)) is not None:
            children.setdefault(got[0], []).append(int(entry))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _ticks(pids: Iterable[int]) -> dict[int, int]:
    return {pid: got[1] for pid in pids if (got := _stat(pid)) is not None}


def _own_cpu() -> float:
    """Seconds this process (all its threads) has spent on a CPU."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- ours -------------------------------------------------------------------------------------


async def _ours(
    n: int, settle: float, window: float, logs: str, progress: Any, *, whole: bool
) -> dict[str, Any]:
    """Spawn, ask and stop ``n`` actors; with ``whole``, measure them while idle too."""
    out: dict[str, Any] = {}
    refs: list[Any] = []

    async def spawn() -> None:
        refs.append(await rt.spawn(Idle))

    async def ask(ref: Any) -> None:
        pids.append(await ref.ask("pid", timeout=ASK_TIMEOUT))

    async with Runtime(log_dir=logs, trace=False) as rt:
        # the runtime's first spawn starts its forkserver: not part of the figure
        await rt.stop(await rt.spawn(Idle))
        fds_before = _fds()
        progress(f"spawning {n} actors")
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(spawn)
        out["spawn"] = time.perf_counter() - started
        out["fds_spawned"] = _fds()
        progress(f"one ask to each of {n} actors")
        pids: list[int] = []
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for ref in refs:
                tg.start_soon(ask, ref)
        out["ask"] = time.perf_counter() - started
        if len(set(pids)) != n:
            raise RuntimeError(f"{n} actors answered with {len(set(pids))} distinct pids")
        out["fds_asked"] = _fds()
        out["fds_before"] = fds_before
        if whole:
            await _idle(out, pids, settle, window, progress)
        progress(f"stopping {n} actors")
        started = time.perf_counter()
    out["stop"] = time.perf_counter() - started
    left = [pid for pid in pids if _stat(pid) is not None]
    if left:
        raise RuntimeError(f"{len(left)} actor processes still run after the runtime ended")
    return out


async def _idle(
    out: dict[str, Any], pids: list[int], settle: float, window: float, progress: Any
) -> None:
    """The memory ``pids`` hold, and the CPU the run burns while they idle, into ``out``."""
    out["pss_actors"] = sum(_pss(pid) for pid in pids)
    out["pss_driver"] = _pss("self")
    progress(f"idle: {settle:g} s to settle, then {window:g} s measured")
    await anyio.sleep(settle)
    driver = os.getpid()
    others = _descendants(driver) - set(pids)
    # the driver's own /proc scans stay outside its window: read the others first at
    # the start, last at the end
    actors0, others0 = _ticks(pids), _ticks(others)
    own0, began = _own_cpu(), time.perf_counter()
    await anyio.sleep(window)
    own1, elapsed = _own_cpu(), time.perf_counter() - began
    actors1, others1 = _ticks(pids), _ticks(others)
    hz = os.sysconf("SC_CLK_TCK")

    def spent(before: dict[int, int], after: dict[int, int]) -> float:
        return sum(after[p] - before[p] for p in after.keys() & before.keys()) / hz

    out["cpu_actors"] = spent(actors0, actors1) / elapsed
    out["cpu_driver"] = (own1 - own0) / elapsed
    out["cpu_others"] = spent(others0, others1) / elapsed
    out["others"] = len(others)
    # in a full run, the watchdog has read every actor's account by now (every 5 s)
    out["fds_idle"] = _fds()
    gone = len(pids) - len(actors1)
    if gone:
        raise RuntimeError(f"{gone} of {len(pids)} idle actors ended while idle")


# -- baseline ---------------------------------------------------------------------------------


def _baseline(n: int) -> dict[str, float]:
    ctx = multiprocessing.get_context("forkserver")
    out: dict[str, float] = {}
    fds_before = _fds()
    procs, conns = [], []
    try:
        started = time.perf_counter()
        for _ in range(n):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=_idle_child, args=(theirs,), daemon=True)
            proc.start()
            theirs.close()  # so that a child that dies gives EOF, not a hang
            procs.append(proc)
            conns.append(ours)
        for conn in conns:
            if conn.recv() != "ready":
                raise RuntimeError("baseline child did not report ready")
        out["spawn"] = time.perf_counter() - started
        out["fds"] = _fds() - fds_before
        started = time.perf_counter()
        for conn in conns:
            conn.send("pid")
        pids = [conn.recv() for conn in conns]
        out["ask"] = time.perf_counter() - started
        out["pss"] = sum(_pss(pid) for pid in pids)
        started = time.perf_counter()
        for conn in conns:
            conn.send(None)
            conn.close()
        for proc in procs:
            proc.join()
        out["stop"] = time.perf_counter() - started
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in conns:
            conn.close()
    return out


# -- figures ----------------------------------------------------------------------------------


def measure(sizes: dict[str, int], progress: Callable[[str], None]) -> list[Figure]:
    n = sizes["actors"]

    def target(text: str) -> str:
        return text if n == TARGET_N else ""

    reps = sizes.get("reps", 1)
    runs: list[dict[str, Any]] = []
    bases: list[dict[str, float]] = []
    for rep in range(reps):
        if reps > 1:
            progress(f"run {rep + 1} of {reps}")
        # the first run measures the idle actors too
        run = partial(_ours, n, sizes["settle"], sizes["window"], whole=rep == 0)
        with tempfile.TemporaryDirectory(prefix="bench-scale-logs-") as logs:
            runs.append(anyio.run(run, logs, progress))
        progress(f"baseline: {n} forkserver children")
        bases.append(_baseline(n))
    ours, base = dict(runs[0]), dict(bases[0])
    spread: dict[str, list[float]] = {}
    for key in ("spawn", "ask", "stop"):
        ours[key] = statistics.median(r[key] for r in runs)
        base[key] = statistics.median(b[key] for b in bases)
        spread[key] = pairs([r[key] for r in runs], [b[key] for b in bases]) if reps > 1 else []
    spawned = (ours["fds_spawned"] - ours["fds_before"]) / n
    asked = (ours["fds_asked"] - ours["fds_before"]) / n
    idle = (ours["fds_idle"] - ours["fds_before"]) / n
    moved = ", ".join(
        f"{value:.2f} {when}"
        for value, when in ((spawned, "once spawned"), (asked, "after one ask each"))
        if value != idle
    )
    cpu = ours["cpu_actors"] + ours["cpu_driver"] + ours["cpu_others"]
    return [
        Figure(
            f"{n} actors spawned (concurrently)",
            ours["spawn"],
            "s",
            f"{n} forkserver children + Pipe ready",
            base["spawn"],
            "lower",
            target("< 10 s"),
            spread["spawn"] or None,
        ),
        Figure(
            f"{n} actors: one ask each",
            ours["ask"],
            "s",
            f"one Pipe round trip to each of {n} children",
            base["ask"],
            "lower",
            runs=spread["ask"] or None,
        ),
        Figure(
            "PSS per actor",
            ours["pss_actors"] / n / MIB,
            "MiB",
            "PSS per forkserver child",
            base["pss"] / n / MIB,
            "lower",
            "≤ 8 MiB",
        ),
        Figure(
            f"script's process with {n} actors: PSS",
            ours["pss_driver"] / MIB,
            "MiB",
            "",
            None,
            "lower",
        ),
        Figure(
            f"script's process with {n} actors: descriptors",
            ours["fds_idle"],
            "",
            "",
            None,
            "lower",
        ),
        Figure(
            "descriptors per actor in the script's process, idle",
            idle,
            "",
            "per forkserver child + Pipe",
            base["fds"] / n,
            "lower",
            # asks could open connections of their own, and the watchdog files: say so
            note=moved,
        ),
        Figure(
            f"{n} idle actors: CPU, share of one CPU",
            cpu,
            "%",
            "",
            None,
            "lower",
            target("≤ 2%"),
            note=f"actors {ours['cpu_actors']:.1%}, script {ours['cpu_driver']:.1%}, "
            f"{ours['others']} other runtime processes {ours['cpu_others']:.1%}, "
            f"over {sizes['window']} s",
        ),
        Figure(
            f"{n} actors stopped",
            ours["stop"],
            "s",
            f"{n} forkserver children told to stop, joined",
            base["stop"],
            "lower",
            target("< 3 s"),
            spread["stop"] or None,
        ),
    ]


# -- standalone -------------------------------------------------------------------------------


def measure_in_own_process(quick: bool, progress: Callable[[str], None]) -> list[Figure]:
    """``measure``, run as ``python -m benchmarks.bench_scale``: as a user's script would.

    Every actor is forked from a copy of the process that starts the runtime; in the full
    suite's process, that copy would hold what every benchmark before this one left.
    """
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
        out = Path(scratch) / "figures.json"
        command = [sys.executable, "-m", "benchmarks.bench_scale", "--json", str(out)]
        with subprocess.Popen(
            [*command, *(["--quick"] if quick else [])],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.PIPE,
            text=True,
        ) as child:
            assert child.stdout is not None
            for line in child.stdout:
                if line.startswith("… "):
                    progress(line[2:].rstrip("\n"))
        if child.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed with exit code {child.returncode}")
        return [Figure(**figure) for figure in json.loads(out.read_text())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK['actors']} actors")
    parser.add_argument("--n", type=int, help=f"actors (default {FULL['actors']})")
    parser.add_argument("--reps", type=int, help=f"runs (default {FULL['reps']})")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args()
    sizes = dict(QUICK if args.quick else FULL)
    for option, key in ((args.n, "actors"), (args.reps, "reps")):
        if option is not None:
            if option < 1:
                parser.error(f"--{'n' if key == 'actors' else key} must be at least 1")
            sizes[key] = option
    began = time.perf_counter()
    figures = measure(sizes, lambda text: print(f"… {text}", flush=True))
    if args.json is not None:
        args.json.write_text(json.dumps([dataclasses.asdict(f) for f in figures]))
    for f in figures:
        print(describe(f))
    print(f"took {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
