"""Questions the viewer answers: runs without tracing, reused log directories, busy time, and
a trace for the Perfetto UI.

Each test starts from a real traced run's logs (tests/data/trace_run), copied and edited into
the shape the question needs.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from runtime.trace import load_run, render

UNKNOWN = "\u2013"  # what the viewer shows for a figure tracing was needed for

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "trace_run"
RUN_ID = "28839-eedfe3"
#: what tracing logs, and a run without it does not
PER_MESSAGE = {"message.sent", "message.received", "message.handled", "reply.received"}


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write(path: Path, events: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


def _untraced(tmp_path: Path) -> Path:
    """The fixture run as it would have logged with tracing off: lifecycle, failures only."""
    run_dir = tmp_path / "untraced"
    run_dir.mkdir()
    for src in FIXTURE.glob("*.jsonl"):
        kept = [e for e in _events(src) if e["event"] not in PER_MESSAGE]
        for e in kept:
            if e["event"] == "runtime.started":
                e["trace"] = False
        _write(run_dir / src.name, kept)
    return run_dir


def _viewer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.trace", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _rows(out: str) -> dict[str, dict[str, str]]:
    """The summary table as {actor: {column: cell}}."""
    header = re.search(r"┃ actor .*┃", out)
    assert header is not None, out
    columns = [c.strip() for c in header.group(0).strip("┃").split("┃")]
    rows = {}
    for line in out.splitlines():
        if line.startswith("│ ") and line.count("│") == len(columns) + 1:
            cells = [c.strip() for c in line.strip("│").split("│")]
            rows[cells[0]] = dict(zip(columns, cells, strict=True))
    return rows


def _text(run_dir: Path, run_id: str | None = None) -> str:
    out = io.StringIO()
    render(load_run(run_dir, run_id), Console(file=out, width=200, color_system=None), None)
    return out.getvalue()


# -- tracing off -----------------------------------------------------------------------


def test_without_tracing_the_viewer_says_so_and_shows_what_lifecycle_events_give(
    tmp_path: Path,
) -> None:
    run_dir = _untraced(tmp_path)
    result = _viewer(str(run_dir))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "tracing was off" in out
    assert "Runtime(trace=True)" in out
    rows = _rows(out)
    # the counts each incarnation logged when it ended, not 0
    assert {a: rows[a]["handled"] for a in ("sink", "middle", "head", "crashy", "holder")} == {
        "sink": "6",
        "middle": "6",
        "head": "6",
        "crashy": "2",
        "holder": "0",
    }
    assert rows["crashy"]["failed"] == rows["holder"]["failed"] == "1"
    assert rows["crashy"]["starts"] == "2"
    assert rows["crashy"]["restarts"] == "1"
    assert rows["crashy"]["exits"] == "exception, shutdown"
    # per-message figures are unknown, not zero
    for column in ("in", "out", "died", "p50 ms", "busy ms", "max depth"):
        assert rows["sink"][column] == UNKNOWN, column
    assert f"Flow: {UNKNOWN}" in out
    assert "✗ crashy incarnation 1 ended: exception ValueError" in out


def test_without_tracing_an_incarnation_killed_before_counting_is_counted_from_its_events(
    tmp_path: Path,
) -> None:
    run_dir = _untraced(tmp_path)
    main = run_dir / "main.28839.jsonl"
    # the first crashy incarnation was killed: it logged no counts of its own
    kept = [
        e for e in _events(main) if not (e["event"] == "actor.exited" and e.get("pid") == 28854)
    ]
    _write(main, kept)
    crashy = run_dir / "crashy.a4.28854.jsonl"
    _write(crashy, [e for e in _events(crashy) if e["event"] != "actor.stopped"])
    (row,) = [r for r in load_run(run_dir).summary() if r.actor == "crashy"]
    assert (row.handled, row.failed, row.per_message) == (1, 1, False)


# -- a reused log directory --------------------------------------------------------------


def _reused(tmp_path: Path) -> Path:
    """The fixture's log directory, holding an older run of the same script too."""
    run_dir = tmp_path / "reused"
    shutil.copytree(FIXTURE, run_dir)
    for src in FIXTURE.glob("*.jsonl"):
        older = _events(src)
        for e in older:
            when = dt.datetime.fromisoformat(e["timestamp"]) - dt.timedelta(hours=1)
            e["timestamp"] = when.isoformat().replace("+00:00", "Z")
            e["run_id"] = "100-older"
        _write(run_dir / f"older.{src.name}", older)
    return run_dir


def test_a_reused_log_directory_shows_the_latest_run_alone(tmp_path: Path) -> None:
    run_dir = _reused(tmp_path)
    run = load_run(run_dir)
    assert run.run_id == RUN_ID
    assert [r.run_id for r in run.runs] == ["100-older", RUN_ID]
    assert {e["run_id"] for e in run.events} == {RUN_ID}
    summary = {row.actor: row for row in run.summary()}
    assert summary["crashy"].restarts == 1
    assert summary["crashy"].handled == 2
    assert len(run.crashes()) == 1
    text = _text(run_dir)
    assert text.count("incarnation 1 ended") == 1
    assert f"run {RUN_ID}" in text
    assert "holds 2 runs" in text


def test_the_viewer_lists_the_runs_of_a_directory_and_shows_the_one_asked_for(
    tmp_path: Path,
) -> None:
    run_dir = _reused(tmp_path)
    listed = _viewer(str(run_dir), "--runs")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["100-older", RUN_ID]
    assert "started 2026-11-27T23:11:36" in lines[0]
    older = _viewer(str(run_dir), "--run", "100-older")
    assert older.returncode == 0, older.stderr
    assert "run 100-older" in older.stdout
    assert _rows(older.stdout)["crashy"]["restarts"] == "1"
    missing = _viewer(str(run_dir), "--run", "nope")
    assert missing.returncode == 2
    assert "no run 'nope'" in missing.stderr
    assert "Traceback" not in missing.stderr


# -- busy time ---------------------------------------------------------------------------


def test_the_summary_shows_each_actors_total_time_in_handlers() -> None:
    durations: dict[str, float] = {}
    for src in FIXTURE.glob("*.jsonl"):
        for e in _events(src):
            if e["event"] in ("message.handled", "message.failed") and "duration_s" in e:
                durations[e["actor"]] = durations.get(e["actor"], 0.0) + e["duration_s"]
    summary = {row.actor: row for row in load_run(FIXTURE).summary()}
    for actor, total in durations.items():
        busy = summary[actor].busy_ms
        assert busy is not None
        assert abs(busy - total * 1000) < 1e-9, actor
    assert summary["main"].busy_ms is None  # it handled nothing
    text = _text(FIXTURE)
    assert "tracing was off" not in text  # a traced run has no need of the hint
    rows = _rows(text)
    assert float(rows["head"]["busy ms"]) == round(durations["head"] * 1000, 3)


# -- the trace for Perfetto --------------------------------------------------------------

_REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "X": {"name": str, "ts": (int, float), "dur": (int, float), "pid": int, "tid": int},
    "M": {"name": str, "pid": int, "args": dict},
    "s": {"name": str, "cat": str, "id": (int, str), "ts": (int, float), "pid": int, "tid": int},
    "f": {"name": str, "cat": str, "id": (int, str), "ts": (int, float), "pid": int, "tid": int},
    "i": {"name": str, "ts": (int, float), "pid": int, "tid": int},
}


def test_the_chrome_trace_is_valid_trace_event_json_whose_flows_connect(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    result = _viewer(str(FIXTURE), "--chrome", str(path))
    assert result.returncode == 0, result.stderr
    from runtime.trace import chrome_trace  # new with this test: a failure, not a collection error

    doc = json.loads(path.read_text())
    assert doc == json.loads(json.dumps(chrome_trace(load_run(FIXTURE))))
    events = doc["traceEvents"]
    for e in events:
        assert e["ph"] in _REQUIRED, e
        for key, kind in _REQUIRED[e["ph"]].items():
            assert isinstance(e[key], kind), (key, e)
        if e["ph"] == "X":
            assert e["dur"] >= 0, e
            assert e["ts"] >= 0, e
        if e["ph"] == "f":
            assert e["bp"] == "e"
    # a named track per process: the script's and each actor incarnation's
    tracks = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert sorted(n.split()[0] for n in tracks.values()) == sorted(
        ["main", "sink", "middle", "head", "crashy", "crashy", "holder"]
    )
    run = load_run(FIXTURE)
    spans = [e for e in events if e["ph"] == "X"]
    assert len(spans) == 22  # every message received has its span
    assert {tracks[e["pid"]].split()[0] for e in spans} == {
        "sink",
        "middle",
        "head",
        "crashy",
        "holder",
    }
    starts = [e for e in events if e["ph"] == "s"]
    ends = {(e["cat"], e["id"]): e for e in events if e["ph"] == "f"}
    both = [m for m in run.messages.values() if m.sent_at and m.received_at]
    assert len(starts) == len(ends) == len(both) == 22
    assert len({(e["cat"], e["id"]) for e in starts}) == len(starts)
    for s in starts:
        f = ends[(s["cat"], s["id"])]
        message = run.messages[s["args"]["msg_id"]]
        assert tracks[s["pid"]].split()[0] == message.sender
        assert tracks[f["pid"]].split()[0] == message.receiver
        assert f["ts"] >= s["ts"]
        # the arrow ends on the span of its receipt
        (span,) = [e for e in spans if e["args"]["msg_id"] == message.msg_id]
        assert span["pid"] == f["pid"]
        assert span["ts"] <= f["ts"] <= span["ts"] + span["dur"] or f["ts"] == s["ts"]
