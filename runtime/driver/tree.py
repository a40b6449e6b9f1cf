"""ActorTree: starts, watches, restarts and stops every actor process of a run.

It holds the supervision tree (``_supervision``) and applies OTP semantics to it: restart
types, strategies, restart intensity with escalation, and stopping in reverse start
order with a deadline, then SIGTERM, then SIGKILL. Exits are seen through each process's
sentinel (no polling); hangs through heartbeats on the control channel.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.abc import UNIXSocketStream

from actors import (
    ActorDeadError,
    ActorNameTakenError,
    ActorNotFoundError,
    ActorRef,
    ActorsError,
    ActorStartError,
    Backoff,
    EscalationError,
    Failure,
    InvalidSpawnError,
    RuntimeClosedError,
    Supervisor,
    Terminated,
)

from .._spawning import ActorSpec, ChildOptions
from ..observe.logging import Log, LogConfig, safe_name
from ..shm.pool import orphan_pool
from ..shm.segments import segments_of, unlink_segments
from ..wire.control import ControlChannel, ControlClosedError
from ..wire.rundir import RunDirectory
from ..wire.transport import Transport
from .process_host import Host
from .supervision import ActorRecord, Life, ShutdownReport, SupervisorNode

__all__ = ["ActorTree", "TreeConfig"]

_TERM_WAIT = 1.0
_KILL_WAIT = 5.0
_DUMP_WAIT = 1.0
_MAX_STACK = 16_000
#: how an incarnation ended when it was not asked to: ``requested`` is the only normal end
_NORMAL = "requested"

Child = ActorRecord | SupervisorNode


@dataclass(frozen=True)
class TreeConfig:
    """The runtime's settings that the tree applies to every actor."""

    stop_timeout: float
    start_timeout: float
    max_message_size: int
    shm_threshold: int | None
    restart_wait: float
    heartbeat_interval: float
    hang_timeout: float | None
    busy_poll: float


class ActorTree:
    """Every actor of the run, under the root supervisor."""

    def __init__(
        self,
        config: TreeConfig,
        host: Host,
        rundir: RunDirectory,
        log_config: LogConfig,
        log: Log,
        on_escalation: Callable[[EscalationError], None],
    ) -> None:
        self.config = config
        self.host = host
        self.rundir = rundir
        self.log_config = log_config
        self.log = log
        self.on_escalation = on_escalation
        self.records: dict[str, ActorRecord] = {}
        self.ended: dict[str, ActorRecord] = {}
        self.names: dict[str, ActorRecord] = {}
        self.nodes: dict[str, SupervisorNode] = {}
        self.root = self._node("root", "one_for_one", 3, 5.0, None, None, None)
        self._ids = itertools.count(1)
        self._node_ids = itertools.count(1)
        self._auto_names: dict[str, itertools.count[int]] = {}
        self._supervising = anyio.Lock()
        self.tg: anyio.abc.TaskGroup
        self.transport: Transport
        self.open = True
        self.report = ShutdownReport()
        #: control requests from actors, served by the runtime
        self.serve_request: Callable[[ActorRecord, int, str, tuple[Any, ...]], Any]

    # -- nodes -----------------------------------------------------------------------------

    def _node(
        self,
        name: str,
        strategy: str,
        max_restarts: int,
        period: float,
        backoff: Backoff | None,
        parent: SupervisorNode | None,
        owner: ActorRecord | None,
    ) -> SupervisorNode:
        node_id = "root" if parent is None and owner is None else f"s{next(self._node_ids)}"
        node = SupervisorNode(node_id, name, strategy, max_restarts, period, backoff, parent, owner)
        self.nodes[node_id] = node
        if parent is not None:
            parent.children.append(node)
        return node

    def add_supervisor(
        self,
        name: str | None,
        strategy: str,
        max_restarts: int,
        period: float,
        backoff: Backoff | None,
        parent: SupervisorNode,
        owner: ActorRecord | None,
    ) -> Supervisor:
        """Create a supervisor under ``parent``; return its handle."""
        if strategy not in ("one_for_one", "one_for_all", "rest_for_one"):
            raise ValueError(
                f"strategy must be 'one_for_one', 'one_for_all' or 'rest_for_one', not {strategy!r}"
            )
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ValueError(f"max_restarts must be an int >= 0, not {max_restarts!r}")
        if not (isinstance(period, (int, float)) and period > 0):
            raise ValueError(f"period must be a positive number of seconds, not {period!r}")
        if backoff is not None and not isinstance(backoff, Backoff):
            raise TypeError(f"backoff must be an actors.Backoff or None, not {backoff!r}")
        label = name or f"supervisor-{next(self._node_ids)}"
        node = self._node(label, strategy, max_restarts, float(period), backoff, parent, owner)
        self.log.info(
            "supervisor.started",
            supervisor=label,
            supervisor_id=node.node_id,
            strategy=strategy,
            max_restarts=max_restarts,
            period_s=period,
            parent=parent.name,
        )
        return Supervisor(node.node_id, label)

    def node_for(self, handle: Supervisor | None, owner: ActorRecord | None) -> SupervisorNode:
        """The node a new child goes under: the given supervisor, the owner's, or the root."""
        if handle is not None:
            if not isinstance(handle, Supervisor):
                raise InvalidSpawnError(f"supervisor must be an actors.Supervisor, not {handle!r}")
            node = self.nodes.get(handle.supervisor_id)
            if node is None or node.ended:
                raise InvalidSpawnError(f"{handle!r} has ended; create a new supervisor")
            return node
        if owner is None:
            return self.root
        if owner.own_node is None or owner.own_node.ended:
            owner.own_node = self._node(
                f"{owner.name}/children", "one_for_one", 3, 5.0, None, None, owner
            )
        return owner.own_node

    # -- spawning --------------------------------------------------------------------------

    def name_for(self, class_name: str, name: str | None) -> str:
        if name is None:
            counter = self._auto_names.setdefault(class_name, itertools.count(1))
            auto = f"{class_name.lower()}-{next(counter)}"
            while auto in self.names:
                auto = f"{class_name.lower()}-{next(counter)}"
            return auto
        if not isinstance(name, str) or not name or len(name) > 200:
            raise InvalidSpawnError(f"an actor name must be a non-empty str, not {name!r}")
        if name in self.names or name == "main":
            raise ActorNameTakenError(name)
        return name

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
        name = self.name_for(class_name, name)
        actor_id = f"a{next(self._ids)}"
        ref = ActorRef(actor_id, name, self.rundir.socket_path(actor_id))
        rec = ActorRecord(ref, class_name, payload, size, options, node, parent_id)
        self.records[actor_id] = rec
        self.names[name] = rec
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
        rec.lives += 1
        life = Life(rec.lives)
        rec.life = life
        box = f"{rec.ref.actor_id}.{life.number}"
        spec = ActorSpec(
            actor_id=rec.ref.actor_id,
            name=rec.name,
            address=rec.ref.address,
            mailbox_size=rec.mailbox_size,
            payload=rec.payload,
            log=self.log_config,
            max_message_size=self.config.max_message_size,
            stop_timeout=self.config.stop_timeout,
            runtime_pid=os.getpid(),
            peers=frozenset({os.getpid(), *self.live_pids()}),
            run_dir=str(self.rundir.path),
            shm_threshold=self.config.shm_threshold,
            incarnation=life.number,
            box=box,
            on_error=rec.options.on_error,
            heartbeat_interval=self.config.heartbeat_interval,
            busy_poll=self.config.busy_poll,
            failure=rec.failure,
        )
        ours, theirs = socket.socketpair()
        try:
            life.process = await self.host.start(f"actor:{rec.name}", pickle.dumps(spec), theirs)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        life.pid = life.process.pid
        life.control = ControlChannel(await UNIXSocketStream.from_socket(ours))
        self.tg.start_soon(self._watch, rec, life)
        self.log.info(
            "actor.spawned",
            actor=rec.name,
            actor_id=rec.ref.actor_id,
            pid=life.pid,
            actor_class=rec.class_name,
            parent=rec.parent_id or "main",
            supervisor=rec.node.name,
            incarnation=life.number,
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
            assert life.process is not None
            life.process.kill()
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

    def live_pids(self) -> list[int]:
        return [
            r.life.pid
            for r in self.records.values()
            if r.life is not None and r.life.pid and not r.life.exited.is_set()
        ]

    def _forget(self, rec: ActorRecord, reason: str) -> None:
        """``rec`` has ended for good: free its name, tell its watchers."""
        if rec.state == "ended":
            return
        rec.end_reason = reason
        rec.set_state("ended")
        self.records.pop(rec.ref.actor_id, None)
        self.ended[rec.ref.actor_id] = rec
        if self.names.get(rec.name) is rec:
            del self.names[rec.name]
        if rec in rec.node.children:
            rec.node.children.remove(rec)
        self.report.restarts[rec.name] = rec.restarts
        for watcher_id in rec.watchers:
            watcher = self.records.get(watcher_id)
            if watcher is not None and watcher.state in ("running", "starting", "restarting"):
                self.tg.start_soon(self._notify, watcher.ref, Terminated(rec.ref, reason))
        rec.watchers.clear()
        # it no longer watches anything either
        for other in self.records.values():
            other.watchers.discard(rec.ref.actor_id)

    async def notify_now(self, watcher: ActorRef, target: ActorRef, reason: str) -> None:
        """Tell ``watcher`` that ``target``, already gone, has ended."""
        await self._notify(watcher, Terminated(target, reason))

    async def _notify(self, watcher: ActorRef, message: Terminated) -> None:
        with contextlib.suppress(ActorsError):  # the watcher went too: nobody to tell
            await self.transport.tell(watcher, message)

    # -- lookups ---------------------------------------------------------------------------

    def lookup(self, name: str) -> ActorRef:
        rec = self.names.get(name)
        if rec is None or rec.state in ("starting", "ended"):
            raise ActorNotFoundError(name)
        return rec.ref

    def record_of(self, ref: ActorRef) -> ActorRecord:
        rec = self.records.get(ref.actor_id)
        if rec is None or rec.ref != ref:
            raise ActorNotFoundError(ref.name)
        return rec

    def explain(self, ref: ActorRef) -> str:
        rec = self.ended.get(ref.actor_id)
        if rec is None:
            rec = self.records.get(ref.actor_id)
            if rec is None:
                return "unreachable"
            return "restarting" if rec.state in ("down", "restarting") else "unreachable"
        return "stopped" if rec.end_reason in ("stopped", _NORMAL, "shutdown") else "died"

    async def await_actor(self, ref: ActorRef, since: float) -> None:
        """Return once ``ref`` has an incarnation that started after ``since``.

        A sender whose connect failed at ``since`` calls this: it waits (at most
        ``restart_wait`` seconds) while the actor is being restarted.

        Raises:
            ActorDeadError: it has ended, or is not back in time.
        """
        rec = self.records.get(ref.actor_id)
        if rec is None or rec.ref != ref:
            raise ActorDeadError(ref.name, self.explain(ref))
        with anyio.move_on_after(self.config.restart_wait):
            while True:
                if rec.state == "ended":
                    raise ActorDeadError(ref.name, self.explain(ref))
                life = rec.life
                if rec.state == "running" and life is not None and life.running_at > since:
                    return
                await rec.changed.wait()
        raise ActorDeadError(
            ref.name,
            "restarting",
            f"not back within restart_wait={self.config.restart_wait:g} s",
        )

    # -- watching incarnations ---------------------------------------------------------------

    async def _watch(self, rec: ActorRecord, life: Life) -> None:
        assert life.process is not None
        assert life.control is not None
        async with anyio.create_task_group() as tg:
            tg.start_soon(life.control.run_writer)
            tg.start_soon(self._read_control, rec, life)
            tg.start_soon(self._monitor, rec, life)
            code = await life.process.wait()
            # the child's last control messages ("stopped") are still in the socket
            with anyio.move_on_after(1.0):
                await life.control_done.wait()
            tg.cancel_scope.cancel()
        await life.control.aclose()
        life.exit_code = code
        life.exit_reason = self._exit_reason(life, code)
        rec.add_report(life)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(rec.ref.address)
        # large arrays sent to it and never read: nobody else will map them
        unlink_segments(segments_of(self.rundir.run_id, f"m{rec.ref.actor_id}.{life.number}_"))
        # and the segments it lent out: free ones go now, lent ones when their reader is done
        orphan_pool(self.rundir.run_id, f"{rec.ref.actor_id}.{life.number}")
        fields: dict[str, Any] = {}
        if life.stop_report is not None:
            _, fields["handled"], fields["failed"], fields["dead_lettered"] = life.stop_report[:4]
            if life.stop_report[5]:
                fields["error_type"] = life.stop_report[5]
        # an incarnation that never got ready is handled by whoever started it
        unexpected = life.stop_requested is None and life.running.is_set()
        level = (
            self.log.info if code == 0 and not life.killed and not life.hung else self.log.warning
        )
        level(
            "actor.exited",
            actor=rec.name,
            actor_id=rec.ref.actor_id,
            pid=life.pid,
            incarnation=life.number,
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
            return life.stop_report[0]
        return f"exit:{code}"

    async def _read_control(self, rec: ActorRecord, life: Life) -> None:
        assert life.control is not None
        try:
            while True:
                item = await life.control.receive()
                kind = item[0]
                if kind == "hb":
                    life.last_beat = time.monotonic()
                    life.handling_since = float(item[1])
                elif kind == "ready":
                    life.running_at = time.monotonic()
                    life.last_beat = life.running_at
                    life.running.set()
                elif kind == "start_failed":
                    life.start_error = (str(item[1]), str(item[2]), str(item[3]))
                elif kind == "stopped":
                    reason, handled, failed, dead, in_doubt, error_type, error = item[1:8]
                    life.stop_report = (
                        str(reason),
                        int(handled),
                        int(failed),
                        int(dead),
                        int(in_doubt),
                        str(error_type),
                        str(error),
                    )
                elif kind == "request":
                    self.tg.start_soon(self._serve, rec, life, item[1], item[2], item[3:])
        except ControlClosedError:
            pass
        finally:
            life.control_done.set()

    async def _serve(
        self, rec: ActorRecord, life: Life, rid: int, op: str, args: tuple[Any, ...]
    ) -> None:
        from ..wire.codec import dumps_error

        assert life.control is not None
        try:
            value = await self.serve_request(rec, rid, op, args)
        except Exception as exc:
            life.control.send("reply", rid, False, dumps_error(exc))
        else:
            life.control.send("reply", rid, True, value)

    async def _monitor(self, rec: ActorRecord, life: Life) -> None:
        """Kill the incarnation if its loop stops beating, or a message overruns."""
        interval = self.config.heartbeat_interval
        hang = rec.options.hang_timeout or self.config.hang_timeout
        deadline = rec.options.message_deadline
        if hang is None and deadline is None:
            return
        await life.running.wait()
        while not life.exited.is_set() and life.stop_requested is None:
            await anyio.sleep(interval)
            now = time.monotonic()
            silent = now - life.last_beat
            why = ""
            if hang is not None and silent > hang:
                why = f"no heartbeat for {silent:.1f} s (hang_timeout={hang:g} s)"
            elif deadline is not None:
                since = life.handling_since
                if since and now - since > deadline:
                    why = f"one message handled for {now - since:.1f} s (deadline {deadline:g} s)"
                elif silent > deadline + 2 * interval:
                    why = f"event loop blocked for {silent:.1f} s (deadline {deadline:g} s)"
            if why and not life.exited.is_set() and life.stop_requested is None:
                await self._kill_hung(rec, life, why)
                return

    async def _kill_hung(self, rec: ActorRecord, life: Life, why: str) -> None:
        assert life.process is not None
        stem = f"{safe_name(rec.name)}.{rec.ref.actor_id}.{life.pid}"
        stderr = Path(self.log_config.log_dir) / f"{stem}.stderr"
        before = _size(stderr)
        life.hung = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(life.pid, signal.SIGUSR1)  # faulthandler dumps every thread's stack
        stack = ""
        with anyio.move_on_after(_DUMP_WAIT):
            while True:
                await anyio.sleep(0.02)
                size = _size(stderr)
                if size > before and size == _size(stderr):
                    stack = _read_from(stderr, before)
                    if "File" in stack:
                        break
        self.log.error(
            "actor.hung",
            actor=rec.name,
            actor_id=rec.ref.actor_id,
            pid=life.pid,
            incarnation=life.number,
            why=why,
            stack=stack,
            stack_file=str(stderr),
        )
        life.process.kill()

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
            error_type, error = "", ""
            if life.stop_report is not None:
                error_type, error = life.stop_report[5], life.stop_report[6]
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
                await anyio.sleep(delay)
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

    async def stop(self, rec: ActorRecord, reason: str = "stopped") -> None:
        """Stop ``rec`` for good (and first its children): it will not be restarted."""
        async with self._supervising:
            await self._stop_child(rec, reason, final=True)

    async def _stop_child(self, child: Child, reason: str, *, final: bool) -> None:
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

    async def _end_node(self, node: SupervisorNode, reason: str, *, final: bool = True) -> None:
        """Stop a node's children newest first; a final end also removes them."""
        for child in reversed(list(node.children)):
            await self._stop_child(child, reason, final=final)
        if final:
            node.ended = True
            self.nodes.pop(node.node_id, None)
            if node.parent is not None and node in node.parent.children:
                node.parent.children.remove(node)

    async def _stop_life(self, rec: ActorRecord, life: Life, reason: str) -> None:
        """Stop in order; after ``stop_timeout`` SIGTERM, then SIGKILL. Returns once exited."""
        if life.exited.is_set() or life.process is None:
            return
        if life.stop_requested is None:
            life.stop_requested = reason
        timeout = self.config.stop_timeout
        assert life.control is not None
        life.control.send("stop", timeout, "interrupted" if reason == "interrupted" else reason)
        with anyio.move_on_after(timeout):
            await life.exited.wait()
            return
        self.log.warning(
            "actor.stop_timeout", actor=rec.name, actor_id=rec.ref.actor_id, timeout_s=timeout
        )
        life.process.terminate()
        with anyio.move_on_after(_TERM_WAIT):
            await life.exited.wait()
            return
        life.killed = True
        life.process.kill()
        with anyio.move_on_after(_KILL_WAIT):
            await life.exited.wait()

    async def shutdown(self, reason: str) -> None:
        """Stop every actor, newest first, depth first; fill in the report."""
        self.open = False
        with anyio.CancelScope(shield=True):
            async with self._supervising:
                for child in reversed(list(self.root.children)):
                    await self._stop_child(child, reason, final=True)
        report = self.report
        for rec in sorted(self.ended.values(), key=lambda r: int(r.ref.actor_id[1:])):
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


def _read_from(path: Path, offset: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(_MAX_STACK).decode(errors="replace")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
