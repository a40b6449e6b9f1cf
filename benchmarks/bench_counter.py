"""The counter demo against a plain multiprocessing.Queue script, run alternately.

``python benchmarks/bench_counter.py [--reps 5] [--count 50000000]`` runs both as fresh
processes (``python -m demos.counter --no-progress`` and ``counter_baseline.py``), in
alternating order, and reports each one's whole-process wall time, its self-reported
elapsed time, and the median of the per-repetition ratios demo / baseline.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(cmd: list[str], expected: int) -> tuple[float, float]:
    started = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - started
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert int(fields["total_number"]) == expected, out
    return wall, float(fields["elapsed_s"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--count", type=int, default=50_000_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    expected = args.count * args.workers
    common = ["--count", str(args.count), "--workers", str(args.workers)]
    with tempfile.TemporaryDirectory() as logs:
        demo = [sys.executable, "-m", "demos.counter", "--no-progress", "--log-dir", logs, *common]
        base = [sys.executable, str(ROOT / "benchmarks/counter_baseline.py"), *common]
        rows: dict[str, list[tuple[float, float]]] = {"demo": [], "baseline": []}
        for rep in range(args.reps):
            order = [("demo", demo), ("baseline", base)]
            for name, cmd in order if rep % 2 == 0 else order[::-1]:
                rows[name].append(run(cmd, expected))
    wall_ratios = [d[0] / b[0] for d, b in zip(rows["demo"], rows["baseline"], strict=True)]
    elapsed_ratios = [d[1] / b[1] for d, b in zip(rows["demo"], rows["baseline"], strict=True)]
    print(f"counter: {args.workers} workers x {args.count:,}, {args.reps} reps, alternating")
    for name, samples in rows.items():
        walls = [w for w, _ in samples]
        inner = [e for _, e in samples]
        print(
            f"  {name:9s} wall median {statistics.median(walls):.3f} s "
            f"(min {min(walls):.3f}, max {max(walls):.3f}); "
            f"self-reported median {statistics.median(inner):.3f} s"
        )
    print(
        f"  ratio demo/baseline, whole process: median {statistics.median(wall_ratios):.3f} "
        f"(min {min(wall_ratios):.3f}, max {max(wall_ratios):.3f})"
    )
    print(
        f"  ratio demo/baseline, self-reported: median {statistics.median(elapsed_ratios):.3f} "
        f"(min {min(elapsed_ratios):.3f}, max {max(elapsed_ratios):.3f})"
    )


if __name__ == "__main__":
    main()
