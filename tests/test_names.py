"""Names: of supervisors, shared arrays and semaphores, and ``name`` as an ``__init__`` argument.

A name finds the live shared array (or semaphore) it names when asked for the same thing,
and is refused otherwise; a supervisor's name, like an actor's, is refused while taken.
``name=`` belongs to spawn; ``init_kwargs=`` carries an ``__init__`` argument called name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from actors import (
    Actor,
    ActorsError,
    InvalidSpawnError,
    SharedArray,
    SharedNameTakenError,
    SharedSemaphore,
    Supervisor,
    SupervisorNameTakenError,
)
from runtime import Runtime

pytestmark = pytest.mark.anyio


class Named(Actor):
    """An actor whose ``__init__`` takes ``name``: "names" returns (that name, its ref's)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.given = name

    async def receive(self, message: Any) -> Any:
        if message == "names":
            return self.given, self.ref.name
        return None


class Namer(Actor):
    """Asks its context for named things; returns them, or (error type, ValueError?, text)."""

    async def receive(self, message: Any) -> Any:
        context = self.context
        try:
            match message:
                case ("array", shape, dtype, str(name)):
                    return await context.shared_array(shape, dtype, name=name)
                case ("fill", SharedArray() as array, value):
                    async with array.locked() as view:
                        view[...] = value
                    return "filled"
                case ("semaphore", int(value), str(name)):
                    return await context.semaphore(value, name=name)
                case ("supervisor", str(name)):
                    return await context.supervisor(name)
                case ("spawn-named", str(actor_name), str(init_name)):
                    ref = await context.spawn(
                        Named, name=actor_name, init_kwargs={"name": init_name}
                    )
                    return await ref.ask("names")
        except ActorsError as exc:
            return type(exc).__name__, isinstance(exc, ValueError), str(exc)
        return None


# -- shared arrays -------------------------------------------------------------------------


async def test_a_named_shared_array_asked_for_again_with_its_shape_and_dtype_is_the_same_array(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        first = await rt.shared_array((4,), "int64", name="counts")
        again = await rt.shared_array(4, np.int64, name="counts")  # the same, spelt otherwise
        assert again == first
        assert np.shares_memory(first.view(writable=True), again.view(writable=True))
        namer = await rt.spawn(Namer)
        inside = await namer.ask(("array", (4,), "int64", "counts"))
        assert inside == first
        assert await namer.ask(("fill", inside, 9)) == "filled"
        assert np.asarray(first).tolist() == [9, 9, 9, 9]  # the actor wrote our memory
        other = await rt.shared_array((4,), "int64", name="other")
        assert other != first  # another name is another array


async def test_a_shared_array_name_asked_for_with_another_shape_or_dtype_is_refused(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        await rt.shared_array((4,), "int64", name="counts")
        with pytest.raises(SharedNameTakenError) as refused:
            await rt.shared_array((5,), "int64", name="counts")
        assert isinstance(refused.value, ValueError)
        text = str(refused.value)
        assert "a shared array named 'counts' already exists with shape (4,) and dtype int64" in (
            text
        )
        assert "not shape (5,)" in text
        assert "pick another name, or free(handle) the existing one first" in text
        with pytest.raises(SharedNameTakenError, match="dtype int64 in shared memory, not"):
            await rt.shared_array((4,), "float32", name="counts")
        namer = await rt.spawn(Namer)
        error_type, is_value_error, text = await namer.ask(("array", (2, 2), "int64", "counts"))
        assert (error_type, is_value_error) == ("SharedNameTakenError", True)
        assert "already exists with shape (4,)" in text
        assert "pick another name" in text


async def test_a_shared_array_name_is_taken_only_while_its_array_lives(tmp_path: Path) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        first = await rt.shared_array((4,), "int64", name="counts")
        with pytest.raises(SharedNameTakenError, match="free\\(handle\\)"):
            await rt.shared_array((5,), "int64", name="counts")
        await rt.free(first)
        second = await rt.shared_array((5,), "int64", name="counts")
        assert second != first
        assert second.shape == (5,)
        assert await rt.shared_array((5,), "int64", name="counts") == second


async def test_a_file_backed_array_and_one_in_memory_cannot_have_the_same_name(
    tmp_path: Path,
) -> None:
    path, elsewhere = tmp_path / "data.npy", tmp_path / "elsewhere.npy"
    async with Runtime(log_dir=tmp_path) as rt:
        await rt.shared_array((3,), "float64", name="in-memory")
        with pytest.raises(SharedNameTakenError, match=f"in shared memory, not .* in file {path}"):
            await rt.shared_array((3,), "float64", name="in-memory", path=path)
        mapped = await rt.shared_array((3,), "float64", name="on-disk", path=path)
        with pytest.raises(SharedNameTakenError, match=f"in file {path}, not .* in shared memory"):
            await rt.shared_array((3,), "float64", name="on-disk")
        # the same file again: the same array; its shape and dtype may be left to the file
        assert await rt.shared_array(None, name="on-disk", path=str(path)) == mapped
        with pytest.raises(SharedNameTakenError, match="pick another name"):
            await rt.shared_array((3,), "float64", name="on-disk", path=elsewhere)
        assert not elsewhere.exists()  # refused before anything was created


# -- semaphores --------------------------------------------------------------------------


async def test_a_named_semaphore_asked_for_again_is_the_same_only_with_the_same_value(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        first = await rt.semaphore(2, name="gpus")
        assert await rt.semaphore(2, name="gpus") == first
        namer = await rt.spawn(Namer)
        assert await namer.ask(("semaphore", 2, "gpus")) == first
        with pytest.raises(SharedNameTakenError) as refused:
            await rt.semaphore(3, name="gpus")
        assert isinstance(refused.value, ValueError)
        assert str(refused.value).startswith(
            "a semaphore named 'gpus' already exists with value 2, not value 3; ask for value 2"
        )
        error_type, _, text = await namer.ask(("semaphore", 1, "gpus"))
        assert error_type == "SharedNameTakenError"
        assert "pick another name" in text
        # arrays and semaphores name different things: the same name is no clash
        array = await rt.shared_array((1,), "int64", name="gpus")
        assert isinstance(array, SharedArray)
        await rt.free(first)
        fresh = await rt.semaphore(3, name="gpus")
        assert isinstance(fresh, SharedSemaphore)
        assert (fresh != first, fresh.value) == (True, 3)


# -- supervisors -------------------------------------------------------------------------


async def test_a_supervisor_name_is_refused_while_taken_and_unnamed_supervisors_never_clash(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        sup = await rt.supervisor("workers")
        with pytest.raises(SupervisorNameTakenError) as refused:
            await rt.supervisor("workers", strategy="one_for_all")
        assert isinstance(refused.value, ValueError)
        assert str(refused.value) == (
            "a supervisor named 'workers' already exists; pick another name, or spawn under "
            "the Supervisor that the first supervisor('workers') returned (pass it as "
            "supervisor=)"
        )
        with pytest.raises(SupervisorNameTakenError):  # under another parent too
            await rt.supervisor("workers", supervisor=sup)
        unnamed = [await rt.supervisor() for _ in range(2)]
        assert unnamed[0].name != unnamed[1].name


async def test_a_supervisor_an_actor_named_frees_its_name_when_the_actor_stops(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        namer = await rt.spawn(Namer)
        pool = await namer.ask(("supervisor", "pool"))
        assert isinstance(pool, Supervisor)
        error_type, is_value_error, text = await namer.ask(("supervisor", "pool"))
        assert (error_type, is_value_error) == ("SupervisorNameTakenError", True)
        assert "pick another name" in text
        with pytest.raises(SupervisorNameTakenError, match="pick another name"):
            await rt.supervisor("pool")
        await rt.stop(namer)  # its supervisors end with it
        again = await rt.supervisor("pool")
        assert again.name == "pool"
        assert again != pool


# -- spawn's name= and an __init__ that takes name -----------------------------------------


async def test_an_actor_whose_init_takes_name_is_told_that_name_belongs_to_spawn(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        with pytest.raises(InvalidSpawnError) as refused:
            await rt.spawn(Named, name="w1")
        text = str(refused.value)
        assert "missing a required argument: 'name'" in text
        assert "name= is spawn's own option (the actor's name for lookup and the logs)" in text
        assert "spawn(Named, ..., init_kwargs={'name': ...}), or positionally" in text


async def test_init_kwargs_give_init_its_name_while_spawns_name_names_the_actor(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        w1 = await rt.spawn(Named, name="w1", init_kwargs={"name": "alice"})
        assert await w1.ask("names") == ("alice", "w1")
        assert await rt.lookup("w1") == w1
        w2 = await rt.spawn(Named, "carol", name="w2")  # positionally works as well
        assert await w2.ask("names") == ("carol", "w2")
        namer = await rt.spawn(Namer)
        assert await namer.ask(("spawn-named", "w3", "bob")) == ("bob", "w3")
        assert await (await rt.lookup("w3")).ask("names") == ("bob", "w3")


async def test_init_kwargs_given_twice_or_not_as_a_dict_are_refused_saying_what_to_do(
    tmp_path: Path,
) -> None:
    async with Runtime(log_dir=tmp_path) as rt:
        with pytest.raises(InvalidSpawnError, match="'mood' both as a keyword .* pass each once"):
            await rt.spawn(Named, mood="glad", init_kwargs={"name": "a", "mood": "sad"})
        with pytest.raises(InvalidSpawnError, match="init_kwargs must be a dict .* such as"):
            await rt.spawn(Named, name="w1", init_kwargs=[("name", "a")])  # type: ignore[arg-type]
