"""ActorTree: the run's supervision tree, with OTP semantics.

It applies the policy of each supervisor (``policy``) to the run's actors: restart types,
strategies, restart intensity with escalation, and stopping in reverse start order. It
starts and stops incarnations through ``Incarnations``, which tells it when one exits.
"""

from __future__ import annotations

import contextlib
import itertools
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
    SupervisorNameTakenError,
    Terminated,
)
from actors._context import SupervisorOptions

from .._config import RuntimeConfig
from ..observe.logging import EventLog, LogConfig
from ..wire.protocol import (
    ChildOptions,
)
from ..wire.rundir import RunDirectory
from .hosting import Host
from .incarnations import Incarnations, ServeRequest
from .policy import Clock, SupervisorNode
from .registry import ActorRecord, Life, Registry
from .report import ShutdownReport

__all__ = ["ActorTree", "Child"]

#: how an incarnation ended when it was not asked to: ``requested`` is the only normal end
_NORMAL = "requested"

Child = ActorRecord | SupervisorNode
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
        self.registry = registry
        self.rundir = rundir
        self.log = log
        self.tg = tg
        self.clock = clock
        self._notify_terminated = notify
        self.on_escalation = on_escalation
        self.incarnations = Incarnations(
            config=config,
            host=host,
            registry=registry,
            rundir=rundir,
            log_config=log_config,
            log=log,
            tg=tg,
            serve_request=serve_request,
            on_exit=self._ended,
        )
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
        """Create a supervisor under ``parent`` (arguments already checked); return its handle.

        A name given is unique among the run's live supervisors, as an actor's name is
        among its actors: it is free again once that supervisor has ended (with the actor
        that created it, or for good after an escalation). Without a name it is called
        ``supervisor-<n>`` and never refused; the root and each actor's own supervisor are
        not compared.

        Raises:
            SupervisorNameTakenError: a live supervisor already has ``options.name``.
        """
        if options.name is not None and any(
            other.name == options.name and other.parent is not None and not other.ended
            for other in self.nodes.values()
        ):
            raise SupervisorNameTakenError(options.name)
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
            await self.incarnations.start(rec)
        except BaseException:
            self._forget(rec, "start_failed")
            raise
        return ref

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
            if watcher is not None:
                watcher.watching.discard(rec.ref.actor_id)
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

    async def _ended(self, rec: ActorRecord, life: Life, unexpected: bool) -> None:
        """An incarnation has exited: its children end with it; a failure goes to policy."""
        await self._end_children(rec)
        if not unexpected:
            return
        rec.set_state("down")
        if self.open:
            self.tg.start_soon(self._failed, rec, life)
        else:
            self._forget(rec, life.exit_reason)

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
            # newest first, each once the newer one has finished; all exited before the
            # first start, their exits overlapping meanwhile
            async with anyio.create_task_group() as exits:
                for sibling in reversed(targets):
                    if sibling is not child:
                        await self._stop_child(sibling, "restart", final=False, exits=exits)
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
            await self.incarnations.start(rec)
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
                await self.incarnations.stop(owner, owner.life, "escalated")
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

    async def _stop_child(
        self,
        child: Child,
        reason: StopReason,
        *,
        final: bool,
        exits: anyio.abc.TaskGroup | None = None,
    ) -> None:
        """Stop ``child``; return once it has exited, or with ``exits``, once it has
        finished (it sends nothing more), leaving the wait for its exit to ``exits``."""
        if isinstance(child, SupervisorNode):
            await self._end_node(child, reason, final=final, exits=exits)
            return
        rec = child
        # its children are gone, exits and all, before it stops: it may watch them
        await self._end_children(rec)
        life = rec.life
        if life is not None and not life.exited.is_set():
            rec.set_state("stopping")
            if exits is None:
                await self.incarnations.stop(rec, life, reason)
            else:
                exits.start_soon(self.incarnations.stop, rec, life, reason)
                await life.finished.wait()
        if final:
            self._forget(rec, reason)
        elif rec.state != "ended":
            rec.set_state("down")

    async def _end_children(self, rec: ActorRecord) -> None:
        """End the actor's own children, newest first, and return once all have exited;
        their exits overlap one another, as at the end of a run."""
        if rec.own_node is not None:
            async with anyio.create_task_group() as exits:
                await self._end_node(rec.own_node, "parent_ended", exits=exits)
            rec.own_node = None

    async def _end_node(
        self,
        node: SupervisorNode,
        reason: StopReason,
        *,
        final: bool = True,
        exits: anyio.abc.TaskGroup | None = None,
    ) -> None:
        """Stop a node's children newest first; a final end also removes them."""
        for child in reversed(list(node.children)):
            await self._stop_child(child, reason, final=final, exits=exits)
        if final:
            node.ended = True
            self.nodes.pop(node.node_id, None)
            if node.parent is not None and node in node.parent.children:
                node.parent.children.remove(node)

    async def shutdown(self, reason: StopReason) -> None:
        """Stop every actor, newest first, depth first; fill in the report."""
        self.open = False
        with anyio.CancelScope(shield=True):
            async with self._supervising, anyio.create_task_group() as exits:
                # each stops once the newer ones have finished (they send nothing more);
                # their processes' ends, and what is cleaned up after, overlap
                for child in reversed(list(self.root.children)):
                    await self._stop_child(child, reason, final=True, exits=exits)
        report = self.report
        # in the order they ended: ``stopped`` and ``killed`` list the stop order
        for rec in self.registry.ended.values():
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
