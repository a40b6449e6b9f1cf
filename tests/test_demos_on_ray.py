"""The demos on the Ray backend: `--backend ray --address` of the session's Ray head."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import read_events

ROOT = Path(__file__).resolve().parent.parent
#: each worker's count: small, so the run is quick even on a loaded machine
COUNT = 200_000
#: a demo run on Ray, from the first actor to the last one stopped; under the suite's 120
TIMEOUT = 100


def _demo(module: str, ray_address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, "--backend", "ray", "--address", ray_address, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_counter_demo_on_ray_prints_the_total_and_the_progress_its_workers_report(
    ray_address: str, tmp_path: Path
) -> None:
    result = _demo("demos.counter", ray_address, "--count", str(COUNT), "--log-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert f"total_number={2 * COUNT}" in lines
    # the progress actor's own output goes to Ray's logs: the script draws what it collected
    # (as it last heard it: a quarter may be skipped when news arrive together)
    for worker in ("worker-0", "worker-1"):
        shown = [line for line in lines if line.startswith(f"{worker}: ")]
        assert shown[-1] == f"{worker}: 100% ({COUNT}/{COUNT})"
        percents = [int(line.split()[1].rstrip("%")) for line in shown]
        assert percents == sorted(set(percents))
    assert "Traceback" not in result.stderr
    events = read_events(tmp_path)
    exits = [e for e in events if e["event"] == "actor.exited"]
    assert sorted(e["actor"] for e in exits) == ["aggregator", "progress", "worker-0", "worker-1"]
    reasons = {e["actor"]: e["reason"] for e in exits}
    assert reasons == {  # the script stops the progress actor once all progress is shown
        "progress": "stopped",
        "worker-0": "shutdown",
        "worker-1": "shutdown",
        "aggregator": "shutdown",
    }
    progress = [e for e in events if e["event"] == "actor.spawned" and e["actor"] == "progress"]
    assert len(progress) == 1


def test_counter_demo_on_ray_in_shared_mode_adds_into_the_scripts_shared_memory(
    ray_address: str, tmp_path: Path
) -> None:
    result = _demo(
        "demos.counter",
        ray_address,
        *("--mode", "shared", "--workers", "2", "--count", str(COUNT)),
        *("--no-progress", "--log-dir", str(tmp_path)),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert f"total_number={2 * COUNT}" in lines
    assert not [line for line in lines if line.startswith("worker-")]  # --no-progress
    assert "Traceback" not in result.stderr
    events = read_events(tmp_path)
    names = {e["event"] for e in events}
    assert {"segment.created", "semaphore.created", "segment.unlinked"} <= names
    attached = {e["actor"] for e in events if e["event"] == "segment.attached" and "actor" in e}
    assert attached == {"worker-0", "worker-1"}
    assert "aggregator" not in {e.get("actor") for e in events}


def test_supervision_demo_on_ray_shows_crashes_kills_and_restarts_and_exits_cleanly(
    ray_address: str, tmp_path: Path
) -> None:
    result = _demo("demos.supervision", ray_address, "--seconds", "5", "--log-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "3 workers under supervisor workers" in out
    assert "ended (exception ValueError)" in out  # a poison job
    assert "☠ SIGKILL worker-" in out  # the chaos task
    # Ray says that a worker died, not how: the demo says what it knows, and no signal
    assert "died after our SIGKILL; Ray does not report the signal" in out
    assert "signal:SIGKILL" not in out
    assert "restarted as incarnation 2" in out
    assert "Summary: " in out
    assert "restarted" in out.split("Summary: ", 1)[1]
    assert "stopped in order at the end: " in out
    assert "Traceback" not in result.stderr
    events = read_events(tmp_path)
    assert any(e["event"] == "actor.restarted" for e in events)
    died = [e for e in events if e["event"] == "actor.exited" and e["reason"] == "died"]
    assert died  # the SIGKILLed incarnations
    stopped = next(e for e in events if e["event"] == "runtime.stopped")
    assert stopped["escalated"] is None
