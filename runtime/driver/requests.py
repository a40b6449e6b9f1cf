"""Requests: the driver serves each ``protocol`` request type in one place.

Actors' requests arrive on their control links; the script's own calls on ``Runtime``
come here directly, with no requester. Either way the same handler runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import anyio.abc

from actors import (
    ActorNotFoundError,
    ActorsError,
    InvalidArgumentError,
    Permit,
    RuntimeClosedError,
    SharedSemaphore,
)

from ..shm.sharing import SharedRegistry, SharingService
from ..wire.protocol import (
    AcquireSlot,
    AwaitActor,
    CreateSemaphore,
    CreateSharedArray,
    CreateSupervisor,
    Free,
    HowItEnded,
    IsPeer,
    Lookup,
    ReleaseSlot,
    RequestBody,
    SpawnActor,
    StopActor,
    Unwatch,
    Watch,
)
from .registry import ActorRecord, Registry
from .tree import ActorTree

__all__ = ["Requests"]


class Requests:
    """Carries out requests against the tree, the registry and the run's shared memory."""

    def __init__(
        self,
        tree: ActorTree,
        registry: Registry,
        shared: SharedRegistry,
        sharing: SharingService,
        tg: anyio.abc.TaskGroup,
        is_running: Callable[[], bool],
    ) -> None:
        self._tree = tree
        self._registry = registry
        self._shared = shared
        self._sharing = sharing
        self._tg = tg
        self._is_running = is_running
        #: slots of semaphores the driver holds for actors on other machines, by incarnation
        self._far_held: dict[str, list[tuple[SharedSemaphore, Permit]]] = {}

    def incarnation_ended(self, box: str) -> None:
        """Incarnation ``box`` has ended: the slots it held are free, and the next holder
        of each is told its holder died (it could not give them back itself)."""
        for semaphore, permit in self._far_held.pop(box, []):
            with contextlib.suppress(ActorsError):  # freed meanwhile
                self._sharing.release(semaphore, permit, died=True)

    async def handle(self, body: RequestBody, requester: ActorRecord | None) -> object:
        """Carry out ``body`` for ``requester`` (None: the script); return the answer."""
        tree, registry = self._tree, self._registry
        if isinstance(body, AwaitActor):  # senders keep waiting for restarts while stopping
            await registry.await_actor(body.ref, body.since)
            return None
        if isinstance(body, HowItEnded):
            return await registry.how_it_ended(body.ref, body.box)
        if not self._is_running():
            raise RuntimeClosedError("the runtime is shutting down")
        match body:
            case SpawnActor():
                node = tree.node_for(body.supervisor, requester)
                return await tree.spawn(
                    body.class_name,
                    body.payload,
                    body.name,
                    body.mailbox_size,
                    body.options,
                    node,
                    parent_id=None if requester is None else requester.ref.actor_id,
                )
            case CreateSupervisor(options=options):
                return tree.add_supervisor(options, tree.node_for(options.supervisor, requester))
            case Lookup(name=name):
                return registry.lookup(name)
            case StopActor(ref=ref):
                target = registry.records.get(ref.actor_id)
                if target is None or target.ref != ref:
                    if ref.actor_id in registry.ended:
                        return None
                    raise ActorNotFoundError(ref.name)
                await tree.stop(target)
                return None
            case Watch(ref=ref):
                if requester is None:
                    raise InvalidArgumentError("only actors watch other actors")
                target = registry.records.get(ref.actor_id)
                if target is None:
                    self._tg.start_soon(tree.notify_now, requester.ref, ref, registry.explain(ref))
                else:
                    target.watchers.add(requester.ref.actor_id)
                    requester.watching.add(ref.actor_id)
                return None
            case Unwatch(ref=ref):
                target = registry.records.get(ref.actor_id)
                if target is not None and requester is not None:
                    target.watchers.discard(requester.ref.actor_id)
                    requester.watching.discard(ref.actor_id)
                return None
            case CreateSharedArray(call=call):
                return self._shared.create_array(
                    call.shape, call.dtype, call.name, call.path, exclusive=call.exclusive
                )
            case CreateSemaphore():
                return self._shared.create_semaphore(body.value, body.name)
            case Free(handle=handle):
                self._shared.free(handle)
                self._sharing.forget(handle.key)
                return None
            case IsPeer(pid=pid):
                return pid == os.getpid() or pid in registry.live_pids()
            case AcquireSlot(semaphore=semaphore, timeout=timeout, pid=pid):
                if requester is None or requester.life is None:
                    raise InvalidArgumentError("only an actor takes a slot through the driver")
                box = f"{requester.ref.actor_id}.{requester.life.number}"
                permit = await self._sharing.acquire(semaphore, timeout, holder=pid)
                self._far_held.setdefault(box, []).append((semaphore, permit))
                return permit
            case ReleaseSlot(semaphore=semaphore, permit=permit):
                for held in self._far_held.values():
                    if (semaphore, permit) in held:
                        held.remove((semaphore, permit))
                        break
                self._sharing.release(semaphore, permit)
                return None
        raise InvalidArgumentError(f"unknown request {type(body).__name__}")
