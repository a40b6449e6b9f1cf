"""tell, ask, refs and replies between real actor processes."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from actors import ActorDeadError, ActorRef, AskTimeoutError, RemoteActorError
from runtime import Runtime
from tests.helpers import (
    Echo,
    Faulty,
    Forwarder,
    Holder,
    Latch,
    LoopReporter,
    Recorder,
    Spawner,
    read_events,
)

pytestmark = pytest.mark.anyio


async def test_tell_then_ask_returns_what_the_handler_returned(
    backend: str, tmp_path: Path
) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend) as rt:
        rec = await rt.spawn(Recorder, name="rec")
        await rec.tell(("count", 5))
        rec.tell_nowait(("count", 6))
        assert await rec.ask("log", timeout=5) == [("count", 5), ("count", 6)]


async def test_each_actor_runs_in_its_own_process(backend: str, tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend) as rt:
        a = await rt.spawn(Recorder)
        b = await rt.spawn(Recorder)
        pids = {await a.ask("pid"), await b.ask("pid"), os.getpid()}
        assert len(pids) == 3


async def test_twenty_thousand_tells_arrive_in_order(backend: str, tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend, mailbox_size=64) as rt:
        rec = await rt.spawn(Recorder)
        for i in range(20_000):
            await rec.tell(i)
        assert await rec.ask("log", timeout=30) == list(range(20_000))


async def test_two_actor_senders_keep_their_own_order_into_a_small_mailbox(
    backend: str,
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend) as rt:
        sink = await rt.spawn(Recorder, mailbox_size=8)
        senders = [await rt.spawn(Forwarder) for _ in range(2)]

        async def flood(sender: ActorRef, tag: str) -> None:
            assert await sender.ask(("send-to", sink, 3000, tag), timeout=60) == 3000

        async with anyio.create_task_group() as tg:
            for tag, sender in zip("ab", senders, strict=True):
                tg.start_soon(flood, sender, tag)
        # order holds per sender->receiver pair: each sender's ask comes after its tells
        await senders[0].ask(("ask", sink, "log"), timeout=30)
        seen = await senders[1].ask(("ask", sink, "log"), timeout=30)
        for tag in "ab":
            assert [i for t, i in seen if t == tag] == list(range(3000))


async def test_ref_inside_a_message_lets_actors_talk_directly(backend: str, tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend, trace=True) as rt:
        echo = await rt.spawn(Echo, name="echo")
        fwd = await rt.spawn(Forwarder, name="fwd")
        assert await fwd.ask(("ask", echo, "hello"), timeout=10) == "hello"
        assert await fwd.ask(("tell-nowait", echo, "x"), timeout=10) == "sent"
    from tests.helpers import read_events

    received = [
        e
        for e in read_events(tmp_path)
        if e["event"] == "message.received" and e["actor"] == "echo"
    ]
    assert [e["sender"] for e in received] == ["fwd", "fwd"]  # not relayed by main


async def test_ref_given_as_spawn_argument_works_in_the_child(backend: str, tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend) as rt:
        echo = await rt.spawn(Echo)
        holder = await rt.spawn(Holder, echo)
        assert await holder.ask("via holder", timeout=10) == "via holder"


async def test_ask_timeout_raises_a_timeout_error(backend: str, tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend) as rt:
        latch = await rt.spawn(Latch)
        with pytest.raises(AskTimeoutError, match="did not answer within 0.2 s") as info:
            await latch.ask("wait", timeout=0.2)
        assert isinstance(info.value, TimeoutError)
        assert await latch.ask("waiters", timeout=5) == 1


async def test_handler_exception_fails_the_ask_with_its_type_and_a_resuming_actor_keeps_serving(
    backend: str,
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend) as rt:
        faulty = await rt.spawn(Faulty, on_error="resume")
        pid = await faulty.ask("pid", timeout=5)
        with pytest.raises(ValueError, match="^bad value 42$") as info:
            await faulty.ask("value-error", timeout=5)
        assert "raise ValueError" in str(info.value.__cause__)  # the remote traceback
        await faulty.tell("value-error")  # a failing tell is logged, not fatal
        assert await faulty.ask("ping", timeout=5) == "pong"
        assert await faulty.ask("pid", timeout=5) == pid  # the same process throughout


async def test_exceptions_that_do_not_pickle_arrive_as_remote_actor_error(
    backend: str, tmp_path: Path
) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend) as rt:
        faulty = await rt.spawn(Faulty, on_error="resume")
        with pytest.raises(RemoteActorError, match="UnpicklableError: holds a lock"):
            await faulty.ask("unpicklable-error", timeout=5)
        with pytest.raises(TypeError, match="reply of type _thread.lock cannot be pickled"):
            await faulty.ask("unpicklable-reply", timeout=5)
        assert await faulty.ask("ping", timeout=5) == "pong"


async def test_deferred_reply_answers_later_without_blocking_the_mailbox(
    backend: str, tmp_path: Path
) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend) as rt:
        latch = await rt.spawn(Latch)
        async with anyio.create_task_group() as tg:
            answers: list[str] = []

            async def wait() -> None:
                answers.append(await latch.ask("wait", timeout=10))

            tg.start_soon(wait)
            tg.start_soon(wait)
            with anyio.fail_after(5):
                while await latch.ask("waiters", timeout=5) < 2:
                    pass  # each ask is a barrier: the mailbox keeps being served
            await latch.tell("open")
        assert answers == ["opened", "opened"]


async def test_ask_to_a_stopped_actor_fails_at_once(backend: str, tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend) as rt:
        echo = await rt.spawn(Echo, name="echo")
        await rt.stop(echo)
        with anyio.fail_after(1):
            with pytest.raises(ActorDeadError, match="actor echo has stopped"):
                await echo.ask("anyone?", timeout=30)
            with pytest.raises(ActorDeadError):
                await echo.tell("anyone?")
            with pytest.raises(ActorDeadError):
                echo.tell_nowait("anyone?")
        await rt.stop(echo)  # stopping twice is harmless


async def test_actor_can_spawn_look_up_and_stop_others(backend: str, tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend) as rt:
        spawner = await rt.spawn(Spawner)
        child = await spawner.ask(("spawn", "child"), timeout=30)
        assert await child.ask("hi", timeout=5) == "hi"
        assert await rt.lookup("child") == child
        assert await spawner.ask(("lookup", "child"), timeout=5) == child
        assert await spawner.ask(("stop", child), timeout=30) == "stopped"
        with pytest.raises(ActorDeadError):
            await child.ask("hi", timeout=5)


@pytest.mark.local_only("busy polling reads local sockets; Ray refuses the option")
async def test_with_busy_polling_off_asks_and_tells_behave_the_same(
    backend: str, tmp_path: Path
) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend, busy_poll=0) as rt:
        echo = await rt.spawn(Echo)
        fwd = await rt.spawn(Forwarder)
        rec = await rt.spawn(Recorder)
        assert [await echo.ask(i, timeout=5) for i in range(50)] == list(range(50))
        assert await fwd.ask(("ask", echo, "hi"), timeout=5) == "hi"
        assert await fwd.ask(("send-to", rec, 500, "t"), timeout=10) == 500
        log = await fwd.ask(("ask", rec, "log"), timeout=5)  # behind its tells
        assert log == [("t", i) for i in range(500)]


async def test_tells_batched_in_one_step_keep_their_order_around_asks(
    backend: str, tmp_path: Path
) -> None:
    # tells after the first of a loop step are held and written when the step ends; an ask
    # (written at once) must not overtake them
    async with Runtime(log_dir=tmp_path, backend=backend) as rt:
        rec = await rt.spawn(Recorder)
        expected = []
        for i in range(300):
            if i % 7:
                rec.tell_nowait(("t", i))
            else:
                await rec.tell(("t", i))
            expected.append(("t", i))
            if i % 50 == 49:
                seen = await rec.ask("log", timeout=5)
                assert seen == expected


async def test_a_sender_that_connects_second_can_tell_nowait_at_once(
    backend: str, tmp_path: Path
) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend) as rt:
        rec = await rt.spawn(Recorder)
        await rec.tell("from main")  # the script connected first, and holds credit
        fwd = await rt.spawn(Forwarder)
        assert await fwd.ask(("tell-nowait", rec, "from fwd"), timeout=5) == "sent"
        assert sorted(await rec.ask("log", timeout=5)) == ["from fwd", "from main"]


@pytest.mark.parametrize("busy_poll", [0.0, 0.0002])
async def test_an_actors_batched_tells_arrive_before_its_later_ask_to_the_same_actor(
    backend: str, tmp_path: Path, busy_poll: float
) -> None:
    # the forwarder's tells are held for the end of a loop step, its ask is written at once
    # Ray refuses busy_poll, which only means something for local sockets
    polling = {"busy_poll": busy_poll} if backend == "local" else {}
    async with Runtime(log_dir=tmp_path, backend=backend, **polling) as rt:
        fwd = await rt.spawn(Forwarder)
        rec = await rt.spawn(Recorder)
        sent = 0
        for round_ in range(20):
            sent += await fwd.ask(("send-to", rec, 10 + round_ * 7, "t"), timeout=10)
            log = await fwd.ask(("ask", rec, "log"), timeout=5)
            assert log == [("t", i) for n in range(round_ + 1) for i in range(10 + n * 7)]
            assert len(log) == sent


@pytest.mark.timeout(60)
@pytest.mark.local_only("about busy polling, which passes messages without the event loop")
async def test_a_stream_of_quick_asks_starves_no_event_loop(backend: str, tmp_path: Path) -> None:
    # with busy polling, neither the asker nor the actor needs its event loop to pass a
    # message; both must still let it run, or heartbeats stop and the actor is "hung"
    async with Runtime(
        log_dir=tmp_path, backend=backend, heartbeat_interval=0.05, hang_timeout=0.5
    ) as rt:
        echo = await rt.spawn(Echo)
        deadline = anyio.current_time() + 2.0  # four hang timeouts of asking
        asked = 0
        while anyio.current_time() < deadline:
            await echo.ask(asked, timeout=5)
            asked += 1
        assert asked > 1000
    events = [e["event"] for e in read_events(tmp_path)]
    assert "actor.hung" not in events
    assert "actor.restarted" not in events


@pytest.mark.local_only("actors on Ray run on Ray's event loop; Ray refuses uvloop")
async def test_actors_run_on_uvloop_when_asked_and_messages_flow_as_before(
    backend: str,
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend, uvloop=True) as rt:
        reporter = await rt.spawn(LoopReporter)
        fwd = await rt.spawn(Forwarder)
        rec = await rt.spawn(Recorder)
        assert (await reporter.ask("loop", timeout=5)).startswith("uvloop")
        assert await fwd.ask(("send-to", rec, 500, "t"), timeout=10) == 500
        assert await fwd.ask(("ask", rec, "log"), timeout=5) == [("t", i) for i in range(500)]
    async with Runtime(
        log_dir=tmp_path, backend=backend, uvloop=False
    ) as rt:  # the same forkserver
        reporter = await rt.spawn(LoopReporter)
        assert await reporter.ask("loop", timeout=5) == "asyncio.unix_events"


@pytest.mark.local_only("actors on Ray run on Ray's event loop; Ray refuses uvloop")
async def test_uvloop_asked_for_but_not_installed_is_refused_with_what_to_do(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a)
    )
    monkeypatch.setenv("ACTORS_UVLOOP", "1")
    with pytest.raises(ImportError, match="pip install uvloop"):
        Runtime(log_dir=tmp_path, backend=backend)
