"""Bad input fails at the call site with an error that says what to do."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from actors import (
    Actor,
    ActorNameTakenError,
    ActorNotFoundError,
    ActorStartError,
    InvalidSpawnError,
    MessageNotSerializableError,
    MessageTooLargeError,
    RuntimeClosedError,
)
from runtime import Runtime
from tests.helpers import (
    Echo,
    FailsInInit,
    FailsToStart,
    Holder,
    RefusesToUnpickle,
    read_events,
)

pytestmark = pytest.mark.anyio


async def test_unpicklable_message_is_refused_and_the_runtime_keeps_working(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        echo = await rt.spawn(Echo)
        with pytest.raises(MessageNotSerializableError, match="message of type _thread.lock"):
            await echo.tell(threading.Lock())
        with pytest.raises(TypeError, match="cannot be pickled"):
            echo.tell_nowait(lambda: 1)
        with pytest.raises(MessageNotSerializableError):
            await echo.ask({"handle": open(__file__)}, timeout=5)  # noqa: SIM115
        assert await echo.ask("still fine", timeout=5) == "still fine"


async def test_a_message_the_actor_cannot_unpickle_fails_its_ask_and_is_logged_as_failed(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        echo = await rt.spawn(Echo, name="echo")
        with pytest.raises(ValueError, match="cannot be rebuilt in the receiving process"):
            await echo.ask(RefusesToUnpickle(), timeout=5)
        await echo.tell(RefusesToUnpickle())
        assert await echo.ask("still fine", timeout=5) == "still fine"
    failed = [e for e in read_events(tmp_path) if e["event"] == "message.failed"]
    assert [(e["actor"], e["reason"], e["error_type"]) for e in failed] == [
        ("echo", "undecodable", "ValueError"),
        ("echo", "undecodable", "ValueError"),
    ]


async def test_unpicklable_spawn_argument_is_named_in_the_error(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        with pytest.raises(MessageNotSerializableError, match="spawn argument 0 of Holder"):
            await rt.spawn(Holder, threading.Lock())
        assert await (await rt.spawn(Echo)).ask(1, timeout=5) == 1


async def test_spawning_something_that_is_not_an_actor_class_is_refused(tmp_path: Path) -> None:
    class Local(Actor):
        pass

    async with Runtime(log_dir=tmp_path) as rt:
        with pytest.raises(InvalidSpawnError, match="not class dict"):
            await rt.spawn(dict)  # type: ignore[arg-type]
        with pytest.raises(InvalidSpawnError, match="not an instance of Echo"):
            await rt.spawn(Echo())  # type: ignore[arg-type]
        with pytest.raises(InvalidSpawnError, match="defined inside a function"):
            await rt.spawn(Local)
        with pytest.raises(InvalidSpawnError, match="cannot take these spawn arguments"):
            await rt.spawn(Echo, 1, 2)
        with pytest.raises(InvalidSpawnError, match="mailbox_size must be a positive int"):
            await rt.spawn(Echo, mailbox_size=0)


async def test_unknown_and_duplicate_names_get_clear_errors(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        with pytest.raises(ActorNotFoundError, match="no running actor is named 'nobody'"):
            await rt.lookup("nobody")
        await rt.spawn(Echo, name="echo")
        with pytest.raises(ActorNameTakenError, match="'echo' is already running"):
            await rt.spawn(Echo, name="echo")


async def test_failing_on_start_or_init_fails_the_spawn_with_the_cause(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        with pytest.raises(ActorStartError, match="RuntimeError: no database at db.invalid"):
            await rt.spawn(FailsToStart, name="db")
        with pytest.raises(ActorStartError, match="ValueError: n must be even, got 3") as info:
            await rt.spawn(FailsInInit, 3)
        assert "raise ValueError" in info.value.traceback
        await rt.spawn(Echo, name="db")  # the failed actor's name is free again


async def test_message_above_the_size_limit_is_refused(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path, max_message_size=1000) as rt:
        echo = await rt.spawn(Echo)
        with pytest.raises(MessageTooLargeError, match="above the limit of 1000 bytes"):
            await echo.tell(b"x" * 2000)
        assert await echo.ask("small", timeout=5) == "small"


async def test_refs_and_runtime_used_after_exit_raise_runtime_closed(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        echo = await rt.spawn(Echo)
    with pytest.raises(RuntimeClosedError, match="no actor runtime is running"):
        await echo.tell("late")
    with pytest.raises(RuntimeClosedError, match="this Runtime has exited"):
        await rt.spawn(Echo)


async def test_bad_ask_timeout_is_refused(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        echo = await rt.spawn(Echo)
        with pytest.raises(ValueError, match="positive number of seconds"):
            await echo.ask("x", timeout=0)


@pytest.mark.parametrize("value", [-1, 0.5, "fast"])
async def test_bad_busy_poll_is_refused(tmp_path: Path, value: object) -> None:
    with pytest.raises(ValueError, match="busy_poll must be between 0 and 0.01 seconds"):
        Runtime(log_dir=tmp_path, busy_poll=value)  # type: ignore[arg-type]


async def test_a_bad_busy_poll_in_the_environment_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACTORS_BUSY_POLL", "fast")
    with pytest.raises(ValueError, match="ACTORS_BUSY_POLL must be a number of seconds"):
        Runtime(log_dir=tmp_path)
    monkeypatch.setenv("ACTORS_BUSY_POLL", "0")
    assert Runtime(log_dir=tmp_path).config.busy_poll == 0.0
