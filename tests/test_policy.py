"""Supervision policy through the Host seam, with fake incarnations and a fake clock.

No process is started: the tree runs against ``FakeHost``, so restart intensity,
strategies, escalation, restart types and backoff are checked in milliseconds.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from actors import ActorRef, Backoff, EscalationError, RestartType, Strategy, Supervisor
from actors._context import SupervisorOptions
from runtime import RuntimeConfig
from runtime.driver.policy import SupervisorNode
from runtime.driver.registry import Registry
from runtime.driver.tree import ActorTree
from runtime.observe.logging import LogConfig
from runtime.testing import FakeClock, FakeHost, HostEvent
from runtime.wire.protocol import ChildOptions, RequestBody
from runtime.wire.rundir import RunDirectory

pytestmark = pytest.mark.anyio

#: a deadline for every wait: policy runs in virtual time, so any wait this long is a hang
DEADLINE = 5.0


class _Log:
    """Records the tree's log events instead of writing them."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def _record(self, event: str, **fields: Any) -> None:
        self.events.append({"event": event, **fields})

    info = warning = error = debug = _record

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]


@dataclass
class Fixture:
    tree: ActorTree
    host: FakeHost
    clock: FakeClock
    log: _Log
    escalations: list[EscalationError] = field(default_factory=list)

    async def spawn(
        self, name: str, node: SupervisorNode | None = None, restart: RestartType = "permanent"
    ) -> ActorRef:
        return await self.tree.spawn(
            "Worker", b"", name, 10, ChildOptions(restart=restart), node or self.tree.root, None
        )

    def supervisor(
        self,
        strategy: Strategy,
        max_restarts: int = 3,
        period: float = 5.0,
        backoff: Backoff | None = None,
        parent: SupervisorNode | None = None,
    ) -> SupervisorNode:
        options = SupervisorOptions(None, strategy, max_restarts, period, backoff, None)
        handle: Supervisor = self.tree.add_supervisor(options, parent or self.tree.root)
        return self.tree.node_for(handle, None)

    async def crash(self, name: str, *, code: int = 1) -> None:
        """Crash ``name``'s current incarnation and wait until the tree has dealt with it."""
        rec = self.tree.registry.names[name]
        number = rec.lives
        self.host.current(name).crash(code)
        await self.settled(name, number)

    async def settled(self, name: str, number: int) -> None:
        """Wait until ``name`` runs an incarnation after ``number``, or has ended for good."""
        rec = self.tree.registry.names.get(name)
        if rec is None:
            return
        with anyio.fail_after(DEADLINE):
            while not (rec.state == "ended" or (rec.state == "running" and rec.lives > number)):
                await rec.changed.wait()


async def _unused_request(_rec: object, _body: RequestBody) -> object:
    raise AssertionError("no actor sends requests in these tests")


async def _unused_notify(_watcher: ActorRef, _message: object) -> None:
    return None


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[Fixture]:
    config = RuntimeConfig(max_restarts=3, period=5.0, stop_timeout=1.0)
    host, clock, log = FakeHost(), FakeClock(), _Log()
    escalations: list[EscalationError] = []
    async with anyio.create_task_group() as tg:
        tree = ActorTree(
            config=config,
            host=host,
            registry=Registry(config.restart_wait),
            rundir=RunDirectory(tmp_path, "0-test"),
            log_config=LogConfig(tmp_path, "0-test", trace=False),
            log=log,
            tg=tg,
            clock=clock,
            notify=_unused_notify,
            serve_request=_unused_request,
            on_escalation=escalations.append,
        )
        yield Fixture(tree, host, clock, log, escalations)
        with anyio.fail_after(DEADLINE):
            await tree.shutdown("shutdown")
        tg.cancel_scope.cancel()


def _kinds(events: list[HostEvent]) -> list[tuple[str, str]]:
    return [(e.kind, e.name) for e in events if e.kind in ("start", "stop")]


@pytest.mark.parametrize(
    ("strategy", "starts"),
    [("one_for_one", [1, 2, 1]), ("rest_for_one", [1, 2, 2]), ("one_for_all", [2, 2, 2])],
)
async def test_a_strategy_restarts_the_children_it_names(
    fake: Fixture, strategy: Strategy, starts: list[int]
) -> None:
    sup = fake.supervisor(strategy)
    for name in "abc":
        await fake.spawn(name, sup)
    await fake.crash("b")
    last = max(n for n, count in zip("abc", starts, strict=True) if count == 2)
    with anyio.fail_after(DEADLINE):
        await fake.host.until(lambda: fake.host.starts(last) == 2)
    assert [fake.host.starts(n) for n in "abc"] == starts


async def test_one_for_all_stops_the_others_newest_first_and_starts_all_in_order(
    fake: Fixture,
) -> None:
    sup = fake.supervisor("one_for_all")
    for name in "abc":
        await fake.spawn(name, sup)
    mark = len(fake.host.events)
    await fake.crash("b")
    with anyio.fail_after(DEADLINE):
        await fake.host.until(lambda: fake.host.starts("c") == 2)
    assert _kinds(fake.host.events[mark:]) == [
        ("stop", "c"),
        ("stop", "a"),
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
    ]


async def test_more_restarts_than_the_intensity_within_the_period_escalates(
    fake: Fixture,
) -> None:
    await fake.spawn("w")  # under the root: 3 restarts within 5 s
    for _ in range(3):
        await fake.crash("w")
    assert fake.host.starts("w") == 4
    assert not fake.escalations
    await fake.crash("w")
    assert fake.host.starts("w") == 4
    (error,) = fake.escalations
    assert (error.supervisor, error.actor) == ("root", "w")


async def test_restarts_older_than_the_period_no_longer_count(fake: Fixture) -> None:
    await fake.spawn("w")
    for _ in range(10):
        await fake.crash("w")
        fake.clock.advance(2.0)  # three restarts span 4 s of the 5 s period at most
    assert fake.host.starts("w") == 11
    assert not fake.escalations


async def test_a_supervisor_that_gives_up_is_restarted_by_its_parent(fake: Fixture) -> None:
    child_sup = fake.supervisor("one_for_one", max_restarts=0)
    await fake.spawn("w", child_sup)
    await fake.crash("w")
    with anyio.fail_after(DEADLINE):
        await fake.host.until(lambda: fake.host.starts("w") == 2)
    (escalated,) = fake.log.named("supervisor.escalated")
    assert escalated["failed"] == "w"
    restarting = fake.log.named("supervisor.restarting")
    assert restarting[-1]["supervisor"] == "root"
    assert restarting[-1]["reason"] == "escalated"
    assert not fake.escalations  # the root still had restarts left


async def test_backoff_doubles_the_delay_up_to_its_maximum_in_virtual_time(
    fake: Fixture,
) -> None:
    sup = fake.supervisor(
        # a long period: the delay doubles per restart still within it
        "one_for_one",
        max_restarts=10,
        period=100.0,
        backoff=Backoff(min_s=1.0, max_s=4.0, jitter=0.0),
    )
    await fake.spawn("w", sup)
    for _ in range(4):
        await fake.crash("w")
    assert fake.clock.sleeps == [1.0, 2.0, 4.0, 4.0]
    assert fake.host.starts("w") == 5


async def test_temporary_children_are_never_restarted_and_transient_ones_only_on_failure(
    fake: Fixture,
) -> None:
    await fake.spawn("temp", restart="temporary")
    await fake.spawn("trans", restart="transient")
    fake.host.current("temp").crash(-signal.SIGKILL)
    fake.host.current("trans").stop_itself()
    await fake.settled("temp", 1)
    await fake.settled("trans", 1)
    registry = fake.tree.registry
    assert registry.ended["a1"].end_reason == "signal:SIGKILL"
    assert registry.ended["a2"].end_reason == "requested"
    await fake.spawn("trans2", restart="transient")
    await fake.crash("trans2")
    assert fake.host.starts("trans2") == 2
    assert fake.host.starts("temp") == fake.host.starts("trans") == 1


async def test_a_restart_whose_start_fails_counts_toward_the_intensity(fake: Fixture) -> None:
    await fake.spawn("w")
    fake.host.fail_starts.extend(["w"] * 3)
    await fake.crash("w")
    assert fake.tree.registry.ended["a1"].state == "ended"
    assert len(fake.escalations) == 1
    assert fake.host.starts("w") == 4  # the first and three failed restarts
    assert len(fake.log.named("actor.restart_failed")) == 3
