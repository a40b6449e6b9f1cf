"""Shared arrays and shared semaphores: small picklable handles to memory the runtime owns.

A handle travels in messages and spawn arguments like any value. Using it maps the same
memory in the process that uses it; nothing is copied. ``actors`` never imports
``runtime``: the runtime installs the service that maps memory and takes locks in every
process it runs (the script's and each actor's), and handles look it up when used.
"""

from __future__ import annotations

import math
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from ._errors import InvalidSharedArrayError, RuntimeClosedError

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "Permit",
    "SharedArray",
    "SharedMemoryService",
    "SharedSemaphore",
    "current_shared_memory",
    "install_shared_memory",
]

#: seconds ``locked()`` and ``async with semaphore`` wait before raising LockTimeoutError
DEFAULT_LOCK_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Permit:
    """One slot of a ``SharedSemaphore``, held from ``acquire`` until ``release``.

    ``previous_holder_died`` is true when the last holder of this slot died while holding
    it (its process was killed or crashed); ``previous_pid`` is that process's pid.
    """

    slot: int
    previous_holder_died: bool = False
    previous_pid: int = 0


class SharedMemoryService(Protocol):
    """Maps shared memory and takes cross-process locks for the handles used in a process."""

    def array_view(self, array: SharedArray) -> npt.NDArray[Any]:
        """Return a writable view of ``array``'s memory, shaped and typed."""
        ...

    async def lock_array(self, array: SharedArray, timeout: float, recover: bool) -> object:
        """Take ``array``'s lock; return a token for ``unlock_array``."""
        ...

    def unlock_array(self, array: SharedArray, token: object, clean: bool) -> None:
        """Release ``array``'s lock; ``clean`` is false if the holder's block raised."""
        ...

    async def acquire(self, semaphore: SharedSemaphore, timeout: float) -> Permit:
        """Take one slot of ``semaphore``."""
        ...

    def release(self, semaphore: SharedSemaphore, permit: Permit) -> None:
        """Give a slot back."""
        ...


_service: SharedMemoryService | None = None


def install_shared_memory(service: SharedMemoryService | None) -> None:
    """Make ``service`` serve every handle used in this process (``None`` uninstalls)."""
    global _service
    _service = service


def current_shared_memory() -> SharedMemoryService:
    """Return this process's service, or explain why there is none."""
    if _service is None:
        raise RuntimeClosedError("no actor runtime is running in this process")
    return _service


class SharedArray:
    """A numpy array in shared memory, owned by the runtime: create it with ``shared_array``.

    The handle is a few hundred bytes whatever the array's size; send it in messages and
    spawn arguments. Every process that uses it maps the same memory.

    Example::

        total = await rt.shared_array((1,), dtype="int64")   # zero-filled
        async with total.locked() as view:                   # exclusive across processes
            view[0] += 5
        print(np.asarray(total)[0])                          # read-only, zero-copy

    ``np.asarray(handle)`` is a read-only view: write inside ``locked()``, or through
    ``view(writable=True)`` when actors write disjoint parts and need no lock. A view stays
    valid for as long as it is referenced, even after the array is freed or the run ends.
    """

    __slots__ = ("_base", "dtype", "key", "label", "lock_name", "node", "path", "run_id", "shape")

    def __init__(
        self,
        run_id: str,
        key: str,
        shape: tuple[int, ...],
        dtype: str,
        lock_name: str,
        label: str,
        path: str | None = None,
        node: str = "",
    ) -> None:
        self.run_id = run_id
        #: the segment's name in /dev/shm (or the file's key for file-backed arrays)
        self.key = key
        self.shape = shape
        # numpy loads with the first handle: a script that shares no array never needs it
        import numpy as np

        self.dtype = np.dtype(dtype)
        self.lock_name = lock_name
        self.label = label
        #: the .npy file this array maps, or None for an array in shared memory
        self.path = path
        #: the machine whose memory holds it, on a cluster ("": the local backend's one)
        self.node = node
        self._base: npt.NDArray[Any] | None = None

    @property
    def nbytes(self) -> int:
        """Size of the array's data in bytes."""
        return math.prod(self.shape) * self.dtype.itemsize

    def view(self, *, writable: bool = False) -> npt.NDArray[Any]:
        """Return a view of the shared memory (no copy).

        With ``writable=True`` writes are not locked: use it only when each actor writes
        its own part of the array, and ``locked()`` otherwise.

        Raises:
            StaleHandleError: the array was freed, or belongs to a run that has ended.
            RuntimeClosedError: no runtime runs in this process.
        """
        base = self._base
        if base is None:
            base = self._base = current_shared_memory().array_view(self)
        else:
            current_shared_memory()  # using a handle after its runtime exited is an error
        if writable:
            return base
        ro = base.view()
        ro.flags.writeable = False
        return ro

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> npt.NDArray[Any]:
        import numpy as np

        view = self.view()
        if dtype is not None and np.dtype(dtype) != self.dtype:
            if copy is False:
                raise InvalidSharedArrayError(
                    f"{self.label} is {self.dtype}; a zero-copy view cannot change it: "
                    "pass copy=None (or True) to np.asarray, or use the array's own dtype"
                )
            return view.astype(dtype)
        return view.copy() if copy else view

    def locked(
        self, *, timeout: float = DEFAULT_LOCK_TIMEOUT, recover: bool = False
    ) -> AbstractAsyncContextManager[npt.NDArray[Any]]:
        """Hold the array's lock, exclusive across all actors of the run; yield a writable view.

        Use it as ``async with handle.locked() as view:``. The lock is released when the
        holder's process dies, so a killed holder never blocks the others. Waiting does
        not block the event loop, and taking a free lock costs no event-loop round trip.

        Args:
            timeout: seconds to wait for the lock.
            recover: take the lock even though its previous holder died mid-write, to
                check or repair the data; the mark is cleared if the block ends cleanly.

        Raises:
            LockOwnerDiedError: the previous holder died while holding the lock; its
                writes may be partial (see ``recover``).
            LockTimeoutError: the lock was not free within ``timeout`` seconds.
            StaleHandleError: the array was freed, or belongs to a run that has ended.
        """
        return _Locked(self, timeout, recover)

    def __reduce__(self) -> tuple[object, tuple[Any, ...]]:
        return (
            SharedArray,
            (
                self.run_id,
                self.key,
                self.shape,
                self.dtype.str,
                self.lock_name,
                self.label,
                self.path,
                self.node,
            ),
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SharedArray)
            and other.run_id == self.run_id
            and other.key == self.key
            and other.path == self.path
        )

    def __hash__(self) -> int:
        return hash((self.run_id, self.key, self.path))

    def __repr__(self) -> str:
        return f"<SharedArray {self.label} shape={self.shape} dtype={self.dtype}>"


class _Locked:
    """The ``async with`` of ``SharedArray.locked()``."""

    __slots__ = ("_array", "_recover", "_service", "_timeout", "_token")

    def __init__(self, array: SharedArray, timeout: float, recover: bool) -> None:
        self._array = array
        self._timeout = timeout
        self._recover = recover
        self._service: SharedMemoryService | None = None
        self._token: object = None

    async def __aenter__(self) -> npt.NDArray[Any]:
        if self._service is not None:
            raise RuntimeError("this locked() block is already in use; call locked() again")
        service = current_shared_memory()
        self._token = await service.lock_array(self._array, self._timeout, self._recover)
        self._service = service
        try:
            return self._array.view(writable=True)
        except BaseException:
            self._release(True)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release(exc_type is None)

    def _release(self, clean: bool) -> None:
        service, self._service = self._service, None
        if service is not None:
            service.unlock_array(self._array, self._token, clean)


class SharedSemaphore:
    """A counting semaphore shared by every actor of a run: create it with ``semaphore``.

    Example::

        sem = await rt.semaphore(2)     # at most two holders at a time, in any processes
        async with sem:
            ...

    A holder that dies (even by SIGKILL) frees its slot at once; the next holder of that
    slot sees ``permit.previous_holder_died`` (``async with sem as permit``) and the event
    is logged as ``semaphore.holder_died``.
    """

    __slots__ = ("_held", "key", "label", "node", "run_id", "value")

    def __init__(self, run_id: str, key: str, value: int, label: str, node: str = "") -> None:
        self.run_id = run_id
        #: the machine whose lock files hold its slots, on a cluster ("": the only one)
        self.node = node
        self.key = key
        #: the number of slots
        self.value = value
        self.label = label
        self._held: dict[int, list[Permit]] = {}

    async def acquire(self, *, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Permit:
        """Take a slot, waiting (without blocking the event loop) while all are held.

        Raises:
            LockTimeoutError: no slot was free within ``timeout`` seconds.
            StaleHandleError: the semaphore belongs to a run that has ended.
        """
        return await current_shared_memory().acquire(self, timeout)

    def release(self, permit: Permit) -> None:
        """Give back a slot taken by ``acquire``."""
        current_shared_memory().release(self, permit)

    async def __aenter__(self) -> Permit:
        permit = await self.acquire()
        self._held.setdefault(anyio.get_current_task().id, []).append(permit)
        return permit

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = anyio.get_current_task().id
        stack = self._held[task]
        permit = stack.pop()
        if not stack:
            del self._held[task]
        self.release(permit)

    def __reduce__(self) -> tuple[object, tuple[Any, ...]]:
        return (SharedSemaphore, (self.run_id, self.key, self.value, self.label, self.node))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SharedSemaphore)
            and other.run_id == self.run_id
            and other.key == self.key
        )

    def __hash__(self) -> int:
        return hash((self.run_id, self.key))

    def __repr__(self) -> str:
        return f"<SharedSemaphore {self.label} value={self.value}>"
