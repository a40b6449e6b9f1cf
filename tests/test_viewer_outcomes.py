"""One outcome per message: in-doubt records resolved, and messages lost with a hard death.

Each test writes a small run's logs by hand, in the shapes real runs write (see
tests/data/trace_run), so that what the viewer makes of them is deterministic.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from runtime.testing import Flow
from runtime.trace import Run, load_run, render, sequence_diagram
from tests.history import check_history

ROOT = Path(__file__).resolve().parent.parent
MAIN, SINK, SINK_AGAIN = 100, 200, 201


class Logs:
    """A run's log directory, written one event at a time, each process to its own file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.clock = 0
        self.seq: dict[int, int] = {}

    def _write(self, file: str, pid: int, event: str, keys: dict[str, Any]) -> None:
        self.clock += 1000  # a millisecond between events
        seconds, micros = divmod(self.clock, 1_000_000)
        seq = self.seq.get(pid, 0)
        self.seq[pid] = seq + 1
        line = {
            **keys,
            "event": event,
            "level": "debug" if event.startswith(("message.", "reply.")) else "info",
            "timestamp": f"2026-11-28T00:11:{seconds:02d}.{micros:06d}Z",
            "run_id": "100-abcdef",
            **({"pid": pid} if "pid" not in keys else {}),
            "source": keys.get("source", "main" if pid == MAIN else "sink"),
            "seq": seq,
        }
        with (self.path / file).open("a") as f:
            f.write(json.dumps(line) + "\n")

    def main(self, event: str, **keys: Any) -> None:
        """An event of the script's process (the driver's lifecycle events too)."""
        self._write(f"main.{MAIN}.jsonl", MAIN, event, keys)

    def sink(self, pid: int, event: str, **keys: Any) -> None:
        """An event of an incarnation of the actor "sink" (process ``pid``)."""
        static = {"actor": "sink", "actor_id": "a1", "source": "sink"}
        self._write(f"sink.a1.{pid}.jsonl", pid, event, {**keys, **static})

    # -- the shapes of the events ------------------------------------------------------

    def spawned(self) -> None:
        self.main("actor.spawned", actor="sink", actor_id="a1", pid=SINK, incarnation=1)
        self.sink(SINK, "actor.started", actor_class="Relay", incarnation=1)

    def sent(self, n: int, *, ask: bool = False) -> None:
        self.main(
            "message.sent",
            **_ids(n),
            msg_type="str",
            ask=ask,
            size=22,
        )

    def received(self, n: int, pid: int = SINK, depth: int = 1) -> None:
        self.sink(pid, "message.received", **_ids(n), depth=depth)

    def handled(self, n: int, pid: int = SINK) -> None:
        self.sink(pid, "message.handled", **_ids(n), msg_type="str", duration_s=0.0001)

    def failed(self, n: int, pid: int = SINK) -> None:
        self.sink(pid, "message.failed", **_ids(n), msg_type="str", error_type="ValueError")

    def dead_at_receiver(self, n: int, reason: str, pid: int = SINK) -> None:
        keys = {"msg_id": f"a0.1.{n}", "sender": "main", "receiver": "sink"}
        self.sink(pid, "message.dead_lettered", **keys, reason=reason, ask=False)

    def in_doubt(self, n: int, *, ask: bool = False) -> None:
        """The sender's record (``_lost``): the receiver died before confirming ``n``."""
        keys: dict[str, Any] = {"msg_id": f"a0.1.{n}", "receiver": "sink", "reason": "in_doubt"}
        if ask:
            keys["ask"] = True
        self.main("message.dead_lettered", **keys)

    def replied(self, n: int, *, ok: bool, after_s: float) -> None:
        self.main(
            "reply.received",
            msg_id=f"a0.1.{n}",
            trace_id=f"a0.1.{n}",
            sender="sink",
            receiver="main",
            ok=ok,
            round_trip_s=after_s,
        )

    def exited(self, reason: str, pid: int = SINK, exit_code: int = -9) -> None:
        if reason == "hung":
            self.main("actor.hung", actor="sink", actor_id="a1", pid=pid, incarnation=1)
        self.main(
            "actor.exited",
            actor="sink",
            actor_id="a1",
            pid=pid,
            incarnation=1 if pid == SINK else 2,
            exit_code=exit_code,
            reason=reason,
            killed=reason == "hung",
        )

    def restarted(self) -> None:
        self.main("actor.restarted", actor="sink", actor_id="a1", incarnation=2)
        self.sink(SINK_AGAIN, "actor.started", actor_class="Relay", incarnation=2)


def _ids(n: int) -> dict[str, Any]:
    msg_id = f"a0.1.{n}"
    return {
        "msg_id": msg_id,
        "trace_id": msg_id,
        "parent_id": None,
        "sender": "main",
        "receiver": "sink",
    }


@pytest.fixture
def logs(tmp_path: Path) -> Logs:
    logs = Logs(tmp_path)
    logs.spawned()
    return logs


def _killed_while_busy(logs: Logs) -> None:
    """sink handles 1, is SIGKILLed handling 2 with 3 queued and 4 on the way; 5 after."""
    for n in (1, 2, 3, 4):
        logs.sent(n)
    logs.received(1)
    logs.received(2, depth=1)
    logs.handled(1)
    logs.received(3, depth=2)
    logs.exited("signal:SIGKILL")
    for n in (1, 2, 3, 4):  # none was acknowledged before the kill
        logs.in_doubt(n)
    logs.restarted()
    logs.sent(5)
    logs.received(5, pid=SINK_AGAIN)
    logs.handled(5, pid=SINK_AGAIN)


def _outcomes(run: Run) -> dict[str, str | None]:
    return {m.msg_id: m.outcome for m in run.messages.values()}


def _text(run: Run, trace_id: str | None = None) -> str:
    out = io.StringIO()
    render(run, Console(file=out, width=200, color_system=None, highlight=False), trace_id)
    return out.getvalue()


def test_a_tell_handled_by_its_receiver_and_in_doubt_at_its_sender_ends_handled_once(
    logs: Logs,
) -> None:
    _killed_while_busy(logs)
    run = load_run(logs.path)
    first = run.messages["a0.1.1"]
    assert first.outcome == "handled"
    assert first.sender_in_doubt
    assert first.resolved
    assert first.receiver_outcomes == ["handled"]  # the sender's record is no second one
    assert run.conflicts() == []
    assert "a0.1.1" in {m.msg_id for m in run.resolved()}
    assert "a0.1.1" not in {m.msg_id for m in run.in_doubt()}
    (sink,) = [row for row in run.summary() if row.actor == "sink"]
    # 1 and 5 handled; 2 and 3 lost with the killed incarnation; 4 never arrived
    assert (sink.handled, sink.dead_lettered, sink.died, sink.in_doubt) == (2, 0, 2, 1)


@pytest.mark.parametrize(
    ("record", "outcome"),
    [("failed", "failed"), ("crashed", "dead_lettered"), ("stopped", "dead_lettered")],
)
def test_what_the_receiver_recorded_resolves_its_senders_doubt(
    logs: Logs, record: str, outcome: str
) -> None:
    logs.sent(1)
    logs.received(1)
    if record == "failed":
        logs.failed(1)
    else:
        logs.dead_at_receiver(1, record)
    logs.in_doubt(1)  # the sender's record comes after the receiver's: it still loses
    logs.exited("signal:SIGKILL")
    run = load_run(logs.path)
    message = run.messages["a0.1.1"]
    assert (message.outcome, message.resolved) == (outcome, True)
    if outcome == "dead_lettered":
        assert message.reason == record
    assert [m.msg_id for m in run.resolved()] == ["a0.1.1"]
    assert run.in_doubt() == []


def test_a_tell_only_its_sender_recorded_in_doubt_stays_in_doubt_unresolved(logs: Logs) -> None:
    _killed_while_busy(logs)
    run = load_run(logs.path)
    never_arrived = run.messages["a0.1.4"]
    assert never_arrived.outcome == "in_doubt"  # not dead-lettered for sure
    assert not never_arrived.resolved
    assert [m.msg_id for m in run.in_doubt()] == ["a0.1.4"]
    assert sorted(m.msg_id for m in run.resolved()) == ["a0.1.1", "a0.1.2", "a0.1.3"]
    assert run.unaccounted() == []  # the sender's honest record accounts for it
    flow = Flow(logs.path, since=0.0)
    assert [m.msg_id for m in flow.in_doubt()] == ["a0.1.4"]
    assert flow.messages(outcome="dead_lettered") == []
    flow.assert_accounted()


def test_an_ask_its_sender_recorded_in_doubt_when_the_receiver_died_is_accounted_for(
    logs: Logs,
) -> None:
    logs.sent(1, ask=True)
    logs.exited("signal:SIGKILL")  # before it read the ask
    logs.in_doubt(1, ask=True)
    logs.replied(1, ok=False, after_s=0.0021)  # the asker got ActorDeadError
    run = load_run(logs.path)
    message = run.messages["a0.1.1"]
    assert (message.ask, message.outcome) == (True, "in_doubt")
    assert run.unaccounted() == []
    assert [m.msg_id for m in run.in_doubt()] == ["a0.1.1"]
    Flow(logs.path, since=0.0).assert_accounted()


def test_an_ask_nothing_says_the_end_of_is_unaccounted(logs: Logs) -> None:
    logs.sent(1, ask=True)
    logs.exited("signal:SIGKILL")
    run = load_run(logs.path)
    assert [m.msg_id for m in run.unaccounted()] == ["a0.1.1"]
    with pytest.raises(AssertionError, match=r"sent, with no outcome: \['a0.1.1'\]"):
        Flow(logs.path, since=0.0).assert_accounted()


@pytest.mark.parametrize(("reason", "code"), [("signal:SIGKILL", -9), ("exit:3", 3), ("hung", -9)])
def test_a_message_being_handled_when_its_incarnation_died_hard_died_with_it(
    logs: Logs, reason: str, code: int
) -> None:
    logs.sent(1, ask=True)
    logs.sent(2)
    logs.received(1)
    logs.received(2, depth=2)
    logs.exited(reason, exit_code=code)
    logs.replied(1, ok=False, after_s=2.0219)
    run = load_run(logs.path)
    handling, queued = run.messages["a0.1.1"], run.messages["a0.1.2"]
    assert (handling.outcome, handling.reason, handling.died_handling) == ("died", reason, True)
    assert (queued.outcome, queued.reason, queued.died_handling) == ("died", reason, False)
    assert run.unfinished() == []
    (exited,) = run.where("actor.exited")
    assert run.died_with(exited) == [handling, queued]
    tree = _text(run, "a0.1.1")
    assert f"[died: sink ended {reason} while handling it]" in tree
    assert "answered after" not in tree
    assert "[?]" not in tree
    assert "the asker got an error after 2021.900 ms" in tree
    assert f"[died: sink ended {reason} with it received, unfinished]" in _text(run, "a0.1.2")
    errors = _text(run)
    assert f"✗ sink incarnation 1 ended: {reason}" in errors
    assert "while handling main → sink str (a0.1.1)" in errors
    assert "with 1 more received and unfinished" in errors


def test_a_message_left_unfinished_by_a_clean_exit_did_not_die_with_it(logs: Logs) -> None:
    logs.sent(1)
    logs.received(1)
    logs.exited("shutdown", exit_code=0)
    run = load_run(logs.path)
    assert run.messages["a0.1.1"].outcome is None
    assert [m.msg_id for m in run.unfinished()] == ["a0.1.1"]


def test_the_viewer_shows_one_outcome_per_message(logs: Logs) -> None:
    _killed_while_busy(logs)
    result = subprocess.run(
        [sys.executable, "-m", "runtime.trace", str(logs.path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    header = re.search(r"┃ actor .*┃", out)
    assert header is not None
    columns = [c.strip() for c in header.group(0).strip("┃").split("┃")]
    (sink_row,) = [line for line in out.splitlines() if line.startswith("│ sink ")]
    row = dict(zip(columns, (c.strip() for c in sink_row.strip("│").split("│")), strict=True))
    outcomes = ("handled", "failed", "dead", "died", "in doubt")
    assert {k: row[k] for k in outcomes} == {
        "handled": "2",
        "failed": "0",
        "dead": "0",
        "died": "2",
        "in doubt": "1",
    }
    assert sum(int(row[k]) for k in outcomes) == int(row["in"]) + 1 == 5  # 4 was never received
    assert "Errors: 0 failed, 0 dead-lettered, 1 in doubt (unresolved), 2 died" in out
    assert "in doubt at sink (it died before confirming" in out
    assert "in doubt at their senders, resolved from the receivers' logs: 3" in out
    assert "dead-lettered at sink (in_doubt)" not in out
    for n in range(1, 6):  # each message's trace: one outcome
        tree = _text(load_run(logs.path), f"a0.1.{n}")
        assert len(re.findall(r"\[[^\]]+\]", tree)) == 1, tree
    assert "[handled in 0.100 ms]" in _text(load_run(logs.path), "a0.1.1")
    assert "[in doubt: sink died before confirming it]" in _text(load_run(logs.path), "a0.1.4")


def test_the_sequence_diagram_marks_messages_that_died_or_stay_in_doubt(logs: Logs) -> None:
    _killed_while_busy(logs)
    lines = sequence_diagram(load_run(logs.path)).splitlines()
    assert "    Note over p1: died with it (signal:SIGKILL)" in lines
    assert "    Note over p1: in doubt (died before confirming it)" in lines
    assert lines.count("    p0-xp1: str") == 2  # 2 and 3
    assert not any("dead letter (in_doubt)" in line for line in lines)


def test_the_history_checker_gives_each_message_one_resolved_outcome(logs: Logs) -> None:
    _killed_while_busy(logs)
    history = check_history(logs.path)
    assert history.outcomes == {
        "a0.1.1": "handled",
        "a0.1.2": "died",
        "a0.1.3": "died",
        "a0.1.4": "in_doubt",
        "a0.1.5": "handled",
    }
    assert history.two_outcomes == {}
    assert history.resolved == {"a0.1.1", "a0.1.2", "a0.1.3"}
    assert history.in_doubt == {"a0.1.4"}
    assert history.dead_by_reason()["in_doubt"] == 4  # the senders' records, as logged
    assert history.unaccounted == set()


def test_a_message_its_receiver_ended_twice_is_reported_with_both_outcomes(logs: Logs) -> None:
    logs.sent(1)
    logs.received(1)
    logs.handled(1)
    logs.failed(1)
    logs.in_doubt(1)
    history = check_history(logs.path)
    assert history.outcomes == {"a0.1.1": "handled"}
    assert history.two_outcomes == {"a0.1.1": ["handled", "failed"]}
    assert [m.msg_id for m in load_run(logs.path).conflicts()] == ["a0.1.1"]
    with pytest.raises(AssertionError, match="more than one outcome"):
        Flow(logs.path, since=0.0).assert_accounted()
