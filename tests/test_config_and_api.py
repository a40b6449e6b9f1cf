"""One configuration, one definition of the shared API, and validation errors by situation."""

from __future__ import annotations

import inspect
import pickle
from pathlib import Path
from typing import Any

import pytest

from actors import (
    Actor,
    ActorContext,
    ActorsError,
    Backoff,
    InvalidArgumentError,
    InvalidConfigError,
    InvalidSupervisorError,
    RuntimeServices,
)
from runtime import Runtime, RuntimeConfig
from runtime.actor.context import Context
from tests.helpers import Echo

pytestmark = pytest.mark.anyio

SHARED_CALLS = ["spawn", "supervisor", "lookup", "shared_array", "share", "semaphore", "free"]


class AsksWithBadTimeouts(Actor):
    """Tries the shared calls with bad arguments from inside an actor."""

    async def receive(self, message: Any) -> Any:
        try:
            match message:
                case "supervisor":
                    await self.context.supervisor(strategy="all_for_none")  # type: ignore[arg-type]
                case "semaphore":
                    await self.context.semaphore(0)
                case "ask":
                    await self.ref.ask("x", timeout=-1)
        except ActorsError as exc:
            return type(exc).__name__, isinstance(exc, ValueError), str(exc)
        return None


def test_the_config_reads_the_environment_in_one_place() -> None:
    env = {"ACTORS_TRACE": "1", "ACTORS_BUSY_POLL": "0", "ACTORS_UVLOOP": "0"}
    config = RuntimeConfig.from_options(env, mailbox_size=7)
    assert (config.trace, config.busy_poll, config.uvloop, config.mailbox_size) == (
        True,
        0.0,
        False,
        7,
    )
    # an option given explicitly wins over its variable
    assert RuntimeConfig.from_options(env, trace=False).trace is False
    assert RuntimeConfig.from_options({}).busy_poll == RuntimeConfig().busy_poll


def test_the_config_is_frozen_and_pickles_whole_for_actor_processes(tmp_path: Path) -> None:
    config = RuntimeConfig.from_options({}, log_dir=tmp_path, max_restarts=9, period=2.5)
    assert pickle.loads(pickle.dumps(config)) == config
    with pytest.raises(AttributeError):
        config.max_restarts = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mailbox_size": 0}, "mailbox_size must be a positive int, not 0"),
        ({"stop_timeout": -1}, "stop_timeout must be a positive number of seconds, not -1"),
        ({"period": float("inf")}, "period must be a positive number of seconds, not inf"),
        ({"max_restarts": True}, "max_restarts must be an int >= 0, not True"),
        (
            {"hang_timeout": 0.1, "heartbeat_interval": 0.5},
            "hang_timeout (0.1 s) must be longer than heartbeat_interval",
        ),
        ({"busy_poll": 1}, "busy_poll must be between 0 and 0.01 seconds, not 1"),
        ({"trace": "yes"}, "trace must be True or False, not 'yes'"),
        ({"colour": "blue"}, "unknown runtime option(s) colour"),
    ],
)
def test_a_bad_option_is_an_invalid_config_error_that_is_also_a_value_error(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidConfigError) as info:
        Runtime(**options)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ActorsError)
    assert str(info.value).startswith(message)


def test_runtime_and_the_actor_context_share_one_definition_of_each_call() -> None:
    for name in SHARED_CALLS:
        shared = getattr(RuntimeServices, name)
        assert inspect.signature(getattr(Runtime, name)) == inspect.signature(shared), name
        assert inspect.signature(getattr(Context, name)) == inspect.signature(shared), name
    # stop: the context's takes no ref too (itself), with the same meaning otherwise
    assert issubclass(Context, ActorContext)
    assert inspect.signature(Context.stop).parameters["ref"].default is None


async def test_bad_supervisor_arguments_are_invalid_supervisor_errors(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        for kwargs, message in [
            ({"strategy": "all_for_none"}, "strategy must be 'one_for_one'"),
            ({"max_restarts": -1}, "max_restarts must be an int >= 0, not -1"),
            ({"period": 0}, "period must be a positive number of seconds, not 0"),
            ({"backoff": 1.5}, "backoff must be an actors.Backoff or None, not 1.5"),
        ]:
            with pytest.raises(InvalidSupervisorError, match=f"^{message}"):
                await rt.supervisor(**kwargs)
        with pytest.raises(InvalidSupervisorError, match="Backoff needs 0 <= min_s <= max_s"):
            Backoff(min_s=2.0, max_s=1.0)


async def test_bad_timeouts_and_semaphores_are_invalid_argument_errors_on_both_sides(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        echo = await rt.spawn(Echo)
        with pytest.raises(
            InvalidArgumentError, match="^ask timeout must be a positive number of seconds, not -1$"
        ):
            await echo.ask("x", timeout=-1)
        with pytest.raises(
            InvalidArgumentError, match="^a semaphore's value must be an int from 1"
        ):
            await rt.semaphore(0)
        inside = await rt.spawn(AsksWithBadTimeouts)
        assert await inside.ask("supervisor") == (
            "InvalidSupervisorError",
            True,
            "strategy must be 'one_for_one', 'one_for_all' or 'rest_for_one', not 'all_for_none'",
        )
        name, is_value_error, _ = await inside.ask("semaphore")
        assert (name, is_value_error) == ("InvalidArgumentError", True)
        assert await inside.ask("ask") == (
            "InvalidArgumentError",
            True,
            "ask timeout must be a positive number of seconds, not -1",
        )
