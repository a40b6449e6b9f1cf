"""By default the forkserver is a copy of the script's process, made when the runtime starts.

Each script here runs in its own process, as a user's would: the copy is made from the
script, not from this test process.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import COUNTED_ACTORS, read_events, run_answering_script


def _run(
    tmp_path: Path, script: str, *args: str, forkserver: str = "auto"
) -> tuple[str, dict[str, Any]]:
    """Run ``script``; return its stdout and its ``runtime.forkserver`` event."""
    (tmp_path / "script.py").write_text(textwrap.dedent(script))
    result = run_answering_script(tmp_path, *args, forkserver=forkserver)
    runs = [path for path in (tmp_path / "logs").iterdir() if path.name != "latest"]
    assert len(runs) == 1
    [event] = [e for e in read_events(runs[0]) if e["event"] == "runtime.forkserver"]
    return result.stdout, event


@pytest.mark.timeout(120)
@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "unguarded"])
def test_a_scripts_top_level_runs_once_in_all_when_the_forkserver_is_its_copy(
    tmp_path: Path, guarded: bool
) -> None:
    # actors start as the script was when the runtime started: with or without a
    # __main__ guard, neither the forkserver nor the actors run it again
    tail = (
        '\nif __name__ == "__main__":\n    anyio.run(main)\n' if guarded else "\nanyio.run(main)\n"
    )
    marker = tmp_path / "runs.txt"
    _, event = _run(tmp_path, textwrap.dedent(COUNTED_ACTORS) + tail, str(marker))
    assert marker.read_text().split() == [marker.read_text().split()[0]]
    assert event["copy_of_script"] is True
    assert event["why_not_made_here"] is None


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["stdin", "-c"])
def test_a_script_with_no_file_can_define_its_actors(tmp_path: Path, how: str) -> None:
    # python - < script, or python -c "...": actors inherit its __main__, with no file to
    # load it from again
    script = textwrap.dedent(COUNTED_ACTORS).replace("_RUN = ", "# ") + (
        '\nif __name__ == "__main__":\n    anyio.run(main)\n'
    )
    if how == "stdin":
        result = run_answering_script(tmp_path, "-", stdin=script)
    else:
        result = run_answering_script(tmp_path, "-c", script)
    assert "answer 42 3" in result.stdout


@pytest.mark.timeout(120)
def test_the_copy_holds_none_of_the_scripts_descriptors(tmp_path: Path) -> None:
    # a pipe the script opened before the runtime: once the script closes its write end,
    # its read end sees the end at once, so no copy of the write end lives on elsewhere
    script = """
        import os, select
        import anyio
        from actors import Actor
        from runtime import Runtime

        class Echo(Actor):
            async def receive(self, message):
                return message

        async def main():
            r, w = os.pipe()
            async with Runtime() as rt:
                ref = await rt.spawn(Echo)
                os.close(w)
                ready, _, _ = select.select([r], [], [], 20)
                print("at end", bool(ready) and os.read(r, 1) == b"")
                print("answer", await ref.ask(42, timeout=10))

        if __name__ == "__main__":
            anyio.run(main)
    """
    out, event = _run(tmp_path, script)
    assert event["copy_of_script"] is True
    assert "at end True" in out


@pytest.mark.timeout(120)
def test_the_scripts_unflushed_output_and_exit_handlers_come_out_once(tmp_path: Path) -> None:
    # printed before the copy was made, still in the script's buffer: the copy must not
    # write it again; and only the script runs its exit handlers
    script = """
        import atexit, os
        import anyio
        from actors import Actor
        from runtime import Runtime

        class Echo(Actor):
            async def receive(self, message):
                print("printed by the actor")
                return message

        async def main():
            print("printed before the runtime")
            atexit.register(lambda: print("exit handler of", os.getpid()))
            async with Runtime() as rt:
                ref = await rt.spawn(Echo)
                print("answer", await ref.ask(42, timeout=10))

        if __name__ == "__main__":
            anyio.run(main)
    """
    out, event = _run(tmp_path, script)
    assert event["copy_of_script"] is True
    lines = out.splitlines()
    assert lines.count("printed before the runtime") == 1
    assert [line for line in lines if line.startswith("exit handler of")] == [
        f"exit handler of {event['pid']}"
    ]


@pytest.mark.timeout(120)
def test_actors_do_not_inherit_the_forkserver_lock_held(tmp_path: Path) -> None:
    # the copy was made while the script held multiprocessing's forkserver lock: an actor
    # that started a forkserver of its own (multiprocessing.forkserver.ensure_running)
    # would hang on it
    script = """
        import multiprocessing.forkserver
        import anyio
        from actors import Actor
        from runtime import Runtime

        class Starter(Actor):
            async def receive(self, message):
                lock = multiprocessing.forkserver._forkserver._lock
                if not lock.acquire(timeout=10):
                    return "held"
                lock.release()
                return message

        async def main():
            async with Runtime() as rt:
                ref = await rt.spawn(Starter)
                print("answer", await ref.ask(42, timeout=60))

        if __name__ == "__main__":
            anyio.run(main)
    """
    _, event = _run(tmp_path, script)
    assert event["copy_of_script"] is True


@pytest.mark.timeout(120)
def test_a_script_using_numpy_gets_a_copy_and_its_actors_use_blas(tmp_path: Path) -> None:
    # numpy's OpenBLAS runs worker threads of its own; it stops them around a fork, so the
    # script is still copied, and an actor's matrix product (the pool started anew) works
    script = """
        import numpy as np
        import anyio
        from actors import Actor
        from runtime import Runtime

        A = np.arange(360_000, dtype=np.float64).reshape(600, 600) % 7

        class Product(Actor):
            async def receive(self, message):
                return float((A @ A).sum())

        async def main():
            expected = float((A @ A).sum())  # the pool has run in the script
            async with Runtime() as rt:
                ref = await rt.spawn(Product)
                got = await ref.ask(0, timeout=60)
                print("answer", 42 if got == expected else got)

        if __name__ == "__main__":
            anyio.run(main)
    """
    _, event = _run(tmp_path, script)
    assert event["copy_of_script"] is True, event


@pytest.mark.timeout(120)
def test_a_script_running_another_thread_gets_a_fresh_forkserver(tmp_path: Path) -> None:
    # forking it would copy locks the other thread may hold: the runtime does not, and says
    # why in the log
    script = """
        import threading
        import anyio
        from actors import Actor
        from runtime import Runtime

        class Echo(Actor):
            async def receive(self, message):
                return message

        async def main():
            done = threading.Event()
            threading.Thread(target=done.wait, daemon=True).start()
            async with Runtime() as rt:
                ref = await rt.spawn(Echo)
                print("answer", await ref.ask(42, timeout=10))
            done.set()

        if __name__ == "__main__":
            anyio.run(main)
    """
    _, event = _run(tmp_path, script)
    assert event["copy_of_script"] is False
    assert event["why_not_made_here"] == "2 threads"


@pytest.mark.timeout(120)
def test_forkserver_fresh_asks_for_a_fresh_interpreter(tmp_path: Path) -> None:
    marker = tmp_path / "runs.txt"
    script = textwrap.dedent(COUNTED_ACTORS) + '\nif __name__ == "__main__":\n    anyio.run(main)\n'
    _, event = _run(tmp_path, script, str(marker), forkserver="fresh")
    assert event["copy_of_script"] is False
    assert event["why_not_made_here"] == "asked for"
    # the script, then the fresh forkserver, which runs a top level that only defines
    assert len(marker.read_text().split()) == 2


@pytest.mark.timeout(120)
def test_a_later_runtime_that_asks_for_a_fresh_forkserver_gets_one(tmp_path: Path) -> None:
    # the first runtime made a copy; the second, in the same script, asks for "fresh"
    script = """
        import anyio
        from actors import Actor
        from runtime import Runtime

        class Echo(Actor):
            async def receive(self, message):
                return message

        async def main():
            for mode in ("auto", "fresh"):
                async with Runtime(forkserver=mode) as rt:
                    ref = await rt.spawn(Echo)
                    print("answer", await ref.ask(42, timeout=10))

        if __name__ == "__main__":
            anyio.run(main)
    """
    (tmp_path / "script.py").write_text(textwrap.dedent(script))
    run_answering_script(tmp_path)
    runs = [path for path in (tmp_path / "logs").iterdir() if path.name != "latest"]
    events = sorted(
        (e for run in runs for e in read_events(run) if e["event"] == "runtime.forkserver"),
        key=lambda e: str(e["timestamp"]),
    )
    assert [e["copy_of_script"] for e in events] == [True, False]
    assert events[1]["why_not_made_here"] == "asked for"


@pytest.mark.timeout(120)
def test_the_resource_tracker_copy_removes_what_a_killed_actor_left(tmp_path: Path) -> None:
    # multiprocessing's resource tracker is a copy of the script too: shared memory that
    # an actor registered and never released is removed once the script has ended
    name = f"actors_test_tracker_{os.getpid()}"
    script = f"""
        import os, signal
        from multiprocessing import shared_memory
        import anyio
        from actors import Actor
        from runtime import Runtime

        class Leaker(Actor):
            async def receive(self, message):
                self.segment = shared_memory.SharedMemory(create=True, size=4096, name={name!r})
                return os.getpid()

        async def main():
            async with Runtime() as rt:
                ref = await rt.spawn(Leaker)
                pid = await ref.ask(0, timeout=10)
                print("made", os.path.exists("/dev/shm/{name}"))
                os.kill(pid, signal.SIGKILL)
                print("answer", 42)

        if __name__ == "__main__":
            anyio.run(main)
    """
    (tmp_path / "script.py").write_text(textwrap.dedent(script))
    result = run_answering_script(tmp_path)
    assert "made True" in result.stdout
    assert "leaked shared_memory" in result.stderr
    assert not Path(f"/dev/shm/{name}").exists()


def test_the_forkserver_option_is_checked() -> None:
    from actors import InvalidConfigError
    from runtime._config import RuntimeConfig

    assert RuntimeConfig.from_options({"ACTORS_FORKSERVER": "Fresh"}).forkserver == "fresh"
    with pytest.raises(InvalidConfigError, match="forkserver must be one of 'auto', 'fresh'"):
        RuntimeConfig.from_options(forkserver="copy")
    with pytest.raises(InvalidConfigError, match="forkserver apply only to the local backend"):
        RuntimeConfig.from_options({"ACTORS_FORKSERVER": "fresh"}, backend="ray")
    assert RuntimeConfig().forkserver == "auto"
