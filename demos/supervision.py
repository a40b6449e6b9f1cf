"""Supervision at work: workers crash, get killed and hang, and their supervisor restarts them.

Run ``python -m demos.supervision`` (``--help`` for options). Three workers under a
``one_for_one`` supervisor square numbers sent by the script. Some numbers are poison
(the worker raises), a chaos task SIGKILLs a random worker now and then, and one number
makes a worker hang until the runtime's heartbeat check kills it. Every lifecycle event
is printed as it happens, then a summary of what was answered, what failed and what the
supervisor did. ``--escalate`` ends with a crash loop that exceeds the restart intensity:
the supervisor gives up and the error reaches the script.

``--backend ray`` runs the same workers as Ray actors. Ray does not tell how a worker
process ended, so a SIGKILLed worker's exit reads "died" there instead of
"signal:SIGKILL". A worker on another machine of the cluster is made to SIGKILL itself
(its pid means nothing here).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import sys
import time
from typing import Any

import anyio
from rich.console import Console

from actors import (
    Actor,
    ActorDeadError,
    AskTimeoutError,
    EscalationError,
    Failure,
    InvalidConfigError,
    MissingDependencyError,
    RemoteActorError,
)
from demos._backend import add_backend_options, check_backend_options
from runtime import Runtime

POISON = 37  # any multiple of it makes a worker raise
HANG = 99  # this one blocks a worker's event loop


class Worker(Actor):
    """Squares numbers; poisoned by multiples of 37; hangs on 99."""

    def __init__(self) -> None:
        super().__init__()
        self.done = 0
        self.restarted_after: Failure | None = None

    async def on_restart(self, failure: Failure) -> None:
        self.restarted_after = failure

    async def receive(self, message: Any) -> Any:
        match message:
            case ("square", int(n)):
                if n == HANG:
                    time.sleep(3600)  # noqa: ASYNC251 - the point: a call that never returns
                if n % POISON == 0:
                    raise ValueError(f"poison job {n}")
                self.done += 1
                return n * n
            case "where":
                return socket.gethostname(), os.getpid()
            case "die":  # for a worker on another machine, where the script cannot kill it
                os.kill(os.getpid(), signal.SIGKILL)
        return None


class Flaky(Actor):
    """Fails in on_start on every restart: a crash loop."""

    def __init__(self) -> None:
        super().__init__()
        self.restarted = False

    async def on_restart(self, failure: Failure) -> None:
        self.restarted = True

    async def on_start(self) -> None:
        if self.restarted:
            raise ConnectionError("database still unreachable")

    async def receive(self, message: Any) -> Any:
        raise RuntimeError("lost the database connection")


def describe(
    event: str, fields: dict[str, Any], killed: set[int] | None = None, backend: str = "local"
) -> str | None:
    """One readable line per lifecycle event worth showing.

    ``killed``: the pids the script SIGKILLed; ``backend``: where the actors run.
    """
    actor = fields.get("actor", "")
    match event:
        case "actor.exited" if fields.get("reason") not in ("shutdown", "restart", "start_failed"):
            reason = fields["reason"]
            if reason == "died" and backend == "ray":
                # Ray reports that a worker died, not how: say what the script knows
                if fields.get("pid") in (killed or set()):
                    reason = "died after our SIGKILL; Ray does not report the signal"
                else:
                    reason = "died; Ray does not report how"
            detail = fields.get("error_type", "")
            return f"[red]✗ {actor} ended[/] ({reason}{' ' + detail if detail else ''})"
        case "actor.hung":
            return f"[magenta]⌛ {actor} hung[/]: {fields['why']}; stack dumped to its .stderr"
        case "actor.restarted":
            return (
                f"[green]↻ {actor} restarted[/] as incarnation {fields['incarnation']} "
                f"in {fields['restart_s'] * 1000:.0f} ms"
            )
        case "supervisor.restarting":
            return (
                f"  supervisor {fields['supervisor']}: restarting {', '.join(fields['restarting'])}"
            )
        case "actor.restart_failed":
            return f"[red]✗ {actor} failed to restart[/]: {fields['error_type']}: {fields['error']}"
        case "supervisor.escalated":
            return (
                f"[bold red]⚠ supervisor {fields['supervisor']} gave up[/]: more than "
                f"{fields['max_restarts']} restarts within {fields['period_s']:g} s"
            )
    return None


async def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    rng = random.Random(args.seed)
    stats: dict[str, Any] = {"answered": 0, "failed": 0, "lost": 0, "late": 0, "kills": 0}
    stats["lost_as"] = set()
    killed: set[int] = set()
    # only options both backends take: Ray refuses the local-only ones (busy_poll, uvloop,
    # shm_threshold, shm_budget) when they are set
    async with (
        Runtime(
            log_dir=args.log_dir,
            trace=args.trace,
            hang_timeout=2.0,
            heartbeat_interval=0.25,
            backend=args.backend,
            address=args.address,
        ) as rt,
        rt.probe() as probe,
    ):
        backend = rt.config.backend

        async def show() -> None:
            async for event, fields in probe:
                if (line := describe(event, fields, killed, backend)) is not None:
                    console.print(line, highlight=False)

        async with anyio.create_task_group() as shows:
            shows.start_soon(show)
            sup = await rt.supervisor("workers", max_restarts=50, period=10.0)
            workers = [await rt.spawn(Worker, name=f"worker-{i}", supervisor=sup) for i in range(3)]
            console.print(
                f"3 workers under supervisor [bold]workers[/] (one_for_one, at most 50 "
                f"restarts in 10 s); sending jobs for {args.seconds:g} s",
                highlight=False,
            )
            deadline = time.monotonic() + args.seconds

            async def send_jobs(worker_index: int) -> None:
                n = worker_index
                while time.monotonic() < deadline:
                    n += 3
                    job = HANG if n == 99 else n
                    try:
                        await workers[worker_index].ask(("square", job), timeout=10)
                        stats["answered"] += 1
                    except ValueError:
                        stats["failed"] += 1  # the poison job's own error, as raised
                    except (ActorDeadError, RemoteActorError) as exc:
                        stats["lost"] += 1  # its worker died while handling it
                        stats["lost_as"].add(type(exc).__name__)
                    except AskTimeoutError:
                        # its worker was not back in time: restarts are done one at a
                        # time, and on Ray each one starts a worker process (seconds)
                        stats["late"] += 1
                    await anyio.sleep(0.03)  # pacing the jobs

            here = socket.gethostname()

            async def chaos() -> None:
                while time.monotonic() < deadline - 1:
                    await anyio.sleep(rng.uniform(0.8, 1.6))  # when to strike, not a wait
                    victim = rng.choice(workers)
                    try:
                        host, pid = await victim.ask("where", timeout=10)
                    except (ActorDeadError, AskTimeoutError):
                        continue  # it died by itself meanwhile, or is not back yet
                    if pid in killed:
                        continue
                    killed.add(pid)
                    stats["kills"] += 1
                    if host == here:
                        console.print(f"[yellow]☠ SIGKILL {victim.name}[/] (pid {pid})")
                        os.kill(pid, signal.SIGKILL)
                    else:  # a Ray worker on another machine: it kills itself
                        console.print(f"[yellow]☠ SIGKILL {victim.name}[/] (pid {pid} on {host})")
                        await victim.tell("die")

            async with anyio.create_task_group() as tg:
                for i in range(3):
                    tg.start_soon(send_jobs, i)
                tg.start_soon(chaos)
            if args.escalate:
                console.print("\n[bold]Now a crash loop:[/] an actor that cannot restart")
                flaky = await rt.spawn(Flaky, name="flaky")
                await flaky.tell("go")
                await anyio.sleep_forever()  # ends when the escalation cancels the script
            shows.cancel_scope.cancel()
    stats["report"] = rt.report
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demos.supervision", description=__doc__)
    parser.add_argument("--seconds", type=float, default=6.0, help="how long to run (6)")
    parser.add_argument("--escalate", action="store_true", help="end with a crash loop")
    parser.add_argument("--seed", type=int, default=7, help="seed of the chaos (7)")
    parser.add_argument("--log-dir", help="keep the run's JSON-lines logs in this directory")
    parser.add_argument("--trace", action="store_true", help="also log every message")
    add_backend_options(parser)
    args = parser.parse_args(argv)
    check_backend_options(parser, args)
    console = Console(highlight=False, soft_wrap=True)
    try:
        stats = anyio.run(run, args, console)
    except (InvalidConfigError, MissingDependencyError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except EscalationError as exc:
        console.print(f"\n[bold red]EscalationError[/]: {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("interrupted: every actor was stopped")
        return 130
    report = stats["report"]
    raised = " or ".join(sorted(stats["lost_as"]))
    console.print(
        f"\n[bold]Summary[/]: {stats['answered']} jobs answered, {stats['failed']} poison "
        f"jobs failed back to the script, {stats['lost']} lost with a killed worker"
        f"{f' (each raised {raised})' if raised else ''}, "
        f"{stats['late']} not answered within 10 s; {stats['kills']} SIGKILLs"
    )
    for name, restarts in report.restarts.items():
        dead = report.dead_lettered.get(name, 0)
        console.print(f"  {name}: restarted {restarts} times, {dead} dead letters")
    console.print(f"stopped in order at the end: {', '.join(report.stopped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
