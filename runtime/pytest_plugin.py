"""Pytest fixtures for testing actors: a runtime per test, its message flow, its probe.

Enable it in your project's top-level ``conftest.py``::

    pytest_plugins = ["runtime.pytest_plugin"]

and mark async tests for anyio (``pytestmark = pytest.mark.anyio``)::

    async def test_the_sink_gets_every_item(actor_runtime, flow):
        sink = await actor_runtime.spawn(Sink, name="sink")
        await sink.tell(("item", 1))
        await sink.ask("barrier")
        flow.assert_received("sink", "tuple:item")

It is not registered as an automatic plugin: a project opts in, so ``flow`` and ``probe``
are not claimed in every test suite of an environment that has this package installed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from .driver.runtime import Runtime
from .observe.probe import EventProbe
from .testing import Flow, capture_flow

__all__ = ["actor_runtime", "anyio_backend", "flow", "probe"]


@pytest.fixture
def anyio_backend() -> str:
    """The runtime runs on asyncio only: run anyio tests there.

    anyio's own fixture would also run each test on trio when it is installed. A
    project's ``conftest.py`` that defines ``anyio_backend`` wins over this one.
    """
    return "asyncio"


@pytest.fixture
async def actor_runtime(anyio_backend: str, tmp_path: Path) -> AsyncIterator[Runtime]:
    """A running ``Runtime`` with tracing on, its logs in the test's ``tmp_path``.

    Every actor it spawned is stopped when the test ends.

    Example::

        async def test_echo_answers(actor_runtime):
            echo = await actor_runtime.spawn(Echo)
            assert await echo.ask("hi") == "hi"
    """
    async with Runtime(log_dir=tmp_path / "actor-logs", trace=True) as rt:
        yield rt


@pytest.fixture
def flow(actor_runtime: Runtime) -> Iterator[Flow]:
    """The message flow of ``actor_runtime`` during the test (``runtime.testing.Flow``).

    The logs are read when asked, so ask once what was sent is done (e.g. after an
    ``ask`` that the receiver answers after the messages before it).

    Example::

        async def test_sink_gets_items(actor_runtime, flow):
            ...
            flow.assert_received("sink", "tuple:item", sender="head")
            flow.assert_accounted()
    """
    with capture_flow(actor_runtime) as captured:
        yield captured


@pytest.fixture
async def probe(actor_runtime: Runtime) -> AsyncIterator[EventProbe]:
    """The lifecycle events of ``actor_runtime`` from the test's start (``rt.probe()``).

    Example::

        async def test_restarts(actor_runtime, probe):
            ...
            await probe.expect("actor.restarted", actor="worker")
    """
    async with actor_runtime.probe() as events:
        yield events
