"""RayHost: each incarnation in a Ray actor, on a Ray cluster (the Ray backend's ``Host``).

Runs in the driver. Ray places and runs the actors; everything else stays ours: the
supervisor tree restarts incarnations (Ray's own restarts and retries are off), the
control link carries the same ``protocol`` messages as a local socketpair does, and the
actors are never detached, so they end with the driver.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import pickle
import signal
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from actors import MissingDependencyError

from .._entry import ray_incarnation_host, ray_log_collector
from ..observe.account import Counts, Liveness, account_path, read_account
from ..observe.logging import Log, log_stem, private_file
from ..wire.control import ControlClosedError
from ..wire.protocol import ActorSpec, ControlMessage
from ..wire.ray_transport import EXIT_NOTE, ray_actor_name
from .hosting import UNKNOWN_EXIT, StackDump
from .process_host import format_tasks

__all__ = ["RayCluster", "RayHost"]

#: Ray calls an async actor may run at once: every sender's batch and ask waits in one
_MAX_CONCURRENCY = 10_000
#: seconds to wait for a killed incarnation's actor to be gone (its name is then free)
_GONE_WAIT = 10.0
#: seconds for which the list of the cluster's machines is reused
_NODES_TTL = 2.0
#: seconds a machine may take to hand over the log files of the run's actors
_GATHER_WAIT = 30.0
#: seconds a stack dump may take
_DUMP_WAIT = 2.0
_EXIT_PREFIX = EXIT_NOTE.split("{", 1)[0]
#: what faulthandler writes for a fatal signal, and the signal
_FATAL = {
    "Segmentation fault": signal.SIGSEGV,
    "Aborted": signal.SIGABRT,
    "Bus error": signal.SIGBUS,
    "Floating-point exception": signal.SIGFPE,
    "Illegal instruction": signal.SIGILL,
}


class RayCluster:
    """This driver's connection to Ray: joined, or a local cluster started for the run."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self.started_here = False
        self.joined_here = False

    def connect(self) -> None:
        """Join the cluster (``address``), or start a local one if ``address`` is None.

        Reuses the connection if the script already called ``ray.init``.
        """
        try:
            import ray
        except ImportError:
            raise MissingDependencyError(
                "backend='ray' needs Ray: pip install 'actors-runtime[ray]'"
            ) from None
        if ray.is_initialized():
            return
        ray.init(
            # None would join a cluster named by $RAY_ADDRESS or the last one started on
            # this machine: "local" always starts one for the run, as documented
            address=self.address or "local",
            log_to_driver=False,
            logging_level=logging.WARNING,
            include_dashboard=False,
            configure_logging=False,
            runtime_env={"env_vars": {"PYTHONPATH": _import_path()}},
        )
        self.joined_here = True
        self.started_here = self.address is None

    def disconnect(self) -> None:
        """Leave the cluster if this driver joined it (a local cluster then stops)."""
        if self.joined_here:
            import ray

            ray.shutdown()
            self.joined_here = False


def _import_path() -> str:
    """The script's directory and ``$PYTHONPATH``, for the workers of this job.

    The script's own classes travel by value, but the modules next to it (its package, a
    tests directory) must be importable in the workers too. On other machines these
    paths must hold the same code (a shared file system, or Ray's ``runtime_env``, which
    a script can set up itself by calling ``ray.init`` before the Runtime starts).
    """
    entries = [sys.path[0] or os.getcwd()] if sys.path else [os.getcwd()]
    entries += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(os.path.abspath(p) for p in entries))


class _Link:
    """The driver's end of an incarnation's control link: the ``run`` stream and calls."""

    def __init__(self, handle: Any, stream: Any) -> None:
        self._handle = handle
        self._stream = stream
        self.exit_code: int | None = None
        self.error = ""
        self.ended = anyio.Event()
        self._calls: list[Any] = []

    def send(self, message: ControlMessage) -> None:
        call = self._handle.control.remote(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
        # kept until done: a dropped ObjectRef may be collected before the call is sent
        self._calls = [c for c in self._calls if not _ready(c)]
        self._calls.append(call)

    async def receive(self) -> ControlMessage:
        from ray.exceptions import RayError

        if self.ended.is_set():
            raise ControlClosedError("the incarnation's control link has ended")
        try:
            item = await self._stream.__anext__()
            data: bytes = await item
        except StopAsyncIteration:
            self._end(None, "the control stream ended without a word")
            raise ControlClosedError("the incarnation's control link has ended") from None
        except RayError as exc:
            self._end(None, str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            raise ControlClosedError(f"the incarnation's worker died: {self.error}") from None
        message = pickle.loads(data)
        if isinstance(message, tuple):
            self._end(int(message[1]), "")
            raise ControlClosedError("the incarnation has ended")
        assert not isinstance(message, tuple)
        return message  # type: ignore[no-any-return]

    def _end(self, code: int | None, error: str) -> None:
        """The link ended: with the incarnation's exit code, or None if its worker died."""
        if not self.ended.is_set():
            self.exit_code = code
            self.error = error[:300]
        self.ended.set()

    async def run(self) -> None:
        await anyio.sleep_forever()  # sends are calls of their own: nothing to write here

    async def aclose(self) -> None:
        self.ended.set()


def _ready(call: Any) -> bool:
    import ray

    done, _ = ray.wait([call], timeout=0)
    return bool(done)


class RayIncarnation:
    """One incarnation in a Ray actor, as the driver sees it."""

    def __init__(
        self, handle: Any, link: _Link, spec: ActorSpec, pid: int | None, node: str
    ) -> None:
        self._handle = handle
        self._link = link
        self._spec = spec
        self._pid = pid
        self.node = node
        self.killed = False
        self._account: Counts | None = None

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def control(self) -> _Link:
        return self._link

    @property
    def account(self) -> Counts | None:
        return self._account

    def liveness(self) -> Liveness | None:
        return None  # its account, if any, is on another machine: it beats

    async def wait(self) -> int:
        while not self._link.ended.is_set():
            # the tree's reader consumes the stream; this only waits for its end
            await self._link.ended.wait()
        code = self._link.exit_code
        await self._gone()
        self._account = read_account(account_path(self._spec.run_dir, self._spec.box))
        if code is not None:
            return code
        if self.killed:
            return -signal.SIGKILL
        return self._exit_from_files()

    def _exit_from_files(self) -> int:
        """How the worker ended, from what it left in its .stderr file (on this node)."""
        if self._pid is None:
            return UNKNOWN_EXIT
        stem = log_stem(self._spec.name, self._spec.actor_id, self._pid)
        try:
            text = (self._spec.log.log_dir / f"{stem}.stderr").read_text(errors="replace")
        except OSError:
            return UNKNOWN_EXIT
        for line in reversed(text.splitlines()):
            if line.startswith(_EXIT_PREFIX) and line.endswith(")"):
                with contextlib.suppress(ValueError):
                    return int(line[len(_EXIT_PREFIX) : -1])
        for name, number in _FATAL.items():
            if f"Fatal Python error: {name}" in text:
                return -number
        return UNKNOWN_EXIT

    async def _gone(self) -> None:
        """Make sure the actor is dead (its name free for the next incarnation)."""
        import ray
        from ray.exceptions import RayError

        with contextlib.suppress(Exception):
            ray.kill(self._handle, no_restart=True)
        with anyio.move_on_after(_GONE_WAIT):
            while True:
                try:
                    await self._handle.where.remote()
                except RayError:
                    return
                await anyio.sleep(0.05)  # killed, not yet reported dead

    def terminate(self) -> None:
        self.kill()  # Ray has no gentler end than its kill

    def kill(self) -> None:
        import ray

        self.killed = True
        with contextlib.suppress(Exception):
            ray.kill(self._handle, no_restart=True)

    async def dump_stacks(self) -> StackDump:
        from ray.exceptions import RayError

        try:
            with anyio.fail_after(_DUMP_WAIT):
                text, where, tasks = await self._handle.dump_stacks.remote()
        except (TimeoutError, RayError):
            return StackDump("", f"ray worker {self._pid} on node {self.node[:12]}")
        coroutines = tuple(tasks)
        if coroutines:
            text = f"{text}\n{format_tasks(coroutines)}".lstrip("\n")
        return StackDump(text, where, coroutines)


class RayHost:
    """Starts each incarnation as a Ray actor of the run's namespace."""

    def __init__(self, namespace: str) -> None:
        import ray

        self.namespace = namespace
        #: the driver's node: the run's shared memory lives there
        self.node: str = ray.get_runtime_context().get_node_id()
        #: the machines that hosted an incarnation: their logs are gathered at the end
        self.nodes_used: set[str] = set()
        self._nodes: list[str] = []
        self._nodes_at = -math.inf
        self._turns = itertools.count()
        # concurrency groups can only be declared with the class, not per actor
        declare: Any = ray.remote(concurrency_groups={"control": 2})  # type: ignore[call-overload]
        self._class: Any = declare(ray_incarnation_host())

    def _next_node(self) -> str:
        """The next machine in turn, from the cluster's live nodes (looked up at most once
        every ``_NODES_TTL`` seconds), the driver's first."""
        import ray

        now = time.monotonic()
        if now - self._nodes_at > _NODES_TTL:
            nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
            alive = sorted(n["NodeID"] for n in nodes if n.get("Alive"))
            self._nodes = sorted(alive, key=lambda n: n != self.node)
            self._nodes_at = now
        if not self._nodes:
            return self.node
        return self._nodes[next(self._turns) % len(self._nodes)]

    async def gather_logs(self, run_id: str, log_dir: Path, log: Log) -> None:
        """Copy into ``log_dir`` the log files that actors wrote on other machines."""
        import ray
        from ray.exceptions import RayError
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        collect: Any = ray.remote(num_cpus=0, max_retries=0)(ray_log_collector())
        for node in sorted(self.nodes_used - {self.node}):
            placement = NodeAffinitySchedulingStrategy(node, soft=False)
            try:
                with anyio.fail_after(_GATHER_WAIT):
                    files = await collect.options(scheduling_strategy=placement).remote(run_id)
            except (TimeoutError, RayError) as exc:
                # a machine that has gone took its actors' logs with it
                log.warning("logs.lost", node=node[:12], error_type=type(exc).__name__)
                continue
            for name, data in files:
                target = log_dir / Path(name).name
                with open(target, "ab", opener=private_file) as f:  # noqa: ASYNC230 - at exit
                    f.write(data)
            log.info("logs.gathered", node=node[:12], files=len(files))

    async def start(self, name: str, spec: ActorSpec) -> RayIncarnation:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # one that uses a shared array or semaphore runs where it lives; a new actor takes
        # the live machines in turn, which neither Ray's SPREAD nor a soft affinity
        # promises for actors that hold no CPU; a restart goes wherever Ray finds room,
        # since its machine may be what failed, before Ray's list of machines says so
        placement: Any
        if spec.options.node:
            placement = NodeAffinitySchedulingStrategy(spec.options.node, soft=False)
        elif spec.incarnation == 1:
            placement = NodeAffinitySchedulingStrategy(self._next_node(), soft=False)
        else:
            placement = "DEFAULT"
        handle = self._class.options(
            name=ray_actor_name(spec.actor_id),
            namespace=self.namespace,
            # our supervisor tree is the only thing that restarts or re-runs anything
            max_restarts=0,
            max_task_retries=0,
            max_concurrency=_MAX_CONCURRENCY,
            # an idle actor holds no CPU: a 2-core machine runs hundreds
            num_cpus=0,
            scheduling_strategy=placement,
        ).remote()
        stream = handle.run.remote(pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL))
        pid, node = await handle.where.remote()
        local = node == self.node
        self.nodes_used.add(node)
        return RayIncarnation(handle, _Link(handle, stream), spec, pid if local else None, node)
