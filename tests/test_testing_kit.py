"""The public test kit (runtime.testing, runtime.pytest_plugin), used as a user would."""

from __future__ import annotations

import os
import signal
from typing import Any

import anyio
import pytest

from actors import Actor, ActorRef, Reply, RuntimeAlreadyRunningError
from actors._router import router_installed
from runtime import Runtime
from runtime.observe.probe import EventProbe
from runtime.testing import ActorHarness, Flow, HarnessUnsupportedError
from tests.helpers import Crashy, Echo, Relay

pytest_plugins = ["runtime.pytest_plugin"]
pytestmark = pytest.mark.anyio


# -- with real processes: the fixtures -------------------------------------------------------


async def test_the_runtime_fixture_runs_real_actors_with_tracing_on(
    actor_runtime: Runtime,
) -> None:
    crashy = await actor_runtime.spawn(Crashy, name="crashy")
    assert await crashy.ask("pid") != os.getpid()
    assert actor_runtime.config.trace
    assert list(actor_runtime.log_dir.glob("*.jsonl"))


async def test_assert_received_returns_what_each_hop_got_from_the_one_before(
    actor_runtime: Runtime, flow: Flow
) -> None:
    sink = await actor_runtime.spawn(Relay, None, name="sink")
    head = await actor_runtime.spawn(Relay, sink, name="head")
    for i in range(3):
        await head.tell(("item", i))
    assert await head.ask("barrier") == 3
    at_sink = flow.assert_received(sink, "tuple:item", sender="head", count=3)
    assert [m.sender for m in at_sink] == ["head"] * 3
    assert flow.assert_received("head", "tuple:item", sender="main", count=3)
    flow.assert_order("main", head, ["tuple:item", "tuple:item", "str"])
    flow.assert_accounted()


async def test_assert_received_lists_what_came_instead_when_nothing_matches(
    actor_runtime: Runtime, flow: Flow
) -> None:
    sink = await actor_runtime.spawn(Relay, None, name="sink")
    await sink.tell(("item", 1))
    assert await sink.ask("barrier") == 1
    with pytest.raises(AssertionError, match=r"sink should have received .*tuple:count") as err:
        flow.assert_received("sink", "tuple:count")
    assert "tuple:item from main (handled)" in str(err.value)
    with pytest.raises(AssertionError, match="exactly 2"):
        flow.assert_received("sink", "tuple:item", count=2)
    with pytest.raises(AssertionError, match=r"it sent: \['tuple:item', 'str'\]"):
        flow.assert_order("main", "sink", ["str", "tuple:item"])


async def test_a_failed_message_is_found_by_its_outcome(actor_runtime: Runtime, flow: Flow) -> None:
    crashy = await actor_runtime.spawn(Crashy, name="crashy", on_error="resume")
    with pytest.raises(ValueError, match="crash on request"):
        await crashy.ask("crash")
    assert await crashy.ask("get") == 0
    with pytest.raises(AssertionError, match=r"str from main \(failed\)"):
        flow.assert_received("crashy", str, count=2)
    [failed] = flow.assert_received("crashy", str, outcome="failed")
    assert failed.error_type == "ValueError"


async def test_the_probe_fixture_sees_a_killed_actor_restart(
    actor_runtime: Runtime, probe: EventProbe
) -> None:
    crashy = await actor_runtime.spawn(Crashy, name="victim")
    os.kill(await crashy.ask("pid"), signal.SIGKILL)
    event = await probe.expect("actor.restarted", actor="victim")
    assert event["actor"] == "victim"
    assert await crashy.ask("get") == 0


async def test_a_harness_refuses_to_run_beside_a_runtime(actor_runtime: Runtime) -> None:
    with pytest.raises(RuntimeAlreadyRunningError):
        async with ActorHarness(Echo):
            pass
    assert await (await actor_runtime.spawn(Echo)).ask(1) == 1  # its router still delivers


# -- without processes: the harness ----------------------------------------------------------


class Tally(Actor):
    """Counts items, forwards each to a sink, answers "total" once it has ``expected``."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.total = 0
        self.sink: ActorRef | None = None
        self.waiting: list[Reply] = []
        self.started = False

    async def on_start(self) -> None:
        self.started = True
        self.sink = await self.context.lookup("sink")
        self.context.send_every(1.0, "tick")

    async def receive(self, message: Any) -> Any:
        match message:
            case ("count", int(n)):
                self.total += n
                assert self.sink is not None
                await self.sink.tell(("counted", n))
                if self.total >= self.expected:
                    for reply in self.waiting:
                        reply.set_result(self.total)
                    self.waiting.clear()
            case "total":
                if self.total < self.expected:
                    self.waiting.append(self.defer_reply())
                    return None
                return self.total
            case ("check", ActorRef() as checker):
                return await checker.ask(self.total)
            case ("spawn", str(name)):
                child = await self.context.spawn(Echo, name=name)
                await self.context.watch(child)
                return child
            case "shared":
                await self.context.shared_array(3)
            case "boom":
                raise ValueError("boom on request")
        return None


async def test_a_harness_runs_handlers_in_this_process_and_records_what_they_send() -> None:
    harness = ActorHarness(Tally, 3, name="tally")
    sink = harness.ref("sink")  # made before entering: on_start looks it up
    async with harness:
        assert harness.actor.started
        await harness.tell(("count", 1))
        await harness.tell(("count", 2))
        assert harness.actor.total == 3
        assert harness.sent_to(sink) == [("counted", 1), ("counted", 2)]
        assert await harness.ask("total") == 3
        assert [t.message for t in harness.timers] == ["tick"]
        assert router_installed()
    assert not router_installed()


async def test_a_harness_answers_asks_to_its_refs_and_records_spawns() -> None:
    harness = ActorHarness(Tally, 1)
    harness.ref("sink")
    checker = harness.ref("checker", answer=lambda total: f"seen {total}")
    async with harness:
        assert await harness.ask(("check", checker)) == "seen 0"
        assert harness.sent_to("checker", ask=True) == [0]
        child = await harness.ask(("spawn", "kid"))
        assert child.name == "kid"
        assert [call.actor_class for call in harness.spawned] == [Echo]
        assert harness.watched == {"kid"}


async def test_a_deferred_reply_is_answered_by_a_later_message() -> None:
    harness = ActorHarness(Tally, 5)
    harness.ref("sink")
    async with harness:
        pending = await harness.ask_deferred("total")
        assert pending.deferred
        assert not pending.done
        with pytest.raises(AssertionError, match="deferred its reply"):
            await harness.ask("total")
        await harness.tell(("count", 5))
        assert pending.done
        assert pending.result() == 5
        assert await pending.wait() == 5


async def test_a_deferred_reply_settled_by_a_task_is_awaited() -> None:
    harness = ActorHarness(Tally, 2)
    harness.ref("sink")
    async with harness, anyio.create_task_group() as tg:
        pending = await harness.ask_deferred("total")
        tg.start_soon(harness.tell, ("count", 2))
        with anyio.fail_after(5):
            assert await pending.wait() == 2


async def test_a_handler_error_is_raised_to_the_test_and_carried_by_an_ask() -> None:
    harness = ActorHarness(Tally, 1)
    harness.ref("sink")
    async with harness:
        with pytest.raises(ValueError, match="boom on request"):
            await harness.tell("boom")
        pending = await harness.ask_deferred("boom")
        with pytest.raises(ValueError, match="boom on request"):
            pending.result()
        with pytest.raises(HarnessUnsupportedError, match="actor_runtime fixture"):
            await harness.ask("shared")
