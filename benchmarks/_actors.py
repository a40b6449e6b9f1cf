"""Actors for the benchmark suite (importable by actor processes)."""

from __future__ import annotations

import time
from typing import Any

from actors import Actor, ActorRef


class Echo(Actor):
    async def receive(self, message: Any) -> Any:
        return message


class Sink(Actor):
    """Counts what it is told; "count" answers the total."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    async def receive(self, message: Any) -> Any:
        if message == "count":
            return self.n
        self.n += 1
        return None


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
            case ("tells", ActorRef() as target, int(count)):
                started = time.perf_counter()
                for i in range(count):
                    await target.tell(i)
                return started
        return None
