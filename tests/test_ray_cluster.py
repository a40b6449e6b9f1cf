"""The Ray backend on two nodes: Ray's own multi-node test cluster, on this machine.

One run of ``tests/scripts/ray_two_nodes.py`` starts the cluster, drives every scenario
through the public API and reports what it measured; each test checks one part of it.
The script runs in a process of its own: this one is already a driver of the session's
single-node cluster, and a process joins one cluster at most.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("ray") is None,
        reason="Ray is not installed (pip install -e '.[test]' installs it)",
    ),
    pytest.mark.timeout(600),
]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    where = tmp_path_factory.mktemp("two-nodes")
    out = where / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "tests.scripts.ray_two_nodes", str(out), "20"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert out.exists(), f"the two-node script wrote no report:\n{done.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(out.read_text())
    assert done.returncode == 0, f"{result}\n{done.stderr[-4000:]}"
    assert result["nodes"] == 2
    return result


def test_the_unchanged_counter_demo_runs_with_its_workers_on_both_nodes(
    report: dict[str, Any],
) -> None:
    counter = report["counter"]
    assert counter["exit"] == 0, counter["stdout"]
    assert "total_number=100000000" in counter["stdout"]
    assert counter["worker_nodes"] == 2


def test_the_logs_of_actors_on_the_other_node_are_gathered_and_a_lost_nodes_are_reported(
    report: dict[str, Any],
) -> None:
    # the demo's workers on the second node logged there; the driver gathered the files
    assert report["counter"]["worker_nodes"] == 2
    # the scenarios' second node was removed: its actors' logs went with it, and it says so
    assert report["logs_lost_warned"]


def test_four_senders_on_two_nodes_keep_their_order_in_twenty_runs_of_twenty(
    report: dict[str, Any],
) -> None:
    assert report["sender_nodes"] == 2  # the senders ran on both nodes
    assert report.get("order_failures") is None
    assert (report["order_kept"], report["order_runs"]) == (20, 20)


def test_an_ask_in_flight_fails_within_a_second_when_its_worker_is_killed_and_the_restart_answers(
    report: dict[str, Any],
) -> None:
    assert report["kill_error"] == "ActorDeadError:died"
    assert report["kill_to_error_s"] < 1.0
    assert report["restarted_pid_differs"]  # a new incarnation, restarted by our supervisor


def test_a_mailbox_of_ten_with_a_blocked_receiver_makes_tell_wait_and_tell_nowait_raise(
    report: dict[str, Any],
) -> None:
    # one message is in the blocked handler; a sender's credit covers it until finished
    assert report["tell_nowait_refused_after"] == 9
    assert report["tell_waited"]
    assert report["gate_got_all"]  # nothing lost once the receiver went on


def test_a_shared_array_used_on_another_node_fails_clearly_and_colocation_puts_actors_with_it(
    report: dict[str, Any],
) -> None:
    assert report["handle_node_is_head"]
    assert "lives on node" in report["not_local_error"]
    assert "colocate_with" in report["not_local_error"]
    assert report["colocated_node_is_head"]
    assert report["colocated_add"] == report["total_after"] == 1


def test_a_semaphore_works_across_nodes_and_a_dead_holders_slot_goes_to_the_next(
    report: dict[str, Any],
) -> None:
    assert report["far_take_holder_died"] is False  # taken from the other node
    assert report["near_take_while_held"] == "timeout"  # one slot: the head node waits
    assert report["near_take_after_kill"] is True  # freed by the holder's death, and told
    assert report["near_give"] == "given"
    assert report["far_take_after_give"] is False  # given back in order: no death to tell


def test_an_ask_waiting_on_a_removed_node_fails_and_the_actor_comes_back_on_the_node_left(
    report: dict[str, Any],
) -> None:
    assert report["doomed_on_other"]
    assert report["remove_error"] == "ActorDeadError:died"
    assert report["remove_to_error_s"] < 5.0
    assert report["after_removal_node_is_head"]
