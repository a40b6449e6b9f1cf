"""Word count over the standard library's .py files, with W actors.

    python benchmarks/jobs/wc_actors.py [--log-dir DIR] [--workers 2] [--limit 0]
                                        [--batches 16] [--reduce gather|shuffle]

The script enters the runtime, lists the files while the runtime's forkserver boots, cuts
them into ``batches`` x W interleaved batches (paths, not contents) and spawns W workers.
As soon as one is up, the script feeds it batches, one ask each with the next batch
waiting in its mailbox, until none are left. A worker adds each batch into its one
Counter: small batches balance the load, and no Counter crosses a process per batch.

Reduce ``gather`` (the default): once no batch is left for a worker, the script asks it
for its Counter and merges it at once, while slower workers finish their last batch.
Reduce ``shuffle``: each worker splits its counts by word into W disjoint parts, keeps its
own, sends the others to their owners, merges what it gets and answers the summary of its
part; the script adds up W small summaries.
"""

from __future__ import annotations

import argparse
import time
import zlib
from collections import Counter
from typing import Any

import anyio
from wc_common import Summary, combine, count_files, digest, list_files, phases, summary

from actors import Actor, ActorRef
from runtime import Runtime


class WordCounter(Actor):
    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index
        self.counts: Counter[bytes] = Counter()
        self.stamps: dict[str, float] = {"count_s": 0.0}
        self.reply: Any = None  # the script's shuffle ask, answered once all parts are in
        self.parts: list[dict[bytes, int]] = []
        self.waiting_for = 0

    async def receive(self, message: Any) -> Any:
        match message:
            case ("count", list(paths)):
                began = time.time()
                self.stamps.setdefault("count_start", began)
                count_files(paths, self.counts)
                self.stamps["count_end"] = time.time()
                self.stamps["count_s"] += self.stamps["count_end"] - began
            case "gather":
                self.stamps["cpu_s"] = time.process_time()
                return self.counts, self.stamps
            case ("shuffle", list(peers)):
                await self._shuffle(peers)
            case ("part", dict(part)):
                self.stamps.setdefault("part_in", time.time())
                self.parts.append(part)
                self._merge()

    async def _shuffle(self, peers: list[ActorRef]) -> None:
        # crc32, not hash(): a word must have the same owner in every process
        n = len(peers)
        buckets: list[dict[bytes, int]] = [{} for _ in peers]
        for word, k in self.counts.items():
            buckets[zlib.crc32(word) % n][word] = k
        self.counts = Counter(buckets[self.index])
        self.stamps["split"] = time.time()
        for i, peer in enumerate(peers):
            if i != self.index:
                await peer.tell(("part", buckets[i]))
        self.stamps["sent"] = time.time()
        self.waiting_for = n - 1
        self.reply = self.defer_reply()
        self._merge()

    def _merge(self) -> None:
        if self.reply is None:
            return  # a peer's part came before our own counts were split: keep it
        for part in self.parts:
            self.counts.update(part)
        self.waiting_for -= len(self.parts)
        self.parts.clear()
        if self.waiting_for == 0:
            self.stamps["merged"] = time.time()
            result = summary(self.counts)
            self.stamps["summarized"] = time.time()
            self.stamps["cpu_s"] = time.process_time()
            self.reply.set_result((result, self.stamps))


async def main(args: argparse.Namespace, stamps: dict[str, float]) -> Summary:
    n = args.workers
    shuffle = args.reduce == "shuffle"
    async with Runtime(log_dir=args.log_dir) as rt:
        stamps["runtime_up"] = time.time()
        # the runtime's forkserver boots meanwhile: listing the files costs no time here
        paths = list_files(args.limit)
        tasks = n * args.batches
        batches = [paths[i::tasks] for i in range(tasks)]
        refs: list[Any] = [None] * n
        all_up = anyio.Event()
        parts: list[Summary] = []
        total: Counter[bytes] = Counter()
        workers: list[dict[str, float]] = []

        async def feed(ref: ActorRef) -> None:
            while batches:
                await ref.ask(("count", batches.pop()), timeout=600)

        async def work(i: int) -> None:
            ref = refs[i] = await rt.spawn(WordCounter, i)
            stamps.setdefault("first_spawned", time.time())
            if all(refs):
                stamps["last_spawned"] = time.time()
                all_up.set()
            async with anyio.create_task_group() as tg:
                tg.start_soon(feed, ref)
                tg.start_soon(feed, ref)  # the next batch waits in the mailbox
            # no batch left: this worker reduces while the others finish their last one
            await all_up.wait()
            if shuffle:
                part, worker = await ref.ask(("shuffle", refs), timeout=600)
                parts.append(part)
            else:
                counts, worker = await ref.ask("gather", timeout=600)
                total.update(counts)
            workers.append(worker)

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(work, i)
        stamps["answered"] = time.time()
        result = combine(parts) if shuffle else summary(total)
        stamps["reduced"] = time.time()
        for key in {key for w in workers for key in w}:
            # a worker that came up after the last batch was taken has no count stamps
            values = [w[key] for w in workers if key in w]
            stamps[f"first_{key}"], stamps[f"last_{key}"] = min(values), max(values)
        stamps["workers_cpu_s"] = sum(w["cpu_s"] for w in workers)
    stamps["runtime_down"] = time.time()
    stamps["script_cpu_s"] = time.process_time()
    return result


if __name__ == "__main__":
    stamps = {"imported": time.time()}
    parser = argparse.ArgumentParser()
    parser.add_argument("--log-dir", help="the runtime's default log directory if not given")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="the first N files only")
    parser.add_argument("--batches", type=int, default=16, help="batches per worker")
    parser.add_argument("--reduce", choices=("gather", "shuffle"), default="gather")
    args = parser.parse_args()
    print(digest(anyio.run(main, args, stamps)))
    print(phases(stamps))
