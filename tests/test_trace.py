"""Tracing: ids that follow causes across processes, a viewer, and a capture helper."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from runtime import Runtime
from runtime.testing import capture_flow
from runtime.trace import (
    MissingPlotLibraryError,
    load_run,
    merge_logs,
    plot_timeline,
    render,
    sequence_diagram,
)
from tests.helpers import Echo, Relay

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "trace_run"
GOLDEN = ROOT / "tests" / "data" / "golden"


def _text(run_dir: Path, trace_id: str | None = None) -> str:
    out = io.StringIO()
    console = Console(file=out, width=160, color_system=None, highlight=False)
    render(load_run(run_dir), console, trace_id)
    return out.getvalue()


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs; UPDATE_GOLDEN=1 if that is intended"


def test_traced_counter_demo_accounts_for_every_message_and_links_causes(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "demos.counter", "--count", "200000"),
            *("--trace", "--log-dir", str(tmp_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    run = load_run(tmp_path)
    assert run.unaccounted() == []
    assert run.unfinished() == []
    assert run.broken_links() == []
    counts = [m for m in run.messages.values() if m.msg_type == "tuple:count"]
    from_workers = [m for m in counts if m.receiver == "aggregator"]
    assert len(from_workers) == 2
    for m in from_workers:  # each worker's result was caused by the script's order to it
        (order, result_msg) = run.chain(m.msg_id)
        assert (order.sender, order.receiver) == ("main", m.sender)
        assert result_msg.trace_id == order.trace_id == order.msg_id
    progress = [m for m in run.messages.values() if m.receiver == "progress"]
    assert len(progress) == 200
    assert all(run.chain(m.msg_id)[0].sender == "main" for m in progress)
    (total,) = [m for m in run.messages.values() if m.ask]
    assert total.outcome == "handled"
    assert total.replied_at is not None  # the (deferred) answer is linked to its request


async def test_a_traced_pipeline_keeps_one_trace_across_three_processes(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path, trace=True) as rt:
        sink = await rt.spawn(Relay, None, name="sink")
        middle = await rt.spawn(Relay, sink, name="middle")
        head = await rt.spawn(Relay, middle, name="head")
        with capture_flow(rt) as flow:
            for i in range(20):
                await head.tell(("item", i))
            assert await head.ask("barrier") == 20  # drains the pipeline
        flow.assert_accounted()
        at_sink = flow.messages(receiver="sink", msg_type="tuple:item", outcome="handled")
    assert len(at_sink) == 20
    run = load_run(tmp_path)
    for m in at_sink:
        chain = run.chain(m.msg_id)
        assert [(c.sender, c.receiver) for c in chain] == [
            ("main", "head"),
            ("head", "middle"),
            ("middle", "sink"),
        ]
        assert {c.trace_id for c in chain} == {chain[0].msg_id}
        assert len({c.msg_id.rsplit(".", 2)[0] for c in chain}) == 3  # three processes
    sent = run.where("message.sent", receiver="sink")[0]
    assert {"msg_id", "trace_id", "parent_id", "sender", "receiver", "msg_type", "size"} <= set(
        sent
    )
    received = run.where("message.received", receiver="sink")[0]
    assert "depth" in received
    handled = run.where("message.handled", receiver="sink")[0]
    assert "duration_s" in handled
    assert "message" not in sent  # no payloads
    assert "payload" not in sent


async def test_capture_flow_needs_tracing(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path, trace=False) as rt:
        with pytest.raises(ValueError, match="trace=True"), capture_flow(rt):
            pass


def test_viewer_summary_flow_and_errors_match_the_golden_output() -> None:
    _golden("summary.txt", _text(FIXTURE))


def test_viewer_shows_one_trace_as_a_tree() -> None:
    _golden("trace_pipeline.txt", _text(FIXTURE, "a0.1.1"))
    _golden("trace_failure.txt", _text(FIXTURE, "a0.1.8"))


def test_viewer_writes_a_valid_mermaid_sequence_diagram(tmp_path: Path) -> None:
    out = tmp_path / "flow.mmd"
    result = subprocess.run(
        [sys.executable, "-m", "runtime.trace", str(FIXTURE), "--mermaid", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "sequenceDiagram"
    participants = {
        m.group(1) for m in map(re.compile(r"    participant (p\d+) as \S+$").match, lines) if m
    }
    assert len(participants) == 6
    steps = lines[1 + len(participants) :]
    arrow = re.compile(r"    (p\d+)(->>|-->>|-x)(p\d+): [\w .:\-/()=]+$")
    note = re.compile(r"    Note over (p\d+): .+$")
    for line in steps:
        match = arrow.match(line) or note.match(line)
        assert match, f"not a sequenceDiagram line: {line!r}"
        assert set(match.groups()[::2] if arrow.match(line) else match.groups()) <= participants
    assert any("failed ValueError" in line for line in steps)
    assert any("-->>" in line for line in steps)  # replies to asks
    _golden("flow.mmd", sequence_diagram(load_run(FIXTURE)))


def test_viewer_draws_a_timeline_png(tmp_path: Path) -> None:
    out = tmp_path / "timeline.png"
    result = subprocess.run(
        [sys.executable, "-m", "runtime.trace", str(FIXTURE), "--plot", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000


def test_without_matplotlib_the_plot_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingPlotLibraryError, match=r"pip install 'actors-runtime\[plot\]'"):
        plot_timeline(load_run(FIXTURE), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_viewer_explains_a_directory_without_logs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runtime.trace", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "holds no .jsonl log files" in result.stderr


def test_a_log_cut_short_by_a_kill_is_read_up_to_its_last_whole_line(tmp_path: Path) -> None:
    # a process SIGKILLed in the middle of a write leaves its last line cut short
    line = (
        '{"event":"message.handled","timestamp":"2026-01-01T00:00:00.000001Z","pid":1,"seq":%d}\n'
    )
    (tmp_path / "a.jsonl").write_text(line % 1 + line % 2 + (line % 3)[:40])
    assert [e["seq"] for e in merge_logs(tmp_path)] == [1, 2]
    (tmp_path / "a.jsonl").write_text(line % 1 + (line % 2)[:40] + "\n" + line % 3)
    with pytest.raises(ValueError, match="a.jsonl:2 is not a JSON line"):
        merge_logs(tmp_path)


async def test_a_traced_message_is_stamped_sent_before_its_frame_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # once the frame is written, the receiver may stamp its arrival before the sender
    # runs again; a sent stamp taken after the write then sorts after the arrival
    import runtime.wire.transport as transport
    from runtime.observe.logging import _Emitter
    from runtime.wire.connection import FramedConnection

    calls: list[tuple[str, object]] = []  # in order: ("stamp", the string) or ("push", ident)
    stamped = _Emitter.stamp
    push_batched, push_frame = FramedConnection.push_batched, FramedConnection.push_frame
    sent: list[tuple[str, str]] = []  # (the stamp given to message.sent, msg_id)
    sent_line = transport.sent_line

    def stamp(self: _Emitter, now: float = 0.0) -> str:
        text = stamped(self, now)
        calls.append(("stamp", text))
        return text

    def batched(self: FramedConnection, kind: int, ident: int, body: bytes) -> None:
        calls.append(("push", ident))
        push_batched(self, kind, ident, body)

    def framed(
        self: FramedConnection, kind: transport.Kind, ident: int = 0, body: bytes = b""
    ) -> None:
        calls.append(("push", ident))
        push_frame(self, kind, ident, body)

    def line(stamp: str, msg_id: str, *args: object) -> bytes:
        sent.append((stamp, msg_id))
        return sent_line(stamp, msg_id, *args)  # type: ignore[arg-type]

    async with Runtime(log_dir=tmp_path, trace=True) as rt:
        echo = await rt.spawn(Echo, name="echo")
        await echo.ask("connected", timeout=5)
        monkeypatch.setattr(_Emitter, "stamp", stamp)
        monkeypatch.setattr(FramedConnection, "push_batched", batched)
        monkeypatch.setattr(FramedConnection, "push_frame", framed)
        monkeypatch.setattr(transport, "sent_line", line)
        await echo.tell("told")
        await echo.ask("asked", timeout=5)
        monkeypatch.undo()
    assert len(sent) == 2  # the tell and the ask
    for text, msg_id in sent:
        ident = int(msg_id.rsplit(".", 1)[1])
        stamped_at = next(i for i, (what, arg) in enumerate(calls) if arg is text)
        pushed_at = calls.index(("push", ident))
        assert stamped_at < pushed_at, (msg_id, calls)
