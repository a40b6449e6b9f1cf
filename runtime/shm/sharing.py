"""Shared arrays and semaphores: the runtime creates and frees them, every process uses them.

``SharingService`` is the per-process half (the script's process and each actor's): it
maps arrays and takes locks for handles used there. ``SharedRegistry`` lives in the
runtime's process only: it creates segments, lock files and ``.npy`` mappings, frees
them, and unlinks every segment of the run when the run ends.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import anyio

from actors import (
    InvalidArgumentError,
    InvalidSharedArrayError,
    LockOwnerDiedError,
    LockTimeoutError,
    Permit,
    SharedArray,
    SharedArrayNotLocalError,
    SharedMemoryFullError,
    SharedNameTakenError,
    SharedSemaphore,
    StaleHandleError,
)

if TYPE_CHECKING:  # numpy loads with the first shared array: a run without one never needs it
    import numpy as np
    import numpy.typing as npt

from ..observe.logging import Log
from .locks import DIRTY, FREED, LockFile, LockState, poll_until
from .segments import (
    attach_segment,
    create_segment,
    segment_name,
    segments_of,
    unlink_segment,
    unlink_segments,
)

__all__ = ["SharedRegistry", "SharingService", "array_nbytes", "array_spec"]

#: the largest array in bytes: what an mmap offset (a signed 64-bit int) can address
_MAX_ARRAY = 2**63 - 1

_LOCK_NAME = re.compile(r"[a-z][0-9]{1,12}(?:-[0-9]{1,6})?\Z")
_MAX_SEMAPHORE = 1024
_LABEL = re.compile(r"[\w.\-]{1,64}\Z")


class SharingService:
    """``actors.SharedMemoryService`` for one process of a run."""

    def __init__(
        self,
        run_id: str,
        lock_dir: Path,
        log: Log,
        node: str = "",
        far: FarSemaphores | None = None,
    ) -> None:
        self.run_id = run_id
        self.lock_dir = lock_dir
        self.log = log
        #: the machine this process runs on, on a cluster ("": the local backend's one)
        self.node = node
        #: takes slots of semaphores that live on another machine (through the driver)
        self.far = far
        self._views: dict[tuple[str, str | None], weakref.ref[npt.NDArray[Any]]] = {}
        self._locks: dict[str, LockFile] = {}
        self._reported: set[tuple[str, int]] = set()

    def _check(self, handle: SharedArray | SharedSemaphore) -> None:
        if handle.run_id != self.run_id:
            raise StaleHandleError(
                repr(handle), f"it belongs to run {handle.run_id}, not to this run {self.run_id}"
            )
        if handle.node != self.node:
            raise SharedArrayNotLocalError(repr(handle), handle.node, self.node)

    # -- arrays --------------------------------------------------------------------------

    def array_view(self, array: SharedArray) -> npt.NDArray[Any]:
        self._check(array)
        cache_key = (array.key, array.path)
        cached = self._views.get(cache_key)
        if cached is not None and (view := cached()) is not None:
            return view
        view = self._map(array)
        self._views[cache_key] = weakref.ref(view)
        self.log.info(
            "segment.attached",
            segment=array.key,
            array=array.label,
            nbytes=array.nbytes,
            path=array.path,
        )
        return view

    def _map(self, array: SharedArray) -> npt.NDArray[Any]:
        import numpy as np

        count = int(np.prod(array.shape, dtype=np.int64))
        if array.path is None:
            mapping = attach_segment(array.key, array.nbytes, repr(array))
            return np.frombuffer(mapping, dtype=array.dtype, count=count).reshape(array.shape)
        if not (self.lock_dir / f"{array.lock_name}.lock").exists():
            raise StaleHandleError(repr(array), "it was freed or its run has ended")
        try:
            mapped = np.load(array.path, mmap_mode="r+", allow_pickle=False)
        except FileNotFoundError:
            raise StaleHandleError(repr(array), f"{array.path} no longer exists") from None
        if mapped.shape != array.shape or mapped.dtype != array.dtype:
            raise StaleHandleError(
                repr(array),
                f"{array.path} now holds shape {mapped.shape} dtype {mapped.dtype}",
            )
        view: npt.NDArray[Any] = mapped.view(np.ndarray)
        return view

    def forget(self, key: str) -> None:
        """Stop handing out the cached mapping of ``key`` (it was freed)."""
        for cache_key in [k for k in self._views if k[0] == key]:
            del self._views[cache_key]

    def _lock_file(self, name: str, what: str) -> LockFile:
        lock = self._locks.get(name)
        if lock is None:
            if not _LOCK_NAME.match(name):
                raise StaleHandleError(what, f"{name!r} is not a lock of this runtime")
            lock = self._locks[name] = LockFile(self.lock_dir / f"{name}.lock", what)
        return lock

    async def lock_array(self, array: SharedArray, timeout: float, recover: bool) -> LockState:
        self._check(array)
        lock = self._locks.get(array.lock_name) or self._lock_file(array.lock_name, repr(array))
        deadline = anyio.current_time() + timeout
        try:
            lock.local.acquire_nowait()
        except anyio.WouldBlock:
            try:
                with anyio.fail_after(timeout):
                    await lock.local.acquire()  # tasks of this process queue here, in order
            except TimeoutError:
                raise LockTimeoutError(repr(array), timeout) from None
        try:
            if not lock.try_lock():
                await poll_until(lock, array, max(0.0, deadline - anyio.current_time()), timeout)
            try:
                state = pid, epoch, flags = lock.read()
                if flags & FREED:
                    raise StaleHandleError(repr(array), "it was freed")
                if flags & DIRTY:
                    self._owner_died(array, pid, epoch, recover)
                lock.write(os.getpid(), epoch, DIRTY)
            except BaseException:
                lock.unlock()
                raise
        except BaseException:
            lock.local.release()
            raise
        return state

    def unlock_array(self, array: SharedArray, token: object, clean: bool) -> None:
        lock = self._locks[array.lock_name]
        pid, epoch, flags = cast(LockState, token)
        try:
            if clean or not (flags & DIRTY):
                # a live holder whose block raised saw its own exception: that is no death
                lock.write(0, epoch + 1, 0)
            else:
                lock.write(pid, epoch, DIRTY)  # the repair failed: still marked
        finally:
            lock.unlock()
            lock.local.release()

    def _owner_died(self, array: SharedArray, pid: int, epoch: int, recover: bool) -> None:
        if (array.lock_name, epoch) not in self._reported or recover:
            self._reported.add((array.lock_name, epoch))
            self.log.warning(
                "lock.owner_died",
                array=array.label,
                segment=array.key,
                previous_pid=pid,
                epoch=epoch,
                recovering=recover,
            )
        if not recover:
            raise LockOwnerDiedError(repr(array), pid, epoch)

    # -- semaphores ----------------------------------------------------------------------

    def _slots(self, sem: SharedSemaphore) -> list[LockFile]:
        self._check(sem)
        if not (isinstance(sem.value, int) and 0 < sem.value <= _MAX_SEMAPHORE):
            raise StaleHandleError(repr(sem), f"it has an impossible value {sem.value!r}")
        return [self._lock_file(f"{sem.key}-{i}", repr(sem)) for i in range(sem.value)]

    async def acquire(
        self, semaphore: SharedSemaphore, timeout: float, *, holder: int = 0
    ) -> Permit:
        """Take a slot; ``holder``: the pid to record as holding it (default: this process,
        which holds it; the driver holds slots for actors on other machines)."""
        if self.far is not None and semaphore.node != self.node:
            return await self.far.acquire(semaphore, timeout)
        slots = self._slots(semaphore)
        free = next((s for s in slots if not s.held and s.try_lock()), None)
        lock = free or await poll_until(slots, semaphore, timeout)
        slot = slots.index(lock)
        pid, epoch, flags = lock.read()
        if flags & FREED:
            lock.unlock()
            raise StaleHandleError(repr(semaphore), "it was freed")
        died = pid != 0
        if died:
            self.log.warning(
                "semaphore.holder_died", semaphore=semaphore.label, slot=slot, previous_pid=pid
            )
        lock.write(holder or os.getpid(), epoch + 1, 0)
        return Permit(slot, died, pid if died else 0)

    def release(self, semaphore: SharedSemaphore, permit: Permit, *, died: bool = False) -> None:
        """Give back a slot; ``died``: its holder died holding it (the next holder is told)."""
        if self.far is not None and semaphore.node != self.node:
            self.far.release(semaphore, permit)
            return
        slots = self._slots(semaphore)
        if not 0 <= permit.slot < len(slots) or not slots[permit.slot].held:
            raise RuntimeError(f"{permit} of {semaphore!r} is not held by this process")
        lock = slots[permit.slot]
        pid, epoch, _flags = lock.read()
        lock.write(pid if died else 0, epoch, 0)
        lock.unlock()

    def close(self) -> None:
        for lock in self._locks.values():
            lock.close()
        self._locks.clear()


def _shape(shape: object) -> tuple[int, ...]:
    import numpy as np

    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    if not isinstance(shape, (tuple, list)) or not all(
        isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise InvalidSharedArrayError(
            f"shape must be a tuple of non-negative ints such as (1000, 3), not {shape!r}"
        )
    return tuple(int(n) for n in shape)


def _dtype(dtype: object) -> np.dtype[Any]:
    import numpy as np

    try:
        dt: np.dtype[Any] = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError as exc:
        raise InvalidSharedArrayError(
            f"dtype {dtype!r} is not a numpy dtype ({exc}); use e.g. 'int64' or np.float32"
        ) from None
    if dt.hasobject:
        raise InvalidSharedArrayError(
            f"dtype {dt} holds Python objects, which cannot live in shared memory; use a "
            "numeric, bool, fixed-size string or structured dtype"
        )
    if dt.itemsize == 0:
        raise InvalidSharedArrayError(f"dtype {dt} has no size; give one, such as 'U16' or 'S32'")
    return dt


def _describe(dims: tuple[int, ...] | None, dtype: np.dtype[Any] | None, path: str | None) -> str:
    """``shape (4,) and dtype int64 in shared memory`` (or ``in file <path>``), for errors."""
    shape = "the file's shape" if dims is None else f"shape {dims}"
    dt = "the file's dtype" if dtype is None else f"dtype {dtype}"
    return f"{shape} and {dt} " + ("in shared memory" if path is None else f"in file {path}")


def array_spec(shape: object, dtype: object) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Check a requested shape and dtype; raise ``InvalidSharedArrayError`` with the fix."""
    dims, dt = _shape(shape), _dtype(dtype)
    nbytes = array_nbytes(dims, dt)
    if nbytes > _MAX_ARRAY:  # exact, in Python ints: numpy's own product would wrap
        raise InvalidSharedArrayError(
            f"shape {dims} of {dt} needs {nbytes:,} bytes, more than an array can hold "
            f"({_MAX_ARRAY:,}); use a smaller shape, or split the data into several arrays"
        )
    return dims, dt


def array_nbytes(dims: tuple[int, ...], dt: np.dtype[Any]) -> int:
    """The bytes an array of ``dims`` and ``dt`` needs, exactly."""
    return math.prod(dims) * dt.itemsize


class FarSemaphores(Protocol):
    """Takes slots of semaphores held on another machine (the driver's, on Ray)."""

    async def acquire(self, semaphore: SharedSemaphore, timeout: float) -> Permit: ...

    def release(self, semaphore: SharedSemaphore, permit: Permit) -> None: ...


class SharedRegistry:
    """Creates and frees the run's shared arrays and semaphores (runtime process only)."""

    def __init__(
        self, run_id: str, lock_dir: Path, log: Log, budget: int | None, node: str = ""
    ) -> None:
        self.run_id = run_id
        self.lock_dir = lock_dir
        self.log = log
        self.budget = budget
        #: the machine holding the run's shared memory, on a cluster (the driver's)
        self.node = node
        self.used = 0
        self._ids = itertools.count(1)
        self._live: dict[str, SharedArray | SharedSemaphore] = {}
        #: the key of each name given by a user, per kind; a name whose key is no longer
        #: live (freed) is free again
        self._names: dict[tuple[str, str], str] = {}

    def create_array(
        self,
        shape: object,
        dtype: object,
        name: str | None = None,
        path: str | None = None,
        *,
        exclusive: bool = False,
    ) -> SharedArray:
        """Create a zero-filled array in shared memory, or map the ``.npy`` file ``path``.

        A ``name`` is unique among the live arrays: asking for it again returns the same
        handle if the shape, dtype and file match (a file's shape and dtype may be None),
        and raises ``SharedNameTakenError`` saying what it holds if they don't, or if the
        call is ``exclusive`` (``share``: always a new array).
        """
        if name is not None:
            existing = self._named("array", self._label(name, ""))
            if isinstance(existing, SharedArray):
                if exclusive:
                    raise SharedNameTakenError(
                        "shared array",
                        name,
                        f"shape {existing.shape} and dtype {existing.dtype}",
                        "a new array (share always makes one)",
                    )
                return self._same_array(existing, shape, dtype, path)
        n = next(self._ids)
        label = self._label(name, f"array-{n}")
        if path is not None:
            return self._map_file(n, label, shape, dtype, path, named=name is not None)
        dims, dt = array_spec(shape, dtype)
        nbytes = array_nbytes(dims, dt)
        if self.budget is not None and self.used + nbytes > self.budget:
            raise SharedMemoryFullError(nbytes, self.budget - self.used, "Runtime(shm_budget)")
        # the name gets a random part: handles carry it, so nobody needs to guess it
        key, mapping = create_segment(segment_name(self.run_id, f"a{n}"), nbytes)  # zeroed
        mapping.close()  # nothing exported yet; users map it again through the handle
        lock_name = f"a{n}"
        LockFile(self.lock_dir / f"{lock_name}.lock", label, create=True).close()
        handle = SharedArray(self.run_id, key, dims, dt.str, lock_name, label, node=self.node)
        self.used += nbytes
        self._live[key] = handle
        if name is not None:
            self._names["array", label] = key
        self.log.info(
            "segment.created",
            segment=key,
            array=label,
            shape=list(dims),
            dtype=dt.str,
            nbytes=nbytes,
        )
        return handle

    def _named(self, kind: str, name: str) -> SharedArray | SharedSemaphore | None:
        """The live ``array`` or ``semaphore`` a user named ``name``, or None."""
        key = self._names.get((kind, name))
        return None if key is None else self._live.get(key)

    def _same_array(
        self, existing: SharedArray, shape: object, dtype: object, path: str | None
    ) -> SharedArray:
        """``existing`` if ``shape``, ``dtype`` and ``path`` ask for it; else refuse."""
        dims: tuple[int, ...] | None
        dt: np.dtype[Any] | None
        if path is None:
            dims, dt = array_spec(shape, dtype)
            file = None
        else:
            # a file's shape and dtype may be left out: they are the file's
            dims = None if shape is None else _shape(shape)
            dt = None if dtype is None else _dtype(dtype)
            file = str(Path(path).expanduser().resolve())
        same_shape = dims is None or dims == existing.shape
        if file == existing.path and same_shape and (dt is None or dt == existing.dtype):
            return existing
        raise SharedNameTakenError(
            "shared array",
            existing.label,
            _describe(existing.shape, existing.dtype, existing.path),
            _describe(dims, dt, file),
        )

    def _map_file(
        self, n: int, label: str, shape: object, dtype: object, path: str, *, named: bool
    ) -> SharedArray:
        import numpy as np

        file = Path(path).expanduser().resolve()
        if file.suffix != ".npy":
            raise InvalidSharedArrayError(f"{path} must be a .npy file (np.save writes one)")
        if file.exists():
            try:
                mapped = np.load(file, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError) as exc:
                raise InvalidSharedArrayError(
                    f"{file} is not a readable .npy file: {exc}"
                ) from None
            dims, dt = tuple(mapped.shape), mapped.dtype
            del mapped
            if shape is not None and _shape(shape) != dims:
                raise InvalidSharedArrayError(
                    f"{file} holds shape {dims}, not {_shape(shape)}; omit shape to use the file's"
                )
            if dtype is not None and _dtype(dtype) != dt:
                raise InvalidSharedArrayError(
                    f"{file} holds dtype {dt}, not {_dtype(dtype)}; omit dtype to use the file's"
                )
            created = False
        else:
            if shape is None:
                raise InvalidSharedArrayError(f"{file} does not exist; give a shape to create it")
            dims, dt = array_spec(shape, "float64" if dtype is None else dtype)
            if not file.parent.is_dir():
                raise InvalidSharedArrayError(
                    f"cannot create {file}: {file.parent} is no directory"
                )
            created_map = np.lib.format.open_memmap(file, mode="w+", dtype=dt, shape=dims)
            created_map.flush()
            del created_map
            created = True
        key = f"f{n}"
        LockFile(self.lock_dir / f"{key}.lock", label, create=True).close()
        handle = SharedArray(self.run_id, key, dims, dt.str, key, label, str(file), self.node)
        self._live[key] = handle
        if named:
            self._names["array", label] = key
        self.log.info(
            "file.mapped",
            array=label,
            path=str(file),
            shape=list(dims),
            dtype=dt.str,
            created=created,
        )
        return handle

    def create_semaphore(self, value: object, name: str | None = None) -> SharedSemaphore:
        """Create a semaphore with ``value`` slots.

        A ``name`` is unique among the live semaphores: asking for it again returns the
        same handle if ``value`` matches, and raises ``SharedNameTakenError`` if not.
        """
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_SEMAPHORE:
            raise InvalidArgumentError(
                f"a semaphore's value must be an int from 1 to {_MAX_SEMAPHORE}, not {value!r}"
            )
        if name is not None:
            existing = self._named("semaphore", self._label(name, ""))
            if isinstance(existing, SharedSemaphore):
                if existing.value == value:
                    return existing
                raise SharedNameTakenError(
                    "semaphore", existing.label, f"value {existing.value}", f"value {value}"
                )
        n = next(self._ids)
        key = f"s{n}"
        label = self._label(name, f"semaphore-{n}")
        for i in range(value):
            LockFile(self.lock_dir / f"{key}-{i}.lock", label, create=True).close()
        handle = SharedSemaphore(self.run_id, key, value, label, self.node)
        self._live[key] = handle
        if name is not None:
            self._names["semaphore", label] = key
        self.log.info("semaphore.created", semaphore=label, value=value)
        return handle

    def free(self, handle: SharedArray | SharedSemaphore) -> None:
        """Release ``handle``'s memory and lock files; later use raises StaleHandleError."""
        if not isinstance(handle, (SharedArray, SharedSemaphore)):
            raise InvalidArgumentError(
                f"free() takes a SharedArray or SharedSemaphore, not {handle!r}"
            )
        live = self._live.get(handle.key)
        if handle.run_id != self.run_id or live is None or live != handle:
            raise StaleHandleError(repr(handle), "it is unknown to this runtime or already freed")
        del self._live[handle.key]
        if isinstance(handle, SharedArray):
            locks = [handle.lock_name]
            if handle.path is None:
                self.used -= handle.nbytes
                if unlink_segment(handle.key):
                    self.log.info("segment.unlinked", segment=handle.key, array=handle.label)
        else:
            locks = [f"{handle.key}-{i}" for i in range(handle.value)]
            self.log.info("semaphore.freed", semaphore=handle.label)
        for name in locks:
            path = self.lock_dir / f"{name}.lock"
            try:
                lock = LockFile(path, repr(handle))
            except StaleHandleError:
                continue
            # processes that opened the file keep it open: tell them through its record
            pid, epoch, flags = lock.read()
            lock.write(pid, epoch, flags | FREED)
            lock.close()
            path.unlink(missing_ok=True)

    def close(self) -> int:
        """Unlink every segment of the run (arrays and messages); return how many."""
        removed = unlink_segments(segments_of(self.run_id))
        for key, handle in list(self._live.items()):
            if isinstance(handle, SharedArray) and handle.path is None:
                self.log.info("segment.unlinked", segment=key, array=handle.label)
        self._live.clear()
        return removed

    @staticmethod
    def _label(name: str | None, default: str) -> str:
        if name is None:
            return default
        if not isinstance(name, str) or not _LABEL.match(name):
            raise InvalidSharedArrayError(
                f"a name must be 1-64 letters, digits, '.', '-' or '_', not {name!r}"
            )
        return name
