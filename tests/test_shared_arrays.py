"""Shared arrays and semaphores across real actor processes: zero copy, locks, deaths."""

from __future__ import annotations

import os
import pickle
import signal
import time
from pathlib import Path

import anyio
import numpy as np
import pytest

from actors import (
    InvalidSharedArrayError,
    LockOwnerDiedError,
    LockTimeoutError,
    RuntimeClosedError,
    SharedArray,
    SharedMemoryFullError,
    StaleHandleError,
)
from runtime import Runtime
from runtime.shm.segments import free_bytes, segments_of
from tests.helpers import SharedUser, read_events

pytestmark = pytest.mark.anyio


async def test_an_actor_maps_the_same_memory_and_sees_writes_without_a_message(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        big = await rt.shared_array((100 * 1024 * 1024 // 8,), dtype="float64", name="big")
        assert len(pickle.dumps(big)) < 500  # the handle is what travels, whatever the size
        user = await rt.spawn(SharedUser)
        assert await user.ask(("maps", big)) is True  # its process maps our segment
        async with big.locked() as view:
            view[:3] = [1.5, 2.5, 3.5]
        assert await user.ask(("head", big, 3)) == [1.5, 2.5, 3.5]
        await user.tell(("fill", big, 4.0))
        await user.ask("pid")  # FIFO: the fill is done
        ours = np.asarray(big)
        assert ours[0] == ours[-1] == 4.0
        assert np.shares_memory(ours, big.view(writable=True))
        assert not ours.flags.writeable  # reads only: writes go through locked()
    events = [e["event"] for e in read_events(tmp_path)]
    assert {"segment.created", "segment.attached", "segment.unlinked"} <= set(events)


async def test_concurrent_locked_increments_from_several_actors_lose_no_update(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        total = await rt.shared_array((1,), dtype="int64", name="total")
        users = [await rt.spawn(SharedUser) for _ in range(4)]
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for user in users:
                    tg.start_soon(user.ask, ("add", total, 2500))
        assert int(np.asarray(total)[0]) == 4 * 2500


async def test_a_holder_killed_inside_locked_frees_the_lock_and_the_next_holder_is_told(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        data = await rt.shared_array((4,), dtype="int64", name="data")
        holder, other = await rt.spawn(SharedUser), await rt.spawn(SharedUser)
        pid = await holder.ask(("hold", data))
        assert await other.ask(("try-lock", data, 0.2)) == ("timeout",)  # really held
        async with rt.probe() as probe:
            os.kill(pid, signal.SIGKILL)
            started = time.monotonic()
            outcome = await other.ask(("try-lock", data, 5.0))
            assert outcome == ("owner_died", pid, 0)
            assert time.monotonic() - started < 2.0
            # the mark stays until someone repairs the data under recover=True
            with pytest.raises(LockOwnerDiedError, match=f"pid {pid}"):
                async with data.locked(timeout=5):
                    pass
            async with data.locked(recover=True) as view:
                assert view[0] == -1  # the dead holder's partial write is visible
                view[0] = 0
            assert await other.ask(("try-lock", data, 5.0)) == ("ok", [0, 0, 0, 0])
            # the lock told of the death before the runtime noticed it, maybe: an ask sent
            # meanwhile would go to the dead incarnation and fail (at most once)
            await probe.expect("actor.restarted", actor=holder.name)
        assert await holder.ask("pid") != pid  # its supervisor restarted it
    died = [e for e in read_events(tmp_path) if e["event"] == "lock.owner_died"]
    assert died
    assert died[0]["previous_pid"] == pid
    assert died[0]["array"] == "data"


async def test_a_semaphore_bounds_holders_and_frees_a_killed_holders_slot(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        sem = await rt.semaphore(2, name="pool")
        a, b = await rt.spawn(SharedUser), await rt.spawn(SharedUser)
        permit = await sem.acquire()
        pid = await a.ask(("hold-slot", sem))
        assert await b.ask(("take-slot", sem, 0.2)) == ("timeout",)  # both slots are held
        sem.release(permit)
        assert await b.ask(("take-slot", sem, 5.0)) == ("ok", False, 0)
        async with sem as mine:  # keep the free slot, so b must get the dead holder's
            os.kill(pid, signal.SIGKILL)
            assert not mine.previous_holder_died
            assert await b.ask(("take-slot", sem, 5.0)) == ("ok", True, pid)
    died = [e for e in read_events(tmp_path) if e["event"] == "semaphore.holder_died"]
    assert died
    assert died[0]["previous_pid"] == pid


async def test_waiting_for_a_lock_never_blocks_the_event_loop(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        data = await rt.shared_array((1,), dtype="int64")
        holder = await rt.spawn(SharedUser)
        pid = await holder.ask(("hold", data))
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await anyio.sleep(0.01)

        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            with pytest.raises(LockTimeoutError, match="within 0.5 s"):
                async with data.locked(timeout=0.5):
                    pass
            tg.cancel_scope.cancel()
        assert ticks >= 10  # the loop kept running while we waited
        os.kill(pid, signal.SIGKILL)


async def test_actors_create_share_and_free_arrays_that_the_runtime_owns(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        user = await rt.spawn(SharedUser)
        made = await user.ask(("create", (2, 3), "int32"))
        assert isinstance(made, SharedArray)
        assert made.label == "made-inside"
        assert np.asarray(made).tolist() == [[7, 7, 7], [7, 7, 7]]
        copied = await user.ask(("share", np.arange(5)))
        assert np.asarray(copied).tolist() == [0, 1, 2, 3, 4]
        sem = await user.ask(("semaphore", 1))
        async with sem:
            pass
        assert await user.ask(("free", made)) == "freed"
        fresh = pickle.loads(pickle.dumps(made))  # a handle never mapped in this process
        with pytest.raises(StaleHandleError, match="freed"):
            np.asarray(fresh)
        with pytest.raises(StaleHandleError):
            async with made.locked():
                pass
        with pytest.raises(StaleHandleError, match="already freed"):
            await rt.free(made)
        assert segments_of(rt.run_id, "a") == [copied.key]


async def test_a_npy_file_is_mapped_shared_and_outlives_the_run(tmp_path: Path) -> None:
    path = tmp_path / "data.npy"
    async with Runtime(log_dir=tmp_path) as rt:
        mapped = await rt.shared_array((3, 2), dtype="float32", path=path)
        assert mapped.path == str(path)
        user = await rt.spawn(SharedUser)
        await user.ask(("fill", mapped, 2.5))
        assert np.asarray(mapped).sum() == pytest.approx(15.0)
    assert np.load(path).tolist() == [[2.5, 2.5]] * 3
    async with Runtime(log_dir=tmp_path / "again") as rt:
        again = await rt.shared_array(None, path=str(path))  # shape and dtype from the file
        assert again.shape == (3, 2)
        assert again.dtype == np.float32
        with pytest.raises(InvalidSharedArrayError, match="holds shape"):
            await rt.shared_array((4,), path=path)
        with pytest.raises(InvalidSharedArrayError, match="holds dtype"):
            await rt.shared_array((3, 2), "int64", path=path)
        with pytest.raises(InvalidSharedArrayError, match="give a shape"):
            await rt.shared_array(None, path=tmp_path / "missing.npy")
        with pytest.raises(InvalidSharedArrayError, match=".npy"):
            await rt.shared_array((3,), path=tmp_path / "data.bin")
        await rt.free(again)
        with pytest.raises(StaleHandleError, match="freed"):
            np.asarray(pickle.loads(pickle.dumps(again)))
    assert path.exists()  # freeing a mapped file keeps the file


async def test_bad_shapes_dtypes_and_handles_get_errors_that_say_what_to_do(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        with pytest.raises(InvalidSharedArrayError, match="Python objects"):
            await rt.shared_array((3,), dtype=object)
        with pytest.raises(InvalidSharedArrayError, match="not a numpy dtype"):
            await rt.shared_array((3,), dtype="int77")
        with pytest.raises(InvalidSharedArrayError, match="has no size"):
            await rt.shared_array((3,), dtype="U")
        for shape in [(-1,), "3", (2.5,), (True,)]:
            with pytest.raises(InvalidSharedArrayError, match="non-negative ints"):
                await rt.shared_array(shape, dtype="int8")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="from 1 to"):
            await rt.semaphore(0)
        real = await rt.shared_array(4, dtype="uint8")
        with pytest.raises(ValueError, match="zero-copy view cannot change"):
            np.asarray(real, dtype="float64", copy=False)
        forged = SharedArray(rt.run_id, f"actors_{rt.run_id}_a999", (4,), "|u1", "a999", "x")
        with pytest.raises(StaleHandleError, match="freed or its run has ended"):
            np.asarray(forged)
        other_run = SharedArray("1-abcdef", "actors_1-abcdef_a1", (4,), "|u1", "a1", "y")
        with pytest.raises(StaleHandleError, match="belongs to run 1-abcdef"):
            np.asarray(other_run)
        user = await rt.spawn(SharedUser)
        with pytest.raises(StaleHandleError, match="belongs to run 1-abcdef"):
            await user.ask(("read", other_run))
        view = np.asarray(real)
    assert view.tolist() == [0, 0, 0, 0]  # views stay valid after the run: no crash
    with pytest.raises(RuntimeClosedError):
        np.asarray(real)
    with pytest.raises(RuntimeClosedError):
        async with real.locked():
            pass


async def test_a_full_dev_shm_is_an_error_at_creation_never_a_crash_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Runtime(log_dir=tmp_path / "budget", shm_budget=1 << 20) as rt:
        await rt.shared_array((1 << 19,), dtype="uint8")
        with pytest.raises(SharedMemoryFullError, match="shm_budget"):
            await rt.shared_array((1 << 19) + 1, dtype="uint8")
    async with Runtime(log_dir=tmp_path) as rt:
        with pytest.raises(SharedMemoryFullError, match="/dev/shm has"):
            await rt.shared_array((free_bytes() + 4096,), dtype="uint8")

        def no_space(fd: int, offset: int, length: int) -> None:
            raise OSError(28, "No space left on device")  # what a full tmpfs answers

        monkeypatch.setattr(os, "posix_fallocate", no_space)
        with pytest.raises(SharedMemoryFullError, match="--shm-size"):
            await rt.shared_array((1024,), dtype="uint8")
        monkeypatch.undo()
        assert segments_of(rt.run_id) == []  # nothing half-made is left
        small = await rt.shared_array((1024,), dtype="uint8")
        assert np.asarray(small).sum() == 0
