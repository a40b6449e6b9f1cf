"""The actor that drives workloads from inside an actor (importable by actor processes).

The echo and counting actors are ``bench_core``'s.
"""

from __future__ import annotations

import os
import time
from typing import Any

from actors import Actor, ActorRef

from .bench_core import scheduler_times


class Driver(Actor):
    """Runs a workload from inside an actor: asks or tells to another actor."""

    async def receive(self, message: Any) -> Any:
        match message:
            case ("asks", ActorRef() as target, int(warmup), int(count)):
                for i in range(warmup):
                    await target.ask(i)
                times = []
                for i in range(count):
                    started = time.perf_counter()
                    await target.ask(i)
                    times.append(time.perf_counter() - started)
                return times
            case "pid":
                return os.getpid()
            case "sched":
                return scheduler_times()
            case ("tells", ActorRef() as target, int(count)):
                started = time.perf_counter()
                for i in range(count):
                    await target.tell(i)
                return started
        return None
