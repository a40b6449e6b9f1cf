"""Whole jobs, each a fresh process, against the same job on ``multiprocessing.Pool``.

    python -m benchmarks.bench_jobs [--quick]

Each job is a script under ``benchmarks/jobs/``, run as ``python script.py ...`` and timed
from before the process starts to its exit. Ours and the Pool script run alternately, the
first of each rep in turn (load drifts within a run), after one untimed run of each; a
figure is the median of the reps and lists each rep's ratio to the Pool run beside it.

- Short job: start, spawn 4 workers at once, ask each once, exit (``short_actors.py``)
  against ``Pool(4).map`` (``short_pool.py``), default start method. Beside them, the
  floors: a bare interpreter, the runtime's dependencies alone, and the imports a script
  makes.
- Word count over the standard library's .py files (``wc_actors.py``, ``wc_pool.py``,
  sharing ``wc_common.py``) with 2 and 4 workers; both print a digest of the counts
  (total, distinct, top 10), and the two must agree. Beside them, the floor: the Pool
  job after loading the runtime's dependencies, which the actors' job cannot do without.

Each script prints wall-clock stamps of its phases, which the standalone run shows as a
breakdown of where each job's time went.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks._figure import Figure, describe
from benchmarks._figure import pairs as _pairs

ROOT = Path(__file__).resolve().parent.parent
JOBS = ROOT / "benchmarks" / "jobs"
SHM = Path("/dev/shm")

#: reps of the short job and of the word count; wc_limit: the first N files only (0: all)
FULL = {"job_reps": 7, "wc_reps": 5, "wc_limit": 0}
QUICK = {"job_reps": 3, "wc_reps": 2, "wc_limit": 300}
WC_WORKERS = (2, 4)

#: the floors of the short job: what any script pays before its own first line
FLOORS = {
    "bare interpreter (python -c pass)": "pass",
    # what the runtime's fixed dependencies cost on their own, loaded as the runtime loads
    # them (structlog without rich, aiomultiprocess without its manager's module)
    "the dependencies alone (asyncio, anyio, structlog, aiomultiprocess)": (
        "from runtime._lean import without_managers, without_rich\n"
        "import anyio, anyio._backends._asyncio\n"
        "with without_rich(): import structlog\n"
        "with without_managers(): import aiomultiprocess"
    ),
    "python -c 'import actors'": "import actors",
    "python -c 'from runtime import Runtime; import actors'": (
        "from runtime import Runtime; import actors"
    ),
}

#: per job: the median, over the reps, of each stamp's offset from process start (s)
Breakdown = dict[str, dict[str, float]]


def _run(cmd: list[str], leaks: list[str]) -> tuple[float, str, dict[str, float]]:
    """Run to exit: the seconds it took, its stdout, its stamps as offsets from start.

    Shared-memory segments the run left behind (named after its pid) go to ``leaks``.
    """
    began_wall = time.time()
    began = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out, err = proc.communicate()
    elapsed = time.perf_counter() - began
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{err[-3000:]}")
    leaks += [str(path) for path in SHM.glob(f"actors_{proc.pid}-*")]
    stamps: dict[str, float] = {}
    for line in out.splitlines():
        if line.startswith("phases="):
            for key, value in json.loads(line.removeprefix("phases=")).items():
                # durations (``..._s``) stay as they are
                stamps[key] = value if key.endswith("_s") else value - began_wall
    stamps["exit"] = elapsed
    return elapsed, out, stamps


def _live_in(logs: str, wait: float = 2.0) -> list[int]:
    """The processes that still hold a file open in ``logs`` (every actor process and
    script holds its log file open while it lives), after up to ``wait`` seconds."""
    root = os.path.realpath(logs) + os.sep
    deadline = time.monotonic() + wait
    while True:
        live = []
        for fd_dir in Path("/proc").glob("[0-9]*/fd"):
            try:
                if any(os.readlink(fd).startswith(root) for fd in fd_dir.iterdir()):
                    live.append(int(fd_dir.parent.name))
            except OSError:
                continue  # gone meanwhile, or not ours to read
        if not live or time.monotonic() > deadline:
            return live
        time.sleep(0.1)


def _line(stdout: str, prefix: str) -> str:
    return next((line for line in stdout.splitlines() if line.startswith(prefix)), "")


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = set(runs[0]).intersection(*runs[1:])
    return {key: statistics.median(r[key] for r in runs) for key in keys}


def _short(
    reps: int, logs: str, leaks: list[str], progress: Callable[[str], None]
) -> tuple[list[Figure], Breakdown]:
    py = sys.executable
    ours_cmd = [py, str(JOBS / "short_actors.py"), logs]
    pool_cmd = [py, str(JOBS / "short_pool.py")]
    commands = {"ours": ours_cmd, "pool": pool_cmd}
    commands |= {name: [py, "-c", code] for name, code in FLOORS.items()}
    progress(f"short job against Pool(4), and the floors: {reps} reps")
    for cmd in commands.values():  # warm-up: page cache, and the first rep's fairness
        _run(cmd, leaks)
    times: dict[str, list[float]] = {name: [] for name in commands}
    stamps: dict[str, list[dict[str, float]]] = {"ours": [], "pool": []}
    for rep in range(reps):
        order = ["ours", "pool"] if rep % 2 == 0 else ["pool", "ours"]
        for name in order + list(FLOORS):
            elapsed, out, phases = _run(commands[name], leaks)
            if name in stamps:
                if _line(out, "[") != "[0, 1, 4, 9]":
                    raise RuntimeError(f"short job ({name}) printed {out!r}")
                stamps[name].append(phases)
            times[name].append(elapsed)
    pool = statistics.median(times["pool"])
    figures = [
        Figure(
            "short job, whole process",
            statistics.median(times["ours"]),
            "s",
            "multiprocessing.Pool(4)",
            pool,
            "lower",
            "≤ 3x",
            _pairs(times["ours"], times["pool"]),
        )
    ]
    figures += [
        Figure(
            name,
            statistics.median(times[name]),
            "s",
            "multiprocessing.Pool(4) job",
            pool,
            "lower",
            runs=_pairs(times[name], times["pool"]),
        )
        for name in FLOORS
    ]
    breakdown = {
        "short job, actors": _medians(stamps["ours"]),
        "short job, Pool(4)": _medians(stamps["pool"]),
    }
    return figures, breakdown


def _word_count(
    reps: int, limit: int, logs: str, leaks: list[str], progress: Callable[[str], None]
) -> tuple[list[Figure], Breakdown]:
    py = sys.executable
    common = ["--limit", str(limit)]
    pool = [py, str(JOBS / "wc_pool.py")]
    commands = {}
    for w in WC_WORKERS:
        size = ["--workers", str(w), *common]
        commands["ours", w] = [py, str(JOBS / "wc_actors.py"), "--log-dir", logs, *size]
        commands["pool", w] = [*pool, *size]
        commands["floor", w] = [*pool, *size, "--with-dependencies"]
    files = f"the first {limit} files" if limit else "every file"
    workers = " and ".join(map(str, WC_WORKERS))
    progress(f"word count against Pool, {workers} workers, {files}: {reps} reps")
    for cmd in commands.values():
        _run(cmd, leaks)
    times: dict[tuple[str, int], list[float]] = {key: [] for key in commands}
    stamps: dict[tuple[str, int], list[dict[str, float]]] = {key: [] for key in commands}
    for rep in range(reps):
        for w in WC_WORKERS:
            digests = {}
            order = ["ours", "pool"] if rep % 2 == 0 else ["pool", "ours"]
            for kind in [*order, "floor"]:
                elapsed, out, phases = _run(commands[kind, w], leaks)
                digests[kind] = _line(out, "digest=")
                times[kind, w].append(elapsed)
                stamps[kind, w].append(phases)
            if not digests["ours"] or not digests["ours"] == digests["pool"] == digests["floor"]:
                raise RuntimeError(
                    f"word count, {w} workers: the digests differ\n"
                    f"  actors: {digests['ours']}\n  Pool:   {digests['pool']}\n"
                    f"  Pool after the dependencies: {digests['floor']}"
                )

    def against_pool(name: str, kind: str, w: int, target: str = "") -> Figure:
        pool = times["pool", w]
        return Figure(
            name,
            statistics.median(times[kind, w]),
            "s",
            f"multiprocessing.Pool({w})",
            statistics.median(pool),
            "lower",
            target,
            _pairs(times[kind, w], pool),
        )

    figures = [
        against_pool(f"word count, {w} workers, whole process", "ours", w, "≤ 1.0x")
        for w in WC_WORKERS
    ]
    figures += [
        against_pool(
            f"its floor: the Pool({w}) job after loading the runtime's dependencies", "floor", w
        )
        for w in WC_WORKERS
    ]
    breakdown = {}
    for w in WC_WORKERS:
        breakdown[f"word count, {w} actors"] = _medians(stamps["ours", w])
        breakdown[f"word count, Pool({w})"] = _medians(stamps["pool", w])
    return figures, breakdown


def _measure(
    sizes: dict[str, int], progress: Callable[[str], None]
) -> tuple[list[Figure], Breakdown]:
    leaks: list[str] = []
    # the runs' logs go here, not to the default log root, and go away with it
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as logs:
        short, short_phases = _short(sizes["job_reps"], logs, leaks, progress)
        wc, wc_phases = _word_count(sizes["wc_reps"], sizes["wc_limit"], logs, leaks, progress)
        live = _live_in(logs)
    if live:
        progress(f"warning: processes of the runs still alive after their script: {live}")
    if leaks:
        progress(f"warning: shared memory left behind: {', '.join(leaks)}")
    return short + wc, short_phases | wc_phases


def measure(sizes: dict[str, int], progress: Callable[[str], None]) -> list[Figure]:
    return _measure(sizes, progress)[0]


# -- standalone -------------------------------------------------------------------------------


#: where the work of a word-count job starts and ends, in its stamps (actors, Pool)
_WORK = (("first_count_start", "reduced"), ("pool_up", "merged"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer reps, the first 300 files")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    began = time.perf_counter()
    figures, breakdown = _measure(sizes, lambda text: print(f"… {text}", flush=True))
    for f in figures:
        print(describe(f))
    print("\nwhere the time went (medians; stamps from process start, _s: durations):")
    for job, phases in breakdown.items():
        stamps = sorted((v, k) for k, v in phases.items() if not k.endswith("_s"))
        durations = [(k, v) for k, v in phases.items() if k.endswith("_s")]
        cells = ", ".join(f"{key} {value * 1e3:.0f}" for value, key in stamps)
        cells += "".join(f"; {key} {value * 1e3:.0f}" for key, value in durations)
        print(f"  {job} (ms): {cells}")
        # the work itself: first count to the merged result
        span = next(((a, b) for a, b in _WORK if a in phases and b in phases), None)
        if span is not None:
            start, end = phases[span[0]], phases[span[1]]
            print(
                f"    before the work {start * 1e3:.0f} ms, the work {(end - start) * 1e3:.0f} ms, "
                f"after it {(phases['exit'] - end) * 1e3:.0f} ms"
            )
    print(f"took {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
