"""The benchmark suite runs (a smoke test: no timing is asserted here, ever)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_the_quick_benchmark_suite_runs_and_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    names = [f["name"] for f in report["figures"]]
    for expected in (
        "ask round trip p50, script→actor",
        "ask round trip p50, actor→actor",
        "tell throughput, script→actor",
        "tell throughput, actor→actor",
        "fan-in 4→1 throughput",
        "fan-in 4→1 throughput, busy handler",
        "spawn to ready p50",
        "SIGKILL to restarted actor answering, p50",
        "counter demo, whole process",
        "tell throughput, tracing on",
        "short job, whole process",
        "word count, 2 workers, whole process",
        "word count, 4 workers, whole process",
        "100 actors spawned (concurrently)",
        "100 actors stopped",
        "PSS per actor",
        "100 idle actors: CPU, share of one CPU",
    ):
        assert expected in names
    # an idle run may burn no CPU time the kernel can see; rows without a baseline have none
    assert all(f["ours"] >= 0 for f in report["figures"])
    assert all(f["ours"] > 0 for f in report["figures"] if "idle" not in f["name"])
    assert all(f["baseline"] > 0 for f in report["figures"] if f["baseline"] is not None)
    # median figures carry each run's ratio to the baseline's run beside it
    fan_in = next(f for f in report["figures"] if f["name"] == "fan-in 4→1 throughput")
    assert len(fan_in["runs"]) == 5
    assert all(r > 0 for r in fan_in["runs"])
    # the fan-in target read against the raw baselines: the quotient of two rows' ratios
    by_name = {f["name"]: f for f in report["figures"]}
    against_pipes = by_name["fan-in 4→1 vs 4 Pipes, over 1→1 vs Pipe"]
    fan_in_lead = by_name["fan-in 4→1 throughput (vs Pipe)"]["ratio"]
    one_to_one_lead = by_name["tell throughput, actor→actor"]["ratio"]
    assert against_pipes["ratio"] == pytest.approx(fan_in_lead / one_to_one_lead)
    assert len(against_pipes["runs"]) == 5


@pytest.mark.timeout(120)
def test_the_fan_in_benchmark_runs_and_prints_each_pair_and_the_medians() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_fanin", "--messages", "8000", "--reps", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["run 1", "run 2", "median"]
    for line in lines:
        ratio = float(line.rsplit("fan-in/1→1 ", 1)[1].rstrip("x"))
        assert ratio > 0
        cap = float(line.split("caps: T1/R4 ", 1)[1].split("x", 1)[0])
        assert cap > 0


@pytest.mark.timeout(300)
def test_the_quick_ray_benchmark_runs_and_keeps_the_order_of_tells(tmp_path: Path) -> None:
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed")
    out = tmp_path / "bench-ray.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--backend", "ray", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["backend"] == "ray"
    by_baseline = {(f["name"], f["baseline_name"]): f for f in report["figures"]}
    for expected in (
        ("Ray: ask p50, script→actor", "plain Ray async actor call, ray.get"),
        ("Ray: ask p50, script→actor", "plain Ray sync actor call, ray.get"),
        ("Ray: ask p50, script→actor", "ours, local backend"),
        ("Ray: tells, script→actor, in order", "plain Ray, 1 call per tell"),
        ("Ray: tells, actor→actor, in order", "plain Ray, 1 call per tell"),
        ("Ray: tells, actor→actor, in order", "ours, local backend"),
        ("Ray: spawn to first answer p50", "plain Ray actor created + first call"),
        ("Ray: SIGKILL to answering again p50", "plain Ray actor, max_restarts"),
        ("Ray: SIGKILL to answering again p50", "ours, local backend"),
    ):
        figure = by_baseline[expected]
        assert figure["ours"] > 0
        assert figure["baseline"] > 0
    # not a timing: every tell of ours arrived, in the order it was sent
    wrong = next(f for f in report["figures"] if f["name"].startswith("Ray: tells out of order"))
    assert wrong["ours"] == 0
