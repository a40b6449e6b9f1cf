"""Assert on the message flow of a run in your own tests, like ``structlog.testing``.

Example::

    async with Runtime(trace=True) as rt:
        with capture_flow(rt) as flow:
            await head.tell(("item", 1))
            await head.ask("barrier")              # everything sent before it is done
        assert flow.messages(receiver="sink", outcome="handled")
        flow.assert_accounted()

Every process writes its own log file as events happen; ``flow`` reads them all, keeping
the events between entering and leaving the ``with`` block.

``ActorHarness`` runs one actor's handlers in the test's own process, with no runtime and
no child process, and records what the actor sends. The pytest fixtures (``actor_runtime``,
``flow``, ``probe``) are in ``runtime.pytest_plugin``; docs/testing.md shows all of it.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio

from actors import (
    Actor,
    ActorContext,
    ActorNotFoundError,
    ActorRef,
    ActorsError,
    AskTimeoutError,
    Reply,
    RuntimeAlreadyRunningError,
    SharedArray,
    SharedSemaphore,
    Supervisor,
    Timer,
    _router,
)
from actors._context import SharedArrayCall, SpawnCall, SupervisorOptions

from .driver.fake_host import FakeClock as FakeClock
from .driver.fake_host import FakeHost as FakeHost
from .driver.fake_host import FakeIncarnation as FakeIncarnation
from .driver.fake_host import HostEvent as HostEvent
from .trace import Message, Run, merge_logs

if TYPE_CHECKING:
    from .driver.runtime import Runtime

__all__ = [
    "ActorHarness",
    "FakeClock",
    "FakeHost",
    "FakeIncarnation",
    "Flow",
    "HarnessUnsupportedError",
    "HostEvent",
    "PendingAsk",
    "Sent",
    "capture_flow",
]

A = TypeVar("A", bound=Actor)


def _name(actor: str | ActorRef) -> str:
    return actor.name if isinstance(actor, ActorRef) else actor


def _type_name(message_type: str | type | None) -> str | None:
    # the logs name a message by its type's qualname, or "tuple:<tag>" for a tagged tuple
    return message_type.__qualname__ if isinstance(message_type, type) else message_type


class Flow:
    """The messages of a run within a time window, joined from every process's log."""

    def __init__(self, log_dir: Path, since: float) -> None:
        self.log_dir = log_dir
        self.since = since
        self.until: float | None = None

    def run(self) -> Run:
        """Read the logs now and join the events of the window."""
        until = self.until if self.until is not None else float("inf")
        events = [e for e in merge_logs(self.log_dir) if self.since <= e["_t"] <= until]
        return Run(events)

    def messages(
        self,
        *,
        sender: str | None = None,
        receiver: str | None = None,
        msg_type: str | None = None,
        outcome: str | None = None,
    ) -> list[Message]:
        """The messages matching every given field, in the order they were sent.

        Each message has exactly one ``outcome``, resolved from every log: what its
        receiver recorded wins over its sender's provisional "in doubt" record; "died"
        when its receiving incarnation died with it unfinished; "in_doubt" when its
        sender's record is all there is (``runtime.trace.Message.outcome``).
        """
        found = [
            m
            for m in self.run().messages.values()
            if (sender is None or m.sender == sender)
            and (receiver is None or m.receiver == receiver)
            and (msg_type is None or m.msg_type == msg_type)
            and (outcome is None or m.outcome == outcome)
        ]
        return sorted(found, key=lambda m: m.sent_at or m.received_at or 0.0)

    def in_doubt(self) -> list[Message]:
        """Messages still in doubt: recorded by their sender, unresolved by the receiver's log."""
        return sorted(self.run().in_doubt(), key=lambda m: m.sent_at or m.outcome_at or 0.0)

    def assert_accounted(self) -> None:
        """Every message sent has exactly one outcome; every cause is in its trace.

        A tell or ask ends handled, failed, dead-lettered, bounced, lost with a receiver
        that died while it held it, or in doubt (its sender's record when the receiver
        died before confirming it, which accounts for it when nothing else does).

        Raises:
            AssertionError: listing the messages that break the rule.
        """
        run = self.run()
        problems = []
        if missing := run.unaccounted():
            problems.append(f"sent, with no outcome: {[m.msg_id for m in missing[:20]]}")
        if unfinished := run.unfinished():
            problems.append(f"received, with no outcome: {[m.msg_id for m in unfinished[:20]]}")
        if twice := run.conflicts():
            problems.append(
                f"more than one outcome: {[(m.msg_id, m.receiver_outcomes) for m in twice[:20]]}"
            )
        if broken := run.broken_links():
            problems.append(f"causes missing or in another trace: {[m.msg_id for m in broken]}")
        if problems:
            raise AssertionError("; ".join(problems))

    def assert_received(
        self,
        receiver: str | ActorRef,
        message_type: str | type | None = None,
        *,
        sender: str | ActorRef | None = None,
        outcome: str | None = "handled",
        count: int | None = None,
    ) -> list[Message]:
        """Assert that ``receiver`` got matching messages; return them, oldest first.

        ``message_type`` is a class (matched by name) or the name the logs use:
        ``"tuple:item"`` for ``("item", ...)``. ``sender`` is an actor (name or ref), or
        ``"main"`` for the script. ``outcome=None`` accepts any outcome; ``count`` asks
        for exactly that many (default: at least one).

        Example::

            with capture_flow(rt) as flow:
                await head.tell(("item", 1))
                await head.ask("barrier")
            flow.assert_received("sink", "tuple:item", sender="middle")

        Raises:
            AssertionError: no match (or not ``count``); the message lists what
                ``receiver`` got instead.
        """
        to = _name(receiver)
        kind = _type_name(message_type)
        by = None if sender is None else _name(sender)
        got = self.messages(receiver=to)
        found = [
            m
            for m in got
            if (kind is None or m.msg_type == kind)
            and (by is None or m.sender == by)
            and (outcome is None or m.outcome == outcome)
        ]
        if (count is None and found) or (count is not None and len(found) == count):
            return found
        wanted = " ".join(
            f"{k}={v!r}"
            for k, v in (("type", kind), ("sender", by), ("outcome", outcome))
            if v is not None
        )
        many = "at least one" if count is None else f"exactly {count}"
        instead = [f"{m.msg_type} from {m.sender} ({m.outcome})" for m in got[:30]]
        more = f" and {len(got) - 30} more" if len(got) > 30 else ""
        raise AssertionError(
            f"{to} should have received {many} message with {wanted or 'any fields'}, "
            f"got {len(found)}; it received: {instead or 'nothing'}{more}"
        )

    def assert_order(
        self, sender: str | ActorRef, receiver: str | ActorRef, types: list[str | type]
    ) -> list[Message]:
        """Assert that ``sender`` sent ``receiver`` messages of ``types`` in that order.

        Other messages between the two may come before, between or after them; the
        matched messages are returned. Messages from one sender to one receiver arrive
        in the order they were sent, so this is also the order they were received.

        Example::

            flow.assert_order("main", "worker", ["tuple:open", "tuple:write", "tuple:close"])

        Raises:
            AssertionError: the types are not all there in that order; the message lists
                what was sent.
        """
        by, to = _name(sender), _name(receiver)
        wanted = [_type_name(t) for t in types]
        sent = self.messages(sender=by, receiver=to)
        matched: list[Message] = []
        for m in sent:
            if len(matched) < len(wanted) and m.msg_type == wanted[len(matched)]:
                matched.append(m)
        if len(matched) == len(wanted):
            return matched
        raise AssertionError(
            f"{by} should have sent {to} {wanted} in this order; "
            f"it sent: {[m.msg_type for m in sent[:50]] or 'nothing'}"
        )


@contextmanager
def capture_flow(rt: Runtime) -> Iterator[Flow]:
    """Capture the message flow of ``rt`` (which must trace) while the block runs."""
    if not rt.config.trace:
        raise ValueError(
            "capture_flow needs per-message events: create the runtime with "
            "Runtime(trace=True) or set ACTORS_TRACE=1"
        )
    flow = Flow(rt.log_dir, time.time())
    try:
        yield flow
    finally:
        flow.until = time.time()


# -- handlers without processes --------------------------------------------------------------


class HarnessUnsupportedError(ActorsError, NotImplementedError):
    """An actor under ``ActorHarness`` asked for a service only a real runtime has."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(
            f"{what} needs a real runtime; test this actor with the actor_runtime fixture "
            "(or Runtime) instead of ActorHarness"
        )

    def __reduce__(self) -> tuple[type[HarnessUnsupportedError], tuple[str]]:
        return (type(self), (self.what,))


@dataclass(frozen=True, slots=True)
class Sent:
    """A message the actor under ``ActorHarness`` sent: to whom, what, and how."""

    to: str
    message: object
    ask: bool = False


@dataclass(slots=True)
class ScheduledTimer:
    """A ``send_after`` (``repeat`` False) or ``send_every`` the actor scheduled.

    Nothing fires by itself: deliver ``message`` with ``harness.tell`` to play a tick.
    """

    delay: float
    message: object
    repeat: bool
    cancelled: bool = False

    def cancel(self) -> None:
        """Mark it cancelled, as ``Timer.cancel`` does."""
        self.cancelled = True


class PendingAsk:
    """The answer to an ``ActorHarness.ask_deferred``, given now or later by a ``Reply``.

    Example::

        pending = await harness.ask_deferred("total")
        assert not pending.done                     # the actor called defer_reply()
        await harness.tell(("count", 5))            # ...and settles it here
        assert pending.result() == 5
    """

    def __init__(self, actor: str) -> None:
        self._actor = actor
        self._event = anyio.Event()
        self._ok = False
        self._value: object = None
        #: whether the handler called ``defer_reply()``
        self.deferred = False

    @property
    def done(self) -> bool:
        """Whether the ask has its answer (a value or an exception)."""
        return self._event.is_set()

    def _settle(self, ok: bool, value: object) -> None:
        self._ok, self._value = ok, value
        self._event.set()

    def result(self) -> Any:
        """The answer, or the handler's exception raised again.

        Raises:
            AssertionError: not answered yet (the actor deferred its reply).
        """
        if not self.done:
            raise AssertionError(
                f"{self._actor} deferred its reply and has not settled it yet; send it the "
                "message that settles it, or await pending.wait()"
            )
        if not self._ok:
            assert isinstance(self._value, BaseException)
            raise self._value
        return self._value

    async def wait(self, timeout: float = 5.0) -> Any:
        """Wait for the answer (settled by a task of the actor); return ``result()``.

        Raises:
            AskTimeoutError: not settled within ``timeout`` seconds.
        """
        with anyio.move_on_after(timeout):
            await self._event.wait()
        if not self.done:
            raise AskTimeoutError(self._actor, timeout)
        return self.result()


class _RecordingRouter:
    """Delivers nothing: records every message sent through a ref while a harness runs."""

    def __init__(self, harness: ActorHarness[Any]) -> None:
        self._harness = harness

    async def tell(self, ref: ActorRef, message: object) -> None:
        self._harness.sent.append(Sent(ref.name, message))

    def tell_nowait(self, ref: ActorRef, message: object) -> None:
        self._harness.sent.append(Sent(ref.name, message))

    async def ask(self, ref: ActorRef, message: object, timeout: float) -> Any:
        self._harness.sent.append(Sent(ref.name, message, ask=True))
        answer = self._harness._answers.get(ref.name)
        return None if answer is None else answer(message)


class _HarnessContext(ActorContext):
    """``self.context`` under a harness: records spawns, stops, watches and timers."""

    def __init__(self, harness: ActorHarness[Any]) -> None:
        self._harness = harness

    @property
    def run_id(self) -> str:
        return "harness"

    async def lookup(self, name: str) -> ActorRef:
        ref = self._harness._refs.get(name)
        if ref is None:
            raise ActorNotFoundError(name)
        return ref

    async def stop(self, ref: ActorRef | None = None) -> None:
        self._harness.stopped.append(self._harness.name if ref is None else ref.name)

    async def watch(self, ref: ActorRef) -> None:
        self._harness.watched.add(ref.name)

    async def unwatch(self, ref: ActorRef) -> None:
        self._harness.watched.discard(ref.name)

    def send_after(self, delay: float, message: object) -> Timer:
        timer = ScheduledTimer(delay, message, repeat=False)
        self._harness.timers.append(timer)
        return timer

    def send_every(self, interval: float, message: object) -> Timer:
        timer = ScheduledTimer(interval, message, repeat=True)
        self._harness.timers.append(timer)
        return timer

    async def semaphore(self, value: int, *, name: str | None = None) -> SharedSemaphore:
        raise HarnessUnsupportedError("context.semaphore()")

    async def free(self, handle: SharedArray | SharedSemaphore) -> None:
        raise HarnessUnsupportedError("context.free()")

    async def _spawn(self, call: SpawnCall) -> ActorRef:
        self._harness.spawned.append(call)
        name = call.name or f"{call.actor_class.__name__}-{len(self._harness.spawned)}"
        return self._harness.ref(name)

    async def _supervisor(self, options: SupervisorOptions) -> Supervisor:
        raise HarnessUnsupportedError("context.supervisor()")

    async def _shared_array(self, call: SharedArrayCall) -> SharedArray:
        raise HarnessUnsupportedError("shared arrays")


_ids = itertools.count(1)


class ActorHarness(Generic[A]):
    """Run one actor's handlers in the test's process: no runtime, no child process.

    Entering builds the actor (its ``__init__`` gets ``args`` and ``kwargs``, or
    ``init_kwargs`` for keywords named like the harness's own) and runs ``on_start``;
    leaving runs ``on_stop``. ``tell`` and ``ask`` call ``receive`` directly, one message
    at a time. Whatever the actor sends through any ref (its context's, ones given to it,
    its own) is recorded in ``sent``, not delivered; ``harness.ref(name)`` makes refs to
    hand it, and ``answer=`` says what an ask to one returns. ``spawned``, ``stopped``,
    ``watched`` and ``timers`` record the rest of ``self.context``.

    Example::

        async with ActorHarness(Forwarder) as harness:
            sink = harness.ref("sink")
            await harness.tell(("target", sink))
            assert await harness.ask("ping") == "pong"
            assert harness.sent_to("sink") == [...]

    Refs deliver through a process-wide router, so a harness cannot run beside a
    ``Runtime`` in the same process (``RuntimeAlreadyRunningError``).
    """

    def __init__(
        self,
        actor_class: type[A],
        *args: Any,
        name: str | None = None,
        init_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.actor_class = actor_class
        self.name = name or f"{actor_class.__name__}-harness"
        self._args = args
        self._kwargs = {**kwargs, **(init_kwargs or {})}
        self._actor: A | None = None
        self._refs: dict[str, ActorRef] = {}
        self._answers: dict[str, Callable[[object], object]] = {}
        self._lock = anyio.Lock()
        self._open: list[PendingAsk] = []
        #: every message the actor sent, in order
        self.sent: list[Sent] = []
        #: every ``context.spawn`` call, as made (each got a recording ref)
        self.spawned: list[SpawnCall] = []
        #: the names of the actors it stopped through its context (its own: itself)
        self.stopped: list[str] = []
        #: the names of the actors it watches
        self.watched: set[str] = set()
        #: its ``send_after`` and ``send_every`` calls
        self.timers: list[ScheduledTimer] = []
        #: the actor's own ref (messages to it are recorded, not delivered)
        self.self_ref = self.ref(self.name)

    @property
    def actor(self) -> A:
        """The actor instance, to inspect its state (once the harness is entered)."""
        if self._actor is None:
            raise RuntimeError("enter the harness first: async with ActorHarness(...) as h:")
        return self._actor

    def ref(self, name: str, *, answer: Callable[[object], object] | None = None) -> ActorRef:
        """A ref named ``name`` whose messages are recorded; ``lookup(name)`` finds it.

        ``answer(message)`` gives what an ask to it returns (default: None).

        Example::

            db = harness.ref("db", answer=lambda q: {"rows": 3})
            await harness.tell(("use", db))
        """
        ref = self._refs.get(name)
        if ref is None:
            ref = self._refs[name] = ActorRef(f"harness-{next(_ids)}", name, f"harness:{name}")
        if answer is not None:
            self._answers[name] = answer
        return ref

    def sent_to(self, target: str | ActorRef, *, ask: bool | None = None) -> list[object]:
        """The messages the actor sent to ``target`` (asks only, or tells only, if given).

        Example::

            assert harness.sent_to("sink") == [("item", 1)]
        """
        to = _name(target)
        return [s.message for s in self.sent if s.to == to and (ask is None or s.ask == ask)]

    async def __aenter__(self) -> ActorHarness[A]:
        if _router.router_installed():
            raise RuntimeAlreadyRunningError()
        _router.install_router(_RecordingRouter(self))
        try:
            actor = self.actor_class(*self._args, **self._kwargs)
            actor._actor_bind(self.self_ref, _HarnessContext(self))
            self._actor = actor
            await actor.on_start()
        except BaseException:
            _router.install_router(None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._actor is not None:
                await self._actor.on_stop()
        finally:
            _router.install_router(None)
            # as in a runtime: an ask left unanswered when the actor stops fails
            for pending in self._open:
                if not pending.done:
                    pending._settle(False, AskTimeoutError(self.name, 0.0))

    async def tell(self, message: object) -> None:
        """Handle ``message`` as if told: ``receive`` runs now; its exception is raised.

        Example::

            await harness.tell(("add", 2))
            assert harness.actor.value == 2
        """
        await self._handle(message, PendingAsk(self.name), is_ask=False)

    async def ask(self, message: object) -> Any:
        """Handle ``message`` as if asked; return the answer, or raise what ``receive`` raised.

        Example::

            assert await harness.ask("get") == 2

        Raises:
            AssertionError: the actor deferred its reply and did not settle it within
                the handler (use ``ask_deferred``).
        """
        return (await self.ask_deferred(message)).result()

    async def ask_deferred(self, message: object) -> PendingAsk:
        """Handle ``message`` as if asked; return its answer-to-be, settled or not.

        Example::

            pending = await harness.ask_deferred("total")
            assert pending.deferred and not pending.done
        """
        pending = PendingAsk(self.name)
        # the ask carries the handler's exception, as a real asker gets it
        with contextlib.suppress(Exception):
            await self._handle(message, pending, is_ask=True)
        return pending

    async def _handle(self, message: object, pending: PendingAsk, *, is_ask: bool) -> None:
        actor = self.actor

        def defer() -> Reply:
            pending.deferred = True
            if is_ask:
                self._open.append(pending)
            return Reply(pending._settle, expected=is_ask)

        async with self._lock:
            actor._actor_set_deferral(defer)
            try:
                value = await actor.receive(message)
            except Exception as exc:
                if not pending.done:
                    pending._settle(False, exc)
                raise
            finally:
                actor._actor_set_deferral(None)
        if not pending.deferred:
            pending._settle(True, value)
