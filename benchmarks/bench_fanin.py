"""Fan-in 4→1 against 1→1 in longer runs, with each side's CPU time per message.

``python -m benchmarks.bench_fanin [--messages 200000] [--reps 5] [--pin]`` spawns one
counting sink and four senders. Each repetition runs 1→1 (the first sender alone) and
then fan-in (all four, a quarter of the messages each), and prints both rates, their
ratio, and the CPU time per message of the receiver and of the senders together, from
the scheduler's accounting, with the two ceilings that CPU time puts on the ratio
(docs/performance.md, Why fan-in stops at parity). The medians come last. ``--pin``
puts the receiver alone on the last CPU and the senders on the others, for both runs.

For A/B runs of a change, interleave checkouts: ``PYTHONPATH=<checkout> python -m
benchmarks.bench_fanin``, in ABBA order. The full suite's fan-in figure (``python -m
benchmarks``) runs 50,000 messages with a fifth sender for 1→1, between other figures;
the ratio moves with the harness by about a tenth (docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

import anyio

from actors import ActorRef
from benchmarks._actors import Driver
from benchmarks.bench_core import Sink
from runtime import Runtime

SENDERS = 4


async def _run(sink: ActorRef, senders: list[ActorRef], messages: int) -> dict[str, float]:
    """Every sender in ``senders`` tells ``sink`` its share at once: rate and CPU µs/msg."""

    async def on_cpu(refs: list[ActorRef]) -> float:
        return sum([(await ref.ask("sched"))[0] for ref in refs])

    sent0 = await on_cpu(senders)
    before, (received0, _) = await sink.ask("sched")
    begun: list[float] = []

    async def drive(sender: ActorRef) -> None:
        share = messages // len(senders)
        begun.append(await sender.ask(("tells", sink, share), timeout=600))

    async with anyio.create_task_group() as tg:
        for sender in senders:
            tg.start_soon(drive, sender)
    after, (received1, _) = await sink.ask("sched", timeout=600)
    elapsed = time.perf_counter() - min(begun)  # CLOCK_MONOTONIC in every process
    sent = await on_cpu(senders) - sent0
    count = after - before
    return {
        "rate": count / elapsed,
        "receiver_us": (received1 - received0) / count * 1e6,
        "senders_us": sent / count * 1e6,
    }


async def main(messages: int, reps: int, pin: bool) -> None:
    with tempfile.TemporaryDirectory() as logs:
        async with Runtime(log_dir=logs, trace=False, hang_timeout=None) as rt:
            sink = await rt.spawn(Sink)
            senders = [await rt.spawn(Driver) for _ in range(SENDERS)]
            if pin:
                cpus = sorted(os.sched_getaffinity(0))
                if len(cpus) < 2:
                    raise SystemExit("--pin needs two CPUs or more")
                os.sched_setaffinity(await sink.ask("pid"), cpus[-1:])
                for pid in [os.getpid()] + [await s.ask("pid") for s in senders]:
                    os.sched_setaffinity(pid, cpus[:-1])
            await _run(sink, senders[:1], messages // 10)  # warm-up, both shapes
            await _run(sink, senders, messages // 10)
            results: dict[str, list[dict[str, float]]] = {"1→1": [], "4→1": []}
            for rep in range(reps):
                one = await _run(sink, senders[:1], messages)
                fan = await _run(sink, senders, messages)
                results["1→1"].append(one)
                results["4→1"].append(fan)
                print(f"run {rep + 1}: {_line(one, fan, fan['rate'] / one['rate'])}", flush=True)
            ratio = statistics.median(
                f["rate"] / o["rate"] for o, f in zip(results["1→1"], results["4→1"], strict=True)
            )
            medians = {
                shape: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
                for shape, runs in results.items()
            }
            print(f"median: {_line(medians['1→1'], medians['4→1'], ratio)}")


def _line(one: dict[str, Any], fan: dict[str, Any], ratio: float) -> str:
    def side(r: dict[str, Any]) -> str:
        return (
            f"{r['rate'] / 1e3:5.0f}k msg/s, receiver {r['receiver_us']:.2f} µs, "
            f"senders {r['senders_us']:.2f} µs"
        )

    # the CPU-time bound (docs/performance.md, Why fan-in stops at parity): fan-in's one
    # receiver needs R4 a message, and all five processes S4 + R4 on two CPUs, against
    # 1→1's wall time T1 a message
    t1 = 1e6 / one["rate"]
    caps = (
        f"caps: T1/R4 {t1 / fan['receiver_us']:.3f}x, "
        f"2·T1/(S4+R4) {2 * t1 / (fan['senders_us'] + fan['receiver_us']):.3f}x"
    )
    return f"1→1 {side(one)} | 4→1 {side(fan)} | {caps} | fan-in/1→1 {ratio:.3f}x"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000, help="per run (default 200000)")
    parser.add_argument("--reps", type=int, default=5, help="pairs of runs (default 5)")
    parser.add_argument("--pin", action="store_true", help="receiver alone on one CPU")
    args = parser.parse_args()
    anyio.run(main, args.messages, args.reps, args.pin)
