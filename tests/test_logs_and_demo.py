"""Structured logs of a run, the counter demo, and a new user's script end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runtime import Runtime
from tests.helpers import Echo, read_events

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
SECRET = "hunter2-do-not-log"


async def test_every_process_logs_its_lifecycle_as_json_lines(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        echo = await rt.spawn(Echo, name="echo")
        assert await echo.ask(SECRET, timeout=5) == SECRET
    files = sorted(p.name.split(".")[0] for p in tmp_path.glob("*.jsonl"))
    assert files == ["echo", "main"]
    events = [e["event"] for e in read_events(tmp_path)]
    for expected in (
        "runtime.started",
        "actor.spawned",
        "actor.started",
        "actor.stopping",
        "actor.stopped",
        "actor.exited",
        "runtime.stopped",
    ):
        assert expected in events
    assert not [e for e in events if e.startswith("message.")]  # per-message events are off
    assert SECRET not in "".join(p.read_text() for p in tmp_path.glob("*"))


async def test_tracing_links_each_message_across_processes_without_payloads(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path, trace=True) as rt:
        echo = await rt.spawn(Echo, name="echo")
        await echo.tell(("greet", SECRET))
        assert await echo.ask(SECRET, timeout=5) == SECRET
    events = [e for e in read_events(tmp_path) if e["event"].startswith("message.")]
    by_id: dict[str, list[str]] = {}
    for e in events:
        by_id.setdefault(e["msg_id"], []).append(e["event"])
        assert e["sender"] == "main"
        assert e["receiver"] == "echo"
    assert list(by_id.values()) == [["message.sent", "message.received", "message.handled"]] * 2
    assert [e["msg_type"] for e in events if e["event"] == "message.handled"] == [
        "tuple:greet",
        "str",
    ]
    assert SECRET not in "".join(p.read_text() for p in tmp_path.glob("*"))


def test_counter_demo_prints_the_total(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "demos.counter", "--count", "100000", "--log-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "total_number=200000" in result.stdout.splitlines()
    assert "worker-0: 100% (100000/100000)" in result.stdout
    assert "Traceback" not in result.stderr
    exits = [e for e in read_events(tmp_path) if e["event"] == "actor.exited"]
    assert sorted(e["actor"] for e in exits) == ["aggregator", "progress", "worker-0", "worker-1"]


def test_counter_demo_in_shared_mode_adds_into_shared_memory_under_a_semaphore(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "demos.counter",
            *("--mode", "shared", "--workers", "3", "--count", "100000"),
            *("--no-progress", "--log-dir", str(tmp_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "total_number=300000" in result.stdout.splitlines()
    events = read_events(tmp_path)
    names = {e["event"] for e in events}
    assert {"segment.created", "semaphore.created", "segment.unlinked"} <= names
    attached = {e["actor"] for e in events if e["event"] == "segment.attached" and "actor" in e}
    assert attached == {"worker-0", "worker-1", "worker-2"}
    assert "aggregator" not in {e.get("actor") for e in events}


def test_supervision_demo_shows_restarts_and_surfaces_the_escalation(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "demos.supervision",
            *("--seconds", "2.5", "--escalate", "--log-dir", str(tmp_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 1, result.stderr  # the crash loop escalated to the script
    out = result.stdout
    assert "restarted as incarnation" in out
    assert "ended (exception ValueError)" in out
    assert "gave up" in out
    assert "EscalationError: supervisor root gave up: flaky failed" in out
    assert "Traceback" not in result.stderr
    events = read_events(tmp_path)
    assert any(e["event"] == "actor.restarted" for e in events)
    assert any(e["event"] == "supervisor.escalated" for e in events)


def test_a_new_users_script_works_as_documented(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests/scripts/user_script.py")],
        cwd=tmp_path,
        env={"ACTORS_LOG_DIR": str(tmp_path / "logs"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "total: 5",
        "lookup: True",
        "timeout: AskTimeoutError",
        "via ref in message: 12",
        "20000 tells in order: True",
        "unpicklable: MessageNotSerializableError",
        "mailbox full: MailboxFullError",
        "after stop: ActorDeadError",
        "done",
    ]
    assert result.stderr == ""
