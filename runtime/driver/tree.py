"""ActorTree: starts, watches, restarts and stops every incarnation of a run.

It applies OTP semantics to the supervision tree (``policy``): restart types, strategies,
restart intensity with escalation, and stopping in reverse start order with a deadline,
then terminate, then kill. It sees incarnations only through the ``Host`` seam: exits
through ``wait``, hangs through heartbeats on the control link.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc

from actors import (
    ActorRef,
    ActorsError,
    ActorStartError,
    EscalationError,
    Failure,
    InvalidSpawnError,
    RuntimeClosedError,
    StopReason,
    Supervisor,
    Terminated,
)
from actors._context import SupervisorOptions

from .._config import RuntimeConfig
from ..observe.logging import EventLog, LogConfig
from ..wire.codec import dumps_error
from ..wire.control import ControlClosedError
from ..wire.protocol import (
    ActorSpec,
    Answer,
    ChildOptions,
    Heartbeat,
    Ready,
    Request,
    RequestBody,
    StartFailed,
    Stop,
    Stopped,
)
from ..wire.rundir import RunDirectory
from .hosting import Host
from .policy import Clock, SupervisorNode
from .registry import ActorRecord, Life, Registry
from .report import ShutdownReport
from .watchdog import watch_for_hangs

__all__ = ["ActorTree", "Child"]

#: seconds to wait for an incarnation to end after terminate, then after kill
_TERM_WAIT = 1.0
_KILL_WAIT = 5.0
#: seconds an ended incarnation's last control messages may take to arrive
_LAST_WORDS = 1.0
#: how an incarnation ended when it was not asked to: ``requested`` is the only normal end
_NORMAL = "requested"

Child = ActorRecord | SupervisorNode
ServeRequest = Callable[[ActorRecord, RequestBody], Awaitable[object]]
Notify = Callable[[ActorRef, Terminated], Awaitable[None]]


class ActorTree:
    """Every actor of the run, under the root supervisor."""

    def __init__(
        self,
        *,
        config: RuntimeConfig,
        host: Host,
        registry: Registry,
        rundir: RunDirectory,
        log_config: LogConfig,
        log: EventLog,
        tg: anyio.abc.TaskGroup,
        clock: Clock,
        notify: Notify,
        serve_request: ServeRequest,
        on_escalation: Callable[[EscalationError], None],
    ) -> None:
        self.config = config
        self.host = host
        self.registry = registry
        self.rundir = rundir
        self.log_config = log_config
        self.log = log
        self.tg = tg
        self.clock = clock
        self._notify_terminated = notify
        self._serve_request = serve_request
        self.on_escalation = on_escalation
        self.nodes: dict[str, SupervisorNode] = {}
        self._node_ids = itertools.count(1)
        #: the intensity of the root supervisor, and of each actor's own supervisor
        self._default = SupervisorOptions(
            None, "one_for_one", config.max_restarts, config.period, None, None
        )
        self.root = self._node("root", self._default, None, None)
        self._supervising = anyio.Lock()
        self.open = True
        self.report = ShutdownReport()

    # -- nodes -----------------------------------------------------------------------------

    def _node(
        self,
        name: str,
        options: SupervisorOptions,
        parent: SupervisorNode | None,
        owner: ActorRecord | None,
    ) -> SupervisorNode:
        node_id = "root" if parent is None and owner is None else f"s{next(self._node_ids)}"
        node = SupervisorNode(node_id, name, options, parent, owner, self.clock)
        self.nodes[node_id] = node
        if parent is not None:
            parent.children.append(node)
        return node

    def add_supervisor(self, options: SupervisorOptions, parent: SupervisorNode) -> Supervisor:
        """Create a supervisor under ``parent`` (arguments already checked); return its handle."""
        label = options.name or f"supervisor-{next(self._node_ids)}"
        node = self._node(label, options, parent, None)
        self.log.info(
            "supervisor.started",
            supervisor=label,
            supervisor_id=node.node_id,
            strategy=options.strategy,
            max_restarts=options.max_restarts,
            period_s=options.period,
            parent=parent.name,
        )
        return Supervisor(node.node_id, label)

    def node_for(self, handle: Supervisor | None, owner: ActorRecord | None) -> SupervisorNode:
        """The node a new child goes under: the given supervisor, the owner's, or the root."""
        if handle is not None:
            node = self.nodes.get(handle.supervisor_id)
            if node is None or node.ended:
                raise InvalidSpawnError(f"{handle!r} has ended; create a new supervisor")
            return node
        if owner is None:
            return self.root
        if owner.own_node is None or owner.own_node.ended:
            owner.own_node = self._node(f"{owner.name}/children", self._default, None, owner)
        return owner.own_node

    # -- spawning --------------------------------------------------------------------------

    async def spawn(
        self,
        class_name: str,
        payload: bytes,
        name: str | None,
        size: int,
        options: ChildOptions,
        node: SupervisorNode,
        parent_id: str | None,
    ) -> ActorRef:
        """Start a new actor under ``node``; return its ref once its ``on_start`` ran."""
        if not self.open:
            raise RuntimeClosedError("the runtime is shutting down")
        registry = self.registry
        name = registry.name_for(class_name, name)
        actor_id = registry.new_id()
        ref = ActorRef(actor_id, name, self.rundir.socket_path(actor_id))
        rec = ActorRecord(ref, class_name, payload, size, options, node, parent_id)
        registry.add(rec)
        node.children.append(rec)
        try:
            await self._start(rec)
        except BaseException:
            self._forget(rec, "start_failed")
            raise
        return ref

    async def _start(self, rec: ActorRecord) -> None:
        """Start one incarnation of ``rec`` and wait until it is ready.

        Raises:
            ActorStartError: it failed or timed out before being ready.
        """
        number = rec.lives + 1
        spec = ActorSpec(
            actor_id=rec.ref.actor_id,
            name=rec.name,
            address=rec.ref.address,
            mailbox_size=rec.mailbox_size,
            payload=rec.payload,
            config=self.config,
            log=self.log_config,
            options=rec.options,
            runtime_pid=os.getpid(),
            peers=frozenset({os.getpid(), *self.registry.live_pids()}),
            run_dir=str(self.rundir.path),
            incarnation=number,
            box=f"{rec.ref.actor_id}.{number}",
            failure=rec.failure,
        )
        hosted = await self.host.start(f"actor:{rec.name}", spec)
        rec.lives = number
        life = Life(number, hosted, last_beat=time.monotonic())
        rec.life = life
        self.tg.start_soon(self._watch, rec, life)
        self.log.info(
            "actor.spawned",
            **_keys(rec, life),
            actor_class=rec.class_name,
            parent=rec.parent_id or "main",
            supervisor=rec.node.name,
            restart=rec.options.restart,
            mailbox_size=rec.mailbox_size,
        )
        with anyio.move_on_after(self.config.start_timeout) as scope:
            async with anyio.create_task_group() as tg:

                async def settled(event: anyio.Event) -> None:
                    await event.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(settled, life.running)
                tg.start_soon(settled, life.exited)
        if life.running.is_set() and not life.exited.is_set():
            rec.set_state("running")
            return
        life.stop_requested = "start_failed"  # its exit is handled here, not as a crash
        if scope.cancelled_caught:
            hosted.kill()
            await life.exited.wait()
            raise ActorStartError(
                rec.name,
                "TimeoutError",
                f"not ready within start_timeout={self.config.start_timeout:g} s",
            )
        await life.exited.wait()
        if life.start_error is not None:
            raise ActorStartError(rec.name, *life.start_error)
        raise ActorStartError(
            rec.name,
            "ProcessExited",
            f"its process exited with code {life.exit_code} before it was ready",
        )

    def _forget(self, rec: ActorRecord, reason: str) -> None:
        """``rec`` has ended for good: free its name, tell its watchers."""
        if rec.state == "ended":
            return
        rec.end_reason = reason
        rec.set_state("ended")
        if rec in rec.node.children:
            rec.node.children.remove(rec)
        self.report.restarts[rec.name] = rec.restarts
        for watcher_id in rec.watchers:
            watcher = self.registry.records.get(watcher_id)
            if watcher is not None and watcher.state in ("running", "starting", "restarting"):
                self.tg.start_soon(self._notify, watcher.ref, Terminated(rec.ref, reason))
        rec.watchers.clear()
        self.registry.retire(rec)

    async def notify_now(self, watcher: ActorRef, target: ActorRef, reason: str) -> None:
        """Tell ``watcher`` that ``target``, already gone, has ended."""
        await self._notify(watcher, Terminated(target, reason))

    async def _notify(self, watcher: ActorRef, message: Terminated) -> None:
        with contextlib.suppress(ActorsError):  # the watcher went too: nobody to tell
            await self._notify_terminated(watcher, message)

    # -- watching incarnations ---------------------------------------------------------------

    async def _watch(self, rec: ActorRecord, life: Life) -> None:
        hosted = life.hosted
        async with anyio.create_task_group() as tg:
            tg.start_soon(hosted.control.run)
            tg.start_soon(self._read_control, rec, life)
            tg.start_soon(
                watch_for_hangs,
                rec,
                life,
                self.config.heartbeat_interval,
                rec.options.hang_timeout or self.config.hang_timeout,
                self._kill_hung,
            )
            code = await hosted.wait()
            # the incarnation's last control messages (Stopped) may still be on their way
            with anyio.move_on_after(_LAST_WORDS):
                await life.control_done.wait()
            tg.cancel_scope.cancel()
        await hosted.control.aclose()
        life.exit_code = code
        life.exit_reason = self._exit_reason(life, code)
        rec.add_report(life)
        fields: dict[str, object] = {}
        report = life.stop_report
        if report is not None:
            fields["handled"] = report.handled
            fields["failed"] = report.failed
            fields["dead_lettered"] = report.dead_lettered
            if report.error_type:
                fields["error_type"] = report.error_type
        # an incarnation that never got ready is handled by whoever started it
        unexpected = life.stop_requested is None and life.running.is_set()
        clean = code == 0 and not life.killed and not life.hung
        (self.log.info if clean else self.log.warning)(
            "actor.exited",
            **_keys(rec, life),
            exit_code=code,
            reason=life.exit_reason,
            killed=life.killed,
            **fields,
        )
        # its children belonged to this incarnation: they end with it
        if rec.own_node is not None:
            await self._end_node(rec.own_node, "parent_ended")
            rec.own_node = None
        if unexpected:
            rec.set_state("down")
        life.exited.set()
        if unexpected and self.open:
            self.tg.start_soon(self._failed, rec, life)
        elif unexpected:
            self._forget(rec, life.exit_reason)

    @staticmethod
    def _exit_reason(life: Life, code: int) -> str:
        if life.start_error is not None:
            return "start_failed"
        if life.hung:
            return "hung"
        if life.killed:
            return "shutdown_timeout"
        if code < 0:
            try:
                return f"signal:{signal.Signals(-code).name}"
            except ValueError:
                return f"signal:{-code}"
        if life.stop_report is not None and code == 0:
            return life.stop_report.reason
        return f"exit:{code}"

    async def _read_control(self, rec: ActorRecord, life: Life) -> None:
        control = life.hosted.control
        try:
            while True:
                match await control.receive():
                    case Heartbeat(handling_since=since):
                        life.last_beat = time.monotonic()
                        life.handling_since = since
                    case Ready():
                        life.running_at = time.monotonic()
                        life.last_beat = life.running_at
                        life.running.set()
                    case StartFailed(error_type=error_type, error=error, traceback=tb):
                        life.start_error = (error_type, error, tb)
                    case Stopped() as report:
                        life.stop_report = report
                    case Request() as request:
                        self.tg.start_soon(self._serve, rec, life, request)
                    case other:
                        raise ControlClosedError(f"an incarnation sent {type(other).__name__}")
        except ControlClosedError:
            pass
        finally:
            life.control_done.set()

    async def _serve(self, rec: ActorRecord, life: Life, request: Request) -> None:
        try:
            value = await self._serve_request(rec, request.body)
        except Exception as exc:
            answer = Answer(request.request_id, False, dumps_error(exc))
        else:
            answer = Answer(request.request_id, True, value)
        life.hosted.control.send(answer)

    async def _kill_hung(self, rec: ActorRecord, life: Life, why: str) -> None:
        life.hung = True
        dump = await life.hosted.dump_stacks()
        self.log.error(
            "actor.hung",
            **_keys(rec, life),
            why=why,
            stack=dump.text,
            stack_file=dump.where,
        )
        life.hosted.kill()

    # -- failures and restarts -----------------------------------------------------------

    async def _failed(self, rec: ActorRecord, life: Life) -> None:
        """An incarnation ended by itself: apply its supervisor's rules."""
        async with self._supervising:
            if not self.open or rec.state != "down" or rec.life is not life:
                return
            reason = life.exit_reason
            restart = rec.options.restart == "permanent" or (
                rec.options.restart == "transient" and reason != _NORMAL
            )
            if not restart:
                self._forget(rec, reason)
                return
            report = life.stop_report
            error_type, error = (report.error_type, report.error) if report else ("", "")
            rec.failure = Failure(reason, life.number, error_type, error, life.exit_code)
            await self._restart(rec.node, rec, reason)

    async def _restart(self, node: SupervisorNode, child: Child, reason: str) -> None:
        """Restart ``child`` (and siblings, by strategy) or escalate. Holds the lock."""
        while True:
            if not self.open:
                return
            if not node.allow_restart():
                await self._escalate(node, child, reason)
                return
            targets = node.targets(child)
            self.log.warning(
                "supervisor.restarting",
                supervisor=node.name,
                strategy=node.strategy,
                failed=child.name,
                reason=reason,
                restarting=[t.name for t in targets],
                restarts_in_period=len(node.restart_times),
            )
            for sibling in reversed(targets):
                if sibling is not child:
                    await self._stop_child(sibling, "restart", final=False)
            delay = node.delay()
            if delay:
                await self.clock.sleep(delay)
            failed = None
            for target in targets:
                if not await self._start_child(target, child, reason):
                    failed = target
                    break
            if failed is None:
                return
            # a failed restart counts toward the intensity, like any failure
            child, reason = failed, "start_failed"

    async def _start_child(self, target: Child, failed: Child, reason: str) -> bool:
        """Start ``target`` again; False if its start failed."""
        if isinstance(target, SupervisorNode):
            for grandchild in list(target.children):
                if (
                    isinstance(grandchild, ActorRecord)
                    and grandchild.options.restart == "temporary"
                ):
                    self._forget(grandchild, "restart")
                elif not await self._start_child(grandchild, failed, reason):
                    return False
            target.ended = False
            return True
        rec = target
        if rec.state == "ended":
            return True
        if rec is not failed:
            rec.failure = Failure("restart", rec.lives)
        rec.restarts += 1
        rec.set_state("restarting")
        started = time.monotonic()
        try:
            await self._start(rec)
        except ActorStartError as exc:
            self.log.error(
                "actor.restart_failed",
                actor=rec.name,
                actor_id=rec.ref.actor_id,
                error_type=exc.error_type,
                error=exc.error,
            )
            rec.failure = Failure("start_failed", rec.lives, exc.error_type, exc.error)
            rec.set_state("down")
            return False
        self.log.info(
            "actor.restarted",
            actor=rec.name,
            actor_id=rec.ref.actor_id,
            incarnation=rec.lives,
            reason=reason if rec is failed else "restart",
            restart_s=round(time.monotonic() - started, 4),
        )
        return True

    async def _escalate(self, node: SupervisorNode, child: Child, reason: str) -> None:
        self.log.error(
            "supervisor.escalated",
            supervisor=node.name,
            failed=child.name,
            reason=reason,
            max_restarts=node.max_restarts,
            period_s=node.period,
        )
        for sibling in reversed(list(node.children)):
            await self._stop_child(sibling, "escalated", final=node.parent is None)
        if node.parent is not None:
            node.ended = True
            await self._restart(node.parent, node, "escalated")
        elif node.owner is not None:
            # the actor that owns this supervisor fails in turn
            owner = node.owner
            node.ended = True
            if owner.state == "running" and owner.life is not None:
                await self._stop_life(owner, owner.life, "escalated")
                owner.failure = Failure("escalated", owner.lives)
                owner.set_state("down")
                await self._restart(owner.node, owner, "escalated")
        else:
            self.report.escalated = node.name
            self.on_escalation(
                EscalationError(node.name, child.name, reason, node.max_restarts, node.period)
            )

    # -- stopping ------------------------------------------------------------------------

    async def stop(self, rec: ActorRecord, reason: StopReason = "stopped") -> None:
        """Stop ``rec`` for good (and first its children): it will not be restarted."""
        async with self._supervising:
            await self._stop_child(rec, reason, final=True)

    async def _stop_child(self, child: Child, reason: StopReason, *, final: bool) -> None:
        if isinstance(child, SupervisorNode):
            await self._end_node(child, reason, final=final)
            return
        rec = child
        if rec.own_node is not None:
            await self._end_node(rec.own_node, "parent_ended")
            rec.own_node = None
        if rec.life is not None and not rec.life.exited.is_set():
            rec.set_state("stopping")
            await self._stop_life(rec, rec.life, reason)
        if final:
            self._forget(rec, reason)
        elif rec.state != "ended":
            rec.set_state("down")

    async def _end_node(
        self, node: SupervisorNode, reason: StopReason, *, final: bool = True
    ) -> None:
        """Stop a node's children newest first; a final end also removes them."""
        for child in reversed(list(node.children)):
            await self._stop_child(child, reason, final=final)
        if final:
            node.ended = True
            self.nodes.pop(node.node_id, None)
            if node.parent is not None and node in node.parent.children:
                node.parent.children.remove(node)

    async def _stop_life(self, rec: ActorRecord, life: Life, reason: StopReason) -> None:
        """Stop in order; after ``stop_timeout`` terminate, then kill. Returns once exited."""
        if life.exited.is_set():
            return
        if life.stop_requested is None:
            life.stop_requested = reason
        timeout = self.config.stop_timeout
        life.hosted.control.send(Stop(timeout, reason))
        with anyio.move_on_after(timeout):
            await life.exited.wait()
            return
        self.log.warning(
            "actor.stop_timeout", actor=rec.name, actor_id=rec.ref.actor_id, timeout_s=timeout
        )
        life.hosted.terminate()
        with anyio.move_on_after(_TERM_WAIT):
            await life.exited.wait()
            return
        life.killed = True
        life.hosted.kill()
        with anyio.move_on_after(_KILL_WAIT):
            await life.exited.wait()

    async def shutdown(self, reason: StopReason) -> None:
        """Stop every actor, newest first, depth first; fill in the report."""
        self.open = False
        with anyio.CancelScope(shield=True):
            async with self._supervising:
                for child in reversed(list(self.root.children)):
                    await self._stop_child(child, reason, final=True)
        report = self.report
        ended = self.registry.ended.values()
        for rec in sorted(ended, key=lambda r: int(r.ref.actor_id[1:])):
            report.handled[rec.name] = rec.handled
            report.failed[rec.name] = rec.failed
            report.dead_lettered[rec.name] = rec.dead_lettered
            report.restarts[rec.name] = rec.restarts
            report.in_doubt += rec.in_doubt
            if rec.end_reason == reason:
                life = rec.life
                if life is not None and life.killed:
                    report.killed.append(rec.name)
                else:
                    report.stopped.append(rec.name)


def _keys(rec: ActorRecord, life: Life) -> dict[str, object]:
    """The keys naming an incarnation in the driver's log events."""
    return {
        "actor": rec.name,
        "actor_id": rec.ref.actor_id,
        "pid": life.pid,
        "incarnation": life.number,
    }
