# A new user's script: only the documented contract, no __main__ guard, classes in __main__.
import threading

import anyio

from actors import Actor, ActorDeadError, MailboxFullError
from runtime import Runtime


class Aggregator(Actor):
    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected, self.total, self.seen = expected, 0, 0

    async def receive(self, message):
        match message:
            case ("count", int(n)):
                self.total += n
                self.seen += 1
            case "total":
                return self.total


class Collector(Actor):
    def __init__(self) -> None:
        super().__init__()
        self.items = []

    async def receive(self, message):
        match message:
            case ("report-to", target, n):
                await target.tell(("count", n))  # a ref inside a message
                return await target.ask("total", timeout=5)
            case "items":
                return self.items
            case "sleep":
                await anyio.sleep(1.0)  # busy long enough for the ask below to time out
            case _:
                self.items.append(message)


async def main() -> None:
    async with Runtime() as rt:
        agg = await rt.spawn(Aggregator, 2, name="aggregator")
        await agg.tell(("count", 5))
        print("total:", await agg.ask("total", timeout=5.0))
        print("lookup:", (await rt.lookup("aggregator")) == agg)

        slow = await rt.spawn(Collector, name="slow", mailbox_size=2)
        await slow.tell("sleep")
        try:
            await slow.ask("items", timeout=0.3)
        except TimeoutError as exc:
            print("timeout:", type(exc).__name__)

        coll = await rt.spawn(Collector)
        print("via ref in message:", await coll.ask(("report-to", agg, 7), timeout=5))
        for i in range(20_000):
            await coll.tell(i)
        print("20000 tells in order:", await coll.ask("items", timeout=30) == list(range(20_000)))
        try:
            await coll.tell(threading.Lock())
        except TypeError as exc:
            print("unpicklable:", type(exc).__name__)

        try:
            for i in range(10):
                slow.tell_nowait(i)  # one slot went to the pending ask above
        except MailboxFullError as exc:
            print("mailbox full:", type(exc).__name__)

        await rt.stop(coll)
        try:
            await coll.ask("items", timeout=5)
        except ActorDeadError as exc:
            print("after stop:", type(exc).__name__)
    print("done")


anyio.run(main)
