"""Run the Ray backend on a two-node test cluster (Ray's own, on this machine); print a report.

``python -m tests.scripts.ray_two_nodes REPORT.json [ORDER_RUNS]``: starts a head and a
second node with ``ray.cluster_utils.Cluster``, runs each scenario through the public API,
writes what it measured as JSON, and shuts the cluster down. tests/test_ray_cluster.py
checks the report: one cluster start serves every check.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import ray
from ray.cluster_utils import Cluster

from actors import (
    Actor,
    ActorDeadError,
    ActorRef,
    LockTimeoutError,
    MailboxFullError,
    Permit,
    SharedArray,
    SharedArrayNotLocalError,
    SharedSemaphore,
)
from runtime import Runtime
from tests.helpers import Gate, Latch, block

ROOT = Path(__file__).resolve().parents[2]


def node_id() -> str:
    return str(ray.get_runtime_context().get_node_id())


class Where(Actor):
    """Answers "node" and "pid"; ("send-to", ref, n, tag) tells ref (tag, i) n times;
    ("ask", ref, question) asks ref; ("add", handle) adds 1 to a shared array under its
    lock; "hang" waits on a latch; ("take", semaphore, timeout) takes a slot and says whether
    its previous holder died, ("give",) gives the last one back."""

    def __init__(self) -> None:
        super().__init__()
        self.permits: list[tuple[SharedSemaphore, Permit]] = []

    async def receive(self, message: Any) -> Any:
        match message:
            case ("take", SharedSemaphore() as semaphore, float(timeout)):
                try:
                    permit = await semaphore.acquire(timeout=timeout)
                except LockTimeoutError:
                    return "timeout"
                self.permits.append((semaphore, permit))
                return permit.previous_holder_died
            case ("give",):
                semaphore, permit = self.permits.pop()
                semaphore.release(permit)
                return "given"
            case "node":
                return node_id()
            case "pid":
                return os.getpid()
            case ("send-to", ActorRef() as target, int(n), str(tag)):
                for i in range(n):
                    await target.tell((tag, i))
                return n
            case ("ask", ActorRef() as target, question):
                return await target.ask(question, timeout=60)
            case ("add", SharedArray() as total):
                async with total.locked() as view:
                    view[0] += 1
                return int(view[0])
            case ("hang", ActorRef() as latch):
                return await latch.ask("wait", timeout=60)
        return None


class Sink(Actor):
    """Keeps every message; "take" returns them and forgets them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []

    async def receive(self, message: Any) -> Any:
        if message == "take":
            seen, self.seen = self.seen, []
            return seen
        if message == "count":
            return len(self.seen)
        self.seen.append(message)
        return None


async def spread(rt: Runtime, count: int, prefix: str) -> dict[str, list[ActorRef]]:
    """Spawn Where actors until there are ``count`` and both nodes have some (Ray's SPREAD
    is best effort); group them by the node Ray put them on."""
    by_node: dict[str, list[ActorRef]] = {}
    for i in range(4 * count):
        if i >= count and len(by_node) == 2:
            break
        ref = await rt.spawn(Where, name=f"{prefix}-{i}")
        by_node.setdefault(await ref.ask("node", timeout=30), []).append(ref)
    return by_node


async def scenarios(head: str, other: str, order_runs: int, report: dict[str, Any]) -> None:
    # a machine lost takes all its actors at once, and their restarts queue behind one
    # another: an intensity and a wait for that
    async with Runtime(
        backend="ray",
        log_dir=report["log_dir"],
        restart_wait=60.0,
        max_restarts=50,
        period=60.0,
    ) as rt:
        # -- 4 senders on 2 nodes, 10,000 tells each into one receiver ----------------
        senders = await spread(rt, 4, "sender")
        report["sender_nodes"] = len(senders)
        # four senders, from both nodes
        flat = [*senders[head][:2], *senders[other][:2]]
        flat += [r for refs in senders.values() for r in refs if r not in flat][: 4 - len(flat)]
        in_order = 0
        sink = await rt.spawn(Sink, name="sink")
        for run in range(order_runs):

            async def flood(sender: ActorRef, tag: str) -> None:
                await sender.ask(("send-to", sink, 10_000, tag), timeout=120)

            async with anyio.create_task_group() as tg:
                for tag, sender in zip("abcd", flat, strict=True):
                    tg.start_soon(flood, sender, tag)
            # each sender's ask comes after its tells (FIFO per pair): after the last one,
            # the sink has had everything
            for sender in flat:
                await sender.ask(("ask", sink, "count"), timeout=60)
            seen = await sink.ask("take", timeout=60)
            broken = {}
            for tag in "abcd":
                got = [i for t, i in seen if t == tag]
                if got != list(range(10_000)):
                    first = next((k for k in range(1, len(got)) if got[k] <= got[k - 1]), None)
                    broken[tag] = {
                        "received": len(got),
                        "distinct": len(set(got)),
                        "first_inversion": first,
                        "around": got[max(0, (first or 0) - 3) : (first or 0) + 3],
                    }
            if broken:
                report.setdefault("order_failures", []).append({"run": run, **broken})
            else:
                in_order += 1
        report["order_runs"] = order_runs
        report["order_kept"] = in_order
        if os.environ.get("ORDER_ONLY"):
            del report["remove_node"]
            return

        # -- an ask in flight when its worker is SIGKILLed; the restart answers -------
        latch = await rt.spawn(Latch, name="latch")
        far = await spread(rt, 4, "victim")
        victim = far.get(other, far.get(head))[0]  # type: ignore[index]
        pid = await victim.ask("pid", timeout=10)

        async def kill_when_waiting() -> None:
            while await latch.ask("waiters", timeout=10) < 1:
                pass  # each ask is a barrier: the latch handled what came before
            report["killed_at"] = time.monotonic()
            os.kill(pid, signal.SIGKILL)

        async with anyio.create_task_group() as tg:
            tg.start_soon(kill_when_waiting)
            try:
                await victim.ask(("hang", latch), timeout=60)
                report["kill_error"] = "none"
            except ActorDeadError as exc:
                report["kill_error"] = f"ActorDeadError:{exc.reason}"
            report["kill_to_error_s"] = time.monotonic() - report["killed_at"]
        started = time.monotonic()
        report["restarted_pid_differs"] = await victim.ask("pid", timeout=30) != pid
        report["kill_to_answer_s"] = time.monotonic() - report["killed_at"]
        report["restart_ask_s"] = time.monotonic() - started

        # -- a mailbox of 10 with a blocked receiver ------------------------------------
        gate_latch = await rt.spawn(Latch, name="gate-latch")
        gate = await rt.spawn(Gate, gate_latch, name="gate", mailbox_size=10)
        await block(gate, gate_latch)
        sent = 0
        try:
            for i in range(100):
                gate.tell_nowait(("item", i))
                sent += 1
        except MailboxFullError:
            report["tell_nowait_refused_after"] = sent
        waited = anyio.Event()

        async def one_more() -> None:
            await gate.tell(("item", sent))
            waited.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(one_more)
            with anyio.move_on_after(0.5):
                await waited.wait()
            report["tell_waited"] = not waited.is_set()
            await gate_latch.tell("open")
        log = await gate.ask("log", timeout=30)
        report["gate_got_all"] = log == [("item", i) for i in range(sent + 1)]

        # -- shared memory stays on its node ----------------------------------------------
        total = await rt.shared_array((1,), dtype="int64", name="total")
        report["handle_node_is_head"] = total.node == head
        users = await spread(rt, 4, "user")
        if other in users:
            try:
                await users[other][0].ask(("add", total), timeout=30)
                report["not_local_error"] = "none"
            except SharedArrayNotLocalError as exc:
                report["not_local_error"] = str(exc)
        near = await rt.spawn(Where, name="near", colocate_with=total)
        report["colocated_node_is_head"] = await near.ask("node", timeout=10) == head
        report["colocated_add"] = await near.ask(("add", total), timeout=30)
        report["total_after"] = int(np.asarray(total)[0])

        # -- a semaphore on the driver's machine, held from the other node ------------
        one = await rt.semaphore(1, name="one")
        far_user = users[other][0]
        report["far_take_holder_died"] = await far_user.ask(("take", one, 10.0), timeout=30)
        report["near_take_while_held"] = await near.ask(("take", one, 0.3), timeout=30)
        os.kill(await far_user.ask("pid", timeout=10), signal.SIGKILL)
        report["near_take_after_kill"] = await near.ask(("take", one, 20.0), timeout=60)
        report["near_give"] = await near.ask(("give",), timeout=30)
        report["far_take_after_give"] = await far_user.ask(("take", one, 20.0), timeout=60)

        # -- the other node goes while an ask waits there -----------------------------
        doomed = (await spread(rt, 4, "doomed")).get(other, [])
        if doomed:
            report["doomed_on_other"] = True
            hang_latch = await rt.spawn(Latch, name="hang-latch", colocate_with=total)
            async with anyio.create_task_group() as tg:

                async def remove_when_waiting() -> None:
                    while await hang_latch.ask("waiters", timeout=10) < 1:
                        pass
                    report["removed_at"] = time.monotonic()
                    await anyio.to_thread.run_sync(report["remove_node"])

                tg.start_soon(remove_when_waiting)
                try:
                    await doomed[0].ask(("hang", hang_latch), timeout=60)
                    report["remove_error"] = "none"
                except ActorDeadError as exc:
                    report["remove_error"] = f"ActorDeadError:{exc.reason}"
                report["remove_to_error_s"] = time.monotonic() - report["removed_at"]
            # our supervisor restarts it on the node that is left
            report["after_removal_node_is_head"] = await doomed[0].ask("node", timeout=120) == head
            report["remove_to_answer_s"] = time.monotonic() - report["removed_at"]
        del report["remove_node"]
    report["restarts"] = {k: v for k, v in rt.report.restarts.items() if v}


def counter_demo(address: str, log_dir: Path) -> dict[str, Any]:
    """The counter demo, unchanged, as another driver on the cluster."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "demos.counter",
            "--backend",
            "ray",
            "--address",
            address,
            "--workers",
            "4",
            "--count",
            "25000000",
            "--no-progress",
            "--log-dir",
            str(log_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    nodes = started_nodes(log_dir, "worker*.jsonl")
    return {"exit": done.returncode, "stdout": done.stdout[-2000:], "worker_nodes": len(nodes)}


def started_nodes(log_dir: Path, pattern: str = "*.jsonl") -> set[str]:
    """The nodes of the actors whose log files are in ``log_dir`` (gathered there)."""
    nodes = set()
    for path in log_dir.glob(pattern):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if event.get("event") == "actor.started":
                nodes.add(event.get("node"))
    return nodes


def main() -> None:
    out = Path(sys.argv[1])
    order_runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "include_dashboard": False},
    )
    report: dict[str, Any] = {"log_dir": str(out.parent / "logs")}
    try:
        second = cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        ray.init(
            address=cluster.address,
            log_to_driver=False,
            configure_logging=False,
            runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
        )
        head = node_id()
        other = second.node_id
        # registered is not yet schedulable: wait until the scheduler sees both nodes' CPUs
        deadline = time.monotonic() + 60
        while ray.cluster_resources().get("CPU", 0) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        report["nodes"] = len({n["NodeID"] for n in ray.nodes() if n["Alive"]})
        if not os.environ.get("ORDER_ONLY"):
            report["counter"] = counter_demo(cluster.address, out.parent / "counter-logs")
        report["remove_node"] = lambda: cluster.remove_node(second)
        anyio.run(scenarios, head, other, order_runs, report)
        report["logs_lost_warned"] = any(
            json.loads(line).get("event") == "logs.lost"
            for path in Path(report["log_dir"]).glob("main.*.jsonl")
            for line in path.read_text().splitlines()
        )
        # the removed node's files: on a real cluster they went with the machine
        left = Path(tempfile.gettempdir()) / f"actors-ray-logs-{os.getuid()}"
        report["left_by_removed_node"] = sum(1 for p in left.rglob("*") if p.is_file())
        shutil.rmtree(left, ignore_errors=True)
    finally:
        report.pop("remove_node", None)
        out.write_text(json.dumps(report, default=str))
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
