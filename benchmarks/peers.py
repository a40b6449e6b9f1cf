"""The same ask and tell workloads on other Python actor frameworks, when they are installed.

    pip install pykka thespian ray xoscar     # any of them; none is a dependency
    python -m benchmarks.peers [--asks N] [--tells N] [--reps N] [--json PATH]

Every framework runs the same two workloads against one echo/counter actor, in the same
run as ours and as a raw ``multiprocessing.Pipe`` baseline:

* ask round trip: ``--asks`` sequential request/replies, p50;
* tell throughput: ``--tells`` one-way messages, then one request that returns the count;
  the median of ``--reps`` such runs (a run of 20,000 tells lasts a tenth of a second here).

Frameworks that are not installed are listed as such. Pykka runs actors as threads in one
process, so its figures are not cross-process ones; the table says so.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Result = dict[str, Any]
#: tell runs per framework, of which the median is reported (``--reps``)
REPS = 3


def _timed_asks(ask: Callable[[int], Any], count: int) -> float:
    for i in range(min(100, count)):
        ask(i)
    times = []
    for i in range(count):
        started = time.perf_counter()
        ask(i)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _rate(tell: Callable[[int], Any], finish: Callable[[], int], count: int) -> float:
    """The median over ``REPS`` runs; ``finish`` returns how many tells arrived so far."""
    rates = []
    for _ in range(REPS):
        before = finish()
        started = time.perf_counter()
        for i in range(count):
            tell(i)
        got = finish() - before
        elapsed = time.perf_counter() - started
        if got < count:
            raise RuntimeError(f"only {got} of {count} tells arrived")
        rates.append(count / elapsed)
    return statistics.median(rates)


# -- ours and the baseline ---------------------------------------------------------------------


def ours(asks: int, tells: int) -> Result:
    import anyio

    from benchmarks.bench_core import Echo, Sink
    from runtime import Runtime

    async def run() -> Result:
        async with Runtime(hang_timeout=None) as rt:
            echo = await rt.spawn(Echo)
            sink = await rt.spawn(Sink)
            for i in range(100):
                await echo.ask(i)
            times = []
            for i in range(asks):
                started = time.perf_counter()
                await echo.ask(i)
                times.append(time.perf_counter() - started)
            rates = []
            for _ in range(REPS):
                before = await sink.ask("count")
                started = time.perf_counter()
                for i in range(tells):
                    await sink.tell(i)
                got = await sink.ask("count", timeout=300) - before
                rates.append(got / (time.perf_counter() - started))
        return {"ask_p50_s": statistics.median(times), "tell_per_s": statistics.median(rates)}

    return anyio.run(run)


def pipe(asks: int, tells: int) -> Result:
    from benchmarks import bench_core

    return {
        "ask_p50_s": statistics.median(bench_core._base_ask(100, asks)),
        "tell_per_s": statistics.median(bench_core._base_tell(tells) for _ in range(REPS)),
    }


# -- peers ----------------------------------------------------------------------------------------


def pykka(asks: int, tells: int) -> Result:
    import pykka as pk

    class Echo(pk.ThreadingActor):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def on_receive(self, message: Any) -> Any:
            if message == "count":
                return self.n
            if isinstance(message, tuple):
                self.n += 1
                return None
            return message

    ref = Echo.start()
    try:
        ask = _timed_asks(lambda i: ref.ask(i), asks)
        rate = _rate(lambda i: ref.tell(("t", i)), lambda: ref.ask("count"), tells)
    finally:
        ref.stop()
    return {"ask_p50_s": ask, "tell_per_s": rate, "note": "threads in one process"}


def thespian(asks: int, tells: int) -> Result:
    from thespian.actors import ActorSystem

    system = ActorSystem("multiprocTCPBase")
    try:
        addr = system.createActor(_ThespianEcho)
        ask = _timed_asks(lambda i: system.ask(addr, i, 30), asks)
        rate = _rate(
            lambda i: system.tell(addr, ("t", i)), lambda: system.ask(addr, "count", 300), tells
        )
    finally:
        system.shutdown()
    return {"ask_p50_s": ask, "tell_per_s": rate, "note": "multiprocTCPBase"}


try:  # module level, so that Thespian's processes can import it
    from thespian.actors import Actor as _ThespianActor

    class _ThespianEcho(_ThespianActor):  # type: ignore[misc]
        n = 0

        def receiveMessage(self, message: Any, sender: Any) -> None:  # noqa: N802
            if message == "count":
                self.send(sender, self.n)
            elif isinstance(message, tuple):
                self.n += 1
            elif isinstance(message, int):
                self.send(sender, message)

except ImportError:
    pass


def ray(asks: int, tells: int) -> Result:
    import ray as r

    r.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:

        @r.remote
        class Echo:
            def __init__(self) -> None:
                self.n = 0

            def echo(self, x: Any) -> Any:
                return x

            def tell(self, x: Any) -> None:
                self.n += 1

            def count(self) -> int:
                return self.n

        actor = Echo.remote()  # type: ignore[attr-defined]
        ask = _timed_asks(lambda i: r.get(actor.echo.remote(i)), asks)
        rate = _rate(lambda i: actor.tell.remote(i), lambda: r.get(actor.count.remote()), tells)
    finally:
        r.shutdown()
    return {"ask_p50_s": ask, "tell_per_s": rate}


def xoscar(asks: int, tells: int) -> Result:
    import asyncio

    import xoscar as xo

    class Echo(xo.Actor):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def echo(self, x: Any) -> Any:
            return x

        def tell(self, x: Any) -> None:
            self.n += 1

        def count(self) -> int:
            return self.n

    async def run() -> Result:
        pool = await xo.create_actor_pool("127.0.0.1", n_process=1)
        async with pool:
            # in the pool's sub-process, so that messages cross processes as ours do
            ref = await xo.create_actor(
                Echo,
                address=pool.external_address,
                uid="echo",
                allocate_strategy=xo.allocate_strategy.RandomSubPool(),
            )
            for i in range(100):
                await ref.echo(i)
            times = []
            for i in range(asks):
                started = time.perf_counter()
                await ref.echo(i)
                times.append(time.perf_counter() - started)
            rates = []
            for _ in range(REPS):
                before = await ref.count()
                started = time.perf_counter()
                for i in range(tells):
                    await ref.tell.tell(i)
                got = await ref.count() - before
                rates.append(got / (time.perf_counter() - started))
        return {
            "ask_p50_s": statistics.median(times),
            "tell_per_s": statistics.median(rates),
            "note": "actor in a sub-pool process",
        }

    return asyncio.run(run())


PEERS: dict[str, Callable[[int, int], Result]] = {
    "this runtime": ours,
    "raw multiprocessing.Pipe": pipe,
    "Ray": ray,
    "Thespian": thespian,
    "xoscar": xoscar,
    "Pykka": pykka,
}
MODULES = {"Ray": "ray", "Thespian": "thespian", "xoscar": "xoscar", "Pykka": "pykka"}


def main() -> None:
    global REPS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--asks", type=int, default=2000)
    parser.add_argument("--tells", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=REPS, help="tell runs, median reported")
    parser.add_argument("--json", type=Path, metavar="PATH")
    args = parser.parse_args()
    REPS = args.reps
    import importlib.util

    results: dict[str, Result] = {}
    for name, run in PEERS.items():
        module = MODULES.get(name)
        if module is not None and importlib.util.find_spec(module) is None:
            results[name] = {"missing": True}
            continue
        sys.stderr.write(f"… {name}\n")
        try:
            results[name] = run(args.asks, args.tells)
        except Exception as exc:  # a peer's failure is reported, not fatal
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    pipe_result = results["raw multiprocessing.Pipe"]
    print("| framework | ask round trip p50 | vs Pipe | tell throughput | vs Pipe |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        if r.get("missing"):
            print(f"| {name} | not installed | | | |")
            continue
        if "error" in r:
            print(f"| {name} | failed: {r['error'][:60]} | | | |")
            continue
        label = f"{name} ({r['note']})" if "note" in r else name
        print(
            f"| {label} | {r['ask_p50_s'] * 1e6:,.0f} µs | "
            f"{r['ask_p50_s'] / pipe_result['ask_p50_s']:.1f}x | "
            f"{r['tell_per_s']:,.0f} msg/s | {r['tell_per_s'] / pipe_result['tell_per_s']:.2f}x |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
