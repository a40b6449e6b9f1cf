"""What only the Ray backend does: its options, large arrays through Ray's object store,
script classes by value, and colocation. The behaviour both backends share is tested by the
messaging, supervision, shutdown and fault tests, on each backend (the ``backend`` fixture).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from actors import Actor, InvalidConfigError, InvalidSpawnError
from runtime import Runtime, RuntimeConfig

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.anyio


class ArrayInfo(Actor):
    """Answers ("info", array) with its sum, shape and whether it can be written."""

    async def receive(self, message: Any) -> Any:
        _, array = message
        return float(array.sum()), array.shape, bool(array.flags.writeable)


@pytest.mark.parametrize(
    ("option", "value"),
    [("busy_poll", 0.0), ("uvloop", False), ("shm_threshold", None), ("shm_budget", 1 << 20)],
)
def test_options_that_mean_nothing_on_ray_are_refused_when_set(option: str, value: Any) -> None:
    with pytest.raises(InvalidConfigError, match=f"{option} apply only to the local backend"):
        RuntimeConfig.from_options(environ={}, backend="ray", **{option: value})


def test_a_local_only_variable_is_refused_on_ray_too() -> None:
    environ = {"ACTORS_BACKEND": "ray", "ACTORS_BUSY_POLL": "0.001"}
    with pytest.raises(InvalidConfigError, match="busy_poll"):
        RuntimeConfig.from_options(environ=environ)


def test_the_backend_and_the_cluster_address_come_from_the_environment() -> None:
    environ = {"ACTORS_BACKEND": "ray", "ACTORS_RAY_ADDRESS": "auto"}
    config = RuntimeConfig.from_options(environ=environ)
    assert (config.backend, config.address, config.busy_poll) == ("ray", "auto", 0.0)


def test_an_address_without_the_ray_backend_and_an_unknown_backend_are_refused() -> None:
    with pytest.raises(InvalidConfigError, match="needs backend='ray'"):
        RuntimeConfig.from_options(environ={}, address="auto")
    with pytest.raises(InvalidConfigError, match="backend must be one of 'local', 'ray'"):
        RuntimeConfig.from_options(environ={}, backend="dask")


async def test_a_large_array_travels_through_the_object_store_and_arrives_read_only(
    ray_address: str, tmp_path: Path
) -> None:
    async with Runtime(log_dir=tmp_path, backend="ray") as rt:
        info = await rt.spawn(ArrayInfo)
        big = np.ones((512, 1024), dtype=np.float64)  # 4 MiB: out of band
        assert await info.ask(("big", big), timeout=30) == (512 * 1024.0, (512, 1024), False)
        small = np.ones(10)  # in the pickle: the receiver's own copy
        assert await info.ask(("small", small), timeout=30) == (10.0, (10,), True)
        for _ in range(3):  # tells with large arrays keep their order with the rest
            await info.tell(("big", big))
        doubled = await info.ask(("big", big * 2), timeout=30)
        assert doubled == (2 * 512 * 1024.0, (512, 1024), False)


async def test_colocate_with_takes_a_shared_handle_on_either_backend(
    backend: str, tmp_path: Path
) -> None:
    async with Runtime(log_dir=tmp_path, backend=backend) as rt:
        total = await rt.shared_array((1,), dtype="int64")
        with pytest.raises(InvalidSpawnError, match="colocate_with must be a shared array"):
            await rt.spawn(ArrayInfo, colocate_with="node-1")  # type: ignore[arg-type]
        near = await rt.spawn(ArrayInfo, colocate_with=total)
        assert await near.ask(("x", np.zeros(3)), timeout=30) == (0.0, (3,), True)


def test_a_script_whose_actor_classes_live_in_the_script_runs_on_ray(
    ray_address: str, tmp_path: Path
) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        "import anyio\n"
        "from actors import Actor\n"
        "from runtime import Runtime\n"
        "class Greeter(Actor):\n"
        "    async def receive(self, message):\n"
        "        return f'hello {message}'\n"
        "async def main():\n"
        "    async with Runtime(backend='ray') as rt:\n"
        "        greeter = await rt.spawn(Greeter)\n"
        "        print(await greeter.ask('ray', timeout=30))\n"
        "anyio.run(main)\n"
    )
    env = {**os.environ, "ACTORS_RAY_ADDRESS": ray_address, "ACTORS_LOG_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "hello ray"
