"""The classic counter as actors: workers count in parallel processes, and the counts add up.

Run ``python -m demos.counter`` (``--help`` for options). Each worker counts to
``--count`` in a pure Python loop in its own process, reporting progress as it goes.

``--mode queue`` (the default): each worker sends its result to an aggregator actor; the
script asks the aggregator for the total, which it answers once every worker reported.
``--mode shared``: the workers add each chunk they count into one int64 in shared
memory, under a semaphore shared by every process; the script reads the total there.

``--backend ray`` runs the same actors as Ray actors, on a Ray cluster started for the
run (or the one ``--address`` names). Shared mode then needs every worker on the
script's machine: the shared int64 lives in its /dev/shm.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import anyio
import numpy as np

from actors import (
    Actor,
    ActorRef,
    InvalidConfigError,
    MissingDependencyError,
    Reply,
    SharedArray,
    SharedSemaphore,
)
from demos._backend import add_backend_options, check_backend_options
from runtime import Runtime

PROGRESS_STEPS = 100


def count_up(n: int) -> int:
    """Count to ``n`` one by one: the CPU-bound work, identical in the baseline script."""
    count = 0
    for _ in range(n):
        count += 1
    return count


class Aggregator(Actor):
    """Sums the workers' counts; answers "total" once all ``expected`` have reported."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected, self.total, self.seen = expected, 0, 0
        self.waiting: list[Reply] = []

    async def receive(self, message: Any) -> Any:
        match message:
            case ("count", int(n)):
                self.total += n
                self.seen += 1
                if self.seen == self.expected:
                    for reply in self.waiting:
                        reply.set_result(self.total)
                    self.waiting.clear()
            case "total":
                if self.seen < self.expected:
                    self.waiting.append(self.defer_reply())  # answer later, keep serving
                    return None
                return self.total
        return None


class Worker(Actor):
    """Counts to n in chunks, telling the progress actor after each chunk.

    With an aggregator it sends its total there; with a shared total it adds each chunk's
    count into it, holding the semaphore for the read-add-write.
    """

    def __init__(
        self,
        index: int,
        aggregator: ActorRef | None,
        progress: ActorRef | None,
        shared: tuple[SharedArray, SharedSemaphore] | None = None,
    ) -> None:
        super().__init__()
        self.index, self.aggregator, self.progress = index, aggregator, progress
        self.shared = shared

    async def receive(self, message: Any) -> int | None:
        match message:
            case ("count", int(n)):
                chunk = max(1, n // PROGRESS_STEPS)
                done = total = 0
                while done < n:
                    step = min(chunk, n - done)
                    counted = count_up(step)
                    total += counted
                    done += step
                    if self.shared is not None:
                        target, sem = self.shared
                        async with sem:  # `async with target.locked() as view` does both
                            target.view(writable=True)[0] += counted
                    if self.progress is not None:
                        await self.progress.tell(("progress", self.index, done))
                if self.aggregator is not None:
                    await self.aggregator.tell(("count", total))
                return total
        return None


class ProgressView:
    """One progress bar per worker: live with rich on a terminal, else a line per quarter."""

    def __init__(self, workers: int, count: int, live: bool) -> None:
        self.workers, self.count, self.live = workers, count, live
        self.marks = [0] * workers
        self.bars: Any = None
        self.tasks: list[Any] = []

    def start(self) -> None:
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self.bars = Progress(
                "[bold]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
            )
            self.tasks = [
                self.bars.add_task(f"worker-{i}", total=self.count) for i in range(self.workers)
            ]
            self.bars.start()

    def update(self, index: int, done: int) -> None:
        if self.bars is not None:
            self.bars.update(self.tasks[index], completed=done)
            return
        quarter = 4 * done // self.count
        if quarter > self.marks[index]:
            self.marks[index] = quarter
            print(f"worker-{index}: {25 * quarter}% ({done}/{self.count})", flush=True)

    def stop(self) -> None:
        if self.bars is not None:
            self.bars.stop()
            self.bars = None


class Progress(Actor):
    """Collects the workers' progress, and shows it itself or hands it to the script.

    ``show_here``: it draws the bars in its own process, which shares the script's
    terminal (local backend). Otherwise (Ray: a Ray worker's output goes to Ray's log
    files, not to the script's terminal) the script asks ``("news", seen)`` and draws;
    the answer waits until there is news past ``seen``.
    """

    def __init__(self, workers: int, count: int, live: bool, show_here: bool = True) -> None:
        super().__init__()
        self.view = ProgressView(workers, count, live) if show_here else None
        self.done = [0] * workers
        self.version = 0
        self.waiting: list[Reply] = []

    async def on_start(self) -> None:
        if self.view is not None:
            self.view.start()

    async def receive(self, message: Any) -> Any:
        match message:
            case ("progress", int(index), int(done)):
                self.done[index] = done
                self.version += 1
                if self.view is not None:
                    self.view.update(index, done)
                for reply in self.waiting:
                    reply.set_result((self.version, list(self.done)))
                self.waiting.clear()
            case ("news", int(seen)):
                if self.version > seen:
                    return (self.version, list(self.done))
                self.waiting.append(self.defer_reply())  # answer at the next progress
        return None

    async def on_stop(self) -> None:
        if self.view is not None:
            self.view.stop()
        for reply in self.waiting:  # nobody is left waiting on a stopped actor
            reply.set_result((self.version, list(self.done)))
        self.waiting.clear()


async def show_progress(progress: ActorRef, view: ProgressView, timeout: float) -> None:
    """Draw, in the script, what ``progress`` collects, until every worker is done."""
    view.start()
    try:
        seen, done = 0, [0] * view.workers
        while min(done) < view.count:
            seen, news = await progress.ask(("news", seen), timeout=timeout)
            for index, (before, now) in enumerate(zip(done, news, strict=True)):
                if now != before:
                    view.update(index, now)
            done = news
    finally:
        view.stop()


async def run(
    workers: int,
    count: int,
    log_dir: str | None,
    progress: bool,
    mode: str,
    trace: bool,
    backend: str = "local",
    address: str | None = None,
) -> int:
    """Run the counter; return the total counted."""
    # a pure Python loop runs at roughly 10-50 M iterations/s; leave ample room
    deadline = 60 + count * 1e-6 * 5
    # only options both backends take: Ray refuses the local-only ones (busy_poll, uvloop,
    # shm_threshold, shm_budget) when they are set
    async with Runtime(
        log_dir=log_dir, trace=trace or None, backend=backend, address=address
    ) as rt:
        # local actor processes share the script's terminal; Ray workers do not
        show_here = rt.config.backend == "local"
        live = sys.stdout.isatty()
        aggregator = shared = None
        if mode == "queue":
            aggregator = await rt.spawn(Aggregator, workers, name="aggregator")
        else:
            total_array = await rt.shared_array((1,), dtype="int64", name="total")
            shared = (total_array, await rt.semaphore(1, name="total-guard"))
        bars = None
        if progress:
            bars = await rt.spawn(Progress, workers, count, live, show_here, name="progress")
        refs = []
        async with anyio.create_task_group() as tg:
            for i in range(workers):

                async def start(i: int = i) -> None:
                    worker = await rt.spawn(Worker, i, aggregator, bars, shared, name=f"worker-{i}")
                    refs.append(worker)

                tg.start_soon(start)
        async with anyio.create_task_group() as shown:  # ends once all progress is shown
            if bars is not None and not show_here:
                shown.start_soon(show_progress, bars, ProgressView(workers, count, live), deadline)
            if aggregator is not None:
                for ref in refs:
                    await ref.tell(("count", count))
                total: int = await aggregator.ask("total", timeout=deadline)
            else:
                assert shared is not None

                async def count_into_shared(worker: ActorRef) -> None:
                    await worker.ask(("count", count), timeout=deadline)  # answers when done

                async with anyio.create_task_group() as tg:
                    for ref in refs:
                        tg.start_soon(count_into_shared, ref)
                total = int(np.asarray(shared[0])[0])
        if bars is not None:
            await rt.stop(bars)  # ends the live display before we print below
        print(f"logs: {rt.log_dir}", file=sys.stderr)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demos.counter", description=__doc__)
    parser.add_argument("--workers", type=int, default=2, help="worker actors (default 2)")
    parser.add_argument(
        "--count", type=int, default=50_000_000, help="what each worker counts to (50,000,000)"
    )
    parser.add_argument("--log-dir", help="keep the run's JSON-lines logs in this directory")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or lines")
    parser.add_argument(
        "--trace", action="store_true", help="log every message (see python -m runtime.trace)"
    )
    parser.add_argument(
        "--mode",
        choices=("queue", "shared"),
        default="queue",
        help="queue: results as messages to an aggregator (default); "
        "shared: add into one shared int64 under a semaphore",
    )
    add_backend_options(parser)
    args = parser.parse_args(argv)
    if args.workers < 1 or args.count < 1:
        parser.error("--workers and --count must be positive")
    check_backend_options(parser, args)
    started = time.perf_counter()
    try:
        total = anyio.run(
            run,
            args.workers,
            args.count,
            args.log_dir,
            not args.no_progress,
            args.mode,
            args.trace,
            args.backend,
            args.address,
        )
    except (InvalidConfigError, MissingDependencyError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: every actor was stopped", file=sys.stderr)
        return 130
    elapsed = time.perf_counter() - started
    print(f"elapsed_s={elapsed:.3f}")
    print(f"total_number={total}")
    return 0 if total == args.workers * args.count else 1


if __name__ == "__main__":
    sys.exit(main())
