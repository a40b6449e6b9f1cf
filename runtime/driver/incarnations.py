"""Incarnations: the driver starts each one, watches it until it exits, and stops it.

Starting waits for the ready handshake; watching reads the control link (heartbeats,
requests, the final account) and the hang watchdog; stopping asks in order, then
terminates, then kills. What an exit means for supervision is the tree's to decide.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc

from actors import ActorStartError, StopReason
from actors._router import current_router, router_installed

from .._config import RuntimeConfig, beat_interval
from ..observe.logging import EventLog, LogConfig
from ..wire.codec import dumps_error
from ..wire.control import ControlClosedError
from ..wire.protocol import (
    ActorSpec,
    Answer,
    Heartbeat,
    Ready,
    Request,
    RequestBody,
    StartFailed,
    Stop,
    Stopped,
)
from ..wire.rundir import RunDirectory, removed_while_running
from ..wire.transport import Transport
from .hosting import UNKNOWN_EXIT, Host
from .registry import ActorRecord, Life, Registry
from .watchdog import HangWatch

__all__ = ["Incarnations", "OnExit", "ServeRequest"]

#: seconds to wait for an incarnation to end after terminate, then after kill
_TERM_WAIT = 1.0
_KILL_WAIT = 5.0
#: seconds an ended incarnation's last control messages may take to arrive
_LAST_WORDS = 1.0

ServeRequest = Callable[[ActorRecord, RequestBody], Awaitable[object]]
#: called once an incarnation has exited: (record, life, whether it ended by itself)
OnExit = Callable[[ActorRecord, Life, bool], Awaitable[None]]


class Incarnations:
    """Starts, watches and stops the incarnations of a run's actors."""

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
        serve_request: ServeRequest,
        on_exit: OnExit,
    ) -> None:
        self.config = config
        self.host = host
        self.registry = registry
        self.rundir = rundir
        #: whether the run directory was found removed (said once in the log)
        self._rundir_gone = False
        self.log_config = log_config
        self.log = log
        self.tg = tg
        self._serve_request = serve_request
        self._on_exit = on_exit
        self._hangs = HangWatch(tg)

    async def start(self, rec: ActorRecord) -> None:
        """Start one incarnation of ``rec`` and wait until it is ready.

        Raises:
            ActorStartError: it failed or timed out before being ready.
        """
        if not self.rundir.path.is_dir():
            if not self._rundir_gone:
                self._rundir_gone = True
                self.log.error("runtime.run_dir_removed", run_dir=str(self.rundir.path))
            raise ActorStartError(
                rec.name, "RunDirectoryRemoved", removed_while_running(self.rundir.path)
            )
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
                f"not ready within start_timeout={self.config.start_timeout:g} s, and "
                "killed; raise start_timeout if its __init__ or on_start is slow. With a "
                "forkserver started afresh (`runtime.forkserver` in the script's log), each "
                "actor process runs the script's top level again first: keep the script's "
                'own work under `if __name__ == "__main__":`',
            )
        await life.exited.wait()
        if life.start_error is not None:
            raise ActorStartError(rec.name, *life.start_error)
        raise ActorStartError(
            rec.name,
            "ProcessExited",
            f"its process exited with code {life.exit_code} before it was ready; what it "
            "printed is on the script's stderr, and a crash in C code is in its .stderr "
            "file in the log directory",
        )

    async def _watch(self, rec: ActorRecord, life: Life) -> None:
        hosted = life.hosted
        async with anyio.create_task_group() as tg:
            tg.start_soon(hosted.control.run)
            tg.start_soon(self._read_control, rec, life)
            tg.start_soon(self._watch_for_hangs, rec, life)
            code = await hosted.wait()
            for hook in self.registry.end_hooks:
                hook(f"{rec.ref.actor_id}.{life.number}")
            if hosted.pid is not None:
                _cut_connections(rec.ref.address, hosted.pid)
            # the incarnation's last control messages (Stopped) may still be on their way
            with anyio.move_on_after(_LAST_WORDS):
                await life.control_done.wait()
            tg.cancel_scope.cancel()
        await hosted.control.aclose()
        life.exit_code = code
        life.exit_reason = self._exit_reason(life, code)
        counts = life.counts()
        rec.add_counts(counts)
        fields: dict[str, object] = {}
        if counts is not None:
            fields["handled"] = counts.handled
            fields["failed"] = counts.failed
            fields["dead_lettered"] = counts.dead_lettered
        if life.stop_report is not None and life.stop_report.error_type:
            fields["error_type"] = life.stop_report.error_type
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
        await self._on_exit(rec, life, unexpected)
        life.finished.set()
        life.exited.set()

    async def _watch_for_hangs(self, rec: ActorRecord, life: Life) -> None:
        await life.running.wait()  # Ready says whether it beats
        await self._hangs.watch(
            rec,
            life,
            beat_interval(self.config, rec.options.hang_timeout, rec.options.message_deadline),
            rec.options.hang_timeout or self.config.hang_timeout,
            self._kill_hung,
        )

    @staticmethod
    def _exit_reason(life: Life, code: int) -> str:
        if life.start_error is not None:
            return "start_failed"
        if life.hung:
            return "hung"
        if life.killed:
            return "shutdown_timeout"
        if code == UNKNOWN_EXIT:
            return "died"
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
                    case Ready(beats=beats):
                        life.beats = beats
                        life.running_at = time.monotonic()
                        life.last_beat = life.running_at
                        life.running.set()
                    case StartFailed(error_type=error_type, error=error, traceback=tb):
                        life.start_error = (error_type, error, tb)
                    case Stopped() as report:
                        life.stop_report = report
                        self.registry.orderly.add(f"{rec.ref.actor_id}.{life.number}")
                        life.finished.set()
                    case Request() as request:
                        self.tg.start_soon(self._serve, rec, life, request)
                    case other:
                        raise ControlClosedError(f"an incarnation sent {type(other).__name__}")
        except ControlClosedError:
            pass
        finally:
            self.registry.ended_at[f"{rec.ref.actor_id}.{life.number}"] = time.time()
            life.control_done.set()
            life.finished.set()

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
            coroutines=list(dump.coroutines),
        )
        life.hosted.kill()

    async def stop(self, rec: ActorRecord, life: Life, reason: StopReason) -> None:
        """Stop in order; after ``stop_timeout`` terminate, then kill. Returns once exited."""
        if life.exited.is_set():
            return
        if life.stop_requested is None:
            life.stop_requested = reason
        timeout = self.config.stop_timeout
        life.hosted.control.send(Stop(timeout, reason))
        if life.pid is not None:
            _stop_sending(rec.ref.address, life.pid)
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


def _stop_sending(address: str, pid: int) -> None:
    """End what the script sends to ``address`` if process ``pid``, which is stopping, is
    at its other end.

    Its mailbox, stopping, hands out what each sender sent up to that sender's end of
    stream, and would ask the script for it (CLOSING): one more round trip between the two
    processes in every stop, and in a shutdown the stops follow one another. A send made
    meanwhile opens a new connection, as after CLOSING: to the restart, or it fails.
    """
    transport = _script_transport()
    conn = None if transport is None else transport.connection_at(address, pid)
    if conn is not None:
        conn.stop_sending()


def _cut_connections(address: str, pid: int) -> None:
    """End the script's connection to ``address`` if process ``pid``, which has exited,
    is at its other end.

    Their end of stream may never come: a process it forked can still hold its sockets
    (a fork made behind Python's back, out of its process group). Ending ours fails the
    asks that wait on them with ActorDeadError now, and the next ones reach the restart.
    """
    transport = _script_transport()
    conn = None if transport is None else transport.connection_at(address, pid)
    if conn is not None:
        conn.shutdown()


def _script_transport() -> Transport | None:
    """The script's transport to local actor processes (None on Ray, or none yet)."""
    if not router_installed():
        return None
    router = current_router()
    return router if isinstance(router, Transport) else None


def _keys(rec: ActorRecord, life: Life) -> dict[str, object]:
    """The keys naming an incarnation in the driver's log events."""
    return {
        "actor": rec.name,
        "actor_id": rec.ref.actor_id,
        "pid": life.pid,
        "incarnation": life.number,
    }
