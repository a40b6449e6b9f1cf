"""A fresh forkserver preloads the script's own modules and the standard library ones it uses.

The scripts here ask for one (``forkserver="fresh"``); ``test_forkserver_copy`` covers the
default, a forkserver that is a copy of the script.
"""

from __future__ import annotations

import ast
import subprocess
import textwrap
from pathlib import Path

import pytest

from runtime._main_import import _only_defines
from runtime.driver.process_host import script_modules
from tests import helpers
from tests.helpers import COUNTED_ACTORS, run_answering_script

ROOT = Path(__file__).resolve().parent.parent


def test_the_scripts_own_and_standard_modules_are_preloaded_third_party_ones_not() -> None:
    chosen = script_modules()
    assert helpers.__name__ in chosen  # where this suite's actor classes live
    assert "json" in chosen
    assert "anyio" not in chosen  # site-packages: might start threads when imported
    assert "numpy" not in chosen  # preloaded separately, when the script uses it
    assert not any("__main__" in name for name in chosen)


def test_our_own_modules_the_script_loaded_are_preloaded_but_not_our_tools() -> None:
    # a script's `from runtime import Runtime` runs again in each actor: it finds them
    # loaded; the tools bring pytest or rich, which the forkserver must not load
    from runtime import Runtime  # noqa: F401

    chosen = script_modules()
    assert {"actors", "runtime.driver.runtime", "runtime.wire.transport"} <= set(chosen)
    assert not any(name.startswith(("runtime.pytest_plugin", "runtime.trace")) for name in chosen)


@pytest.mark.timeout(120)
def test_a_module_that_builds_a_runtime_when_imported_does_not_break_the_forkserver(
    tmp_path: Path,
) -> None:
    # the script's module builds a Runtime at import: in the forkserver that import stops
    # there (as a script's does in an actor process), and actors still start
    _run_script(
        tmp_path,
        """
        from actors import Actor
        from runtime import Runtime

        class Doubler(Actor):
            async def receive(self, message):
                return 2 * message

        RUNTIME = Runtime(log_dir=None)
        """,
        """
        import anyio
        import side

        async def main():
            async with side.RUNTIME as rt:
                ref = await rt.spawn(side.Doubler)
                print("answer", await ref.ask(21, timeout=10))

        if __name__ == "__main__":
            anyio.run(main)
        """,
    )


@pytest.mark.timeout(120)
def test_the_forkserver_ends_at_once_yet_runs_exit_handlers_and_flushes_its_output(
    tmp_path: Path,
) -> None:
    # the forkserver skips finalizing its interpreter when the script ends (it held the
    # script's stdout open meanwhile); what it printed, block-buffered on a pipe, and the
    # exit handlers of the modules it preloaded must survive that
    result = _run_script(
        tmp_path,
        """
        import atexit
        import os

        from actors import Actor

        print("imported by", os.getpid())
        atexit.register(lambda: print("exit handler of", os.getpid()))

        class Echo(Actor):
            async def receive(self, message):
                return message
        """,
        """
        import anyio
        import side
        from runtime import Runtime

        async def main():
            async with Runtime(log_dir=None) as rt:
                ref = await rt.spawn(side.Echo)
                print("answer", await ref.ask(42, timeout=10))

        if __name__ == "__main__":
            anyio.run(main)
        """,
    )
    lines = result.stdout.splitlines()
    importers = {line.split()[-1] for line in lines if line.startswith("imported by")}
    handled = {line.split()[-1] for line in lines if line.startswith("exit handler of")}
    assert len(importers) == 2  # the script, and the forkserver that preloaded side.py
    assert handled == importers


@pytest.mark.timeout(120)
def test_a_script_that_only_defines_runs_once_in_the_forkserver_not_in_each_actor(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "runs.txt"
    guarded = COUNTED_ACTORS + '\n    if __name__ == "__main__":\n        anyio.run(main)\n'
    _run_script(tmp_path, "", guarded, str(marker))
    # the script itself, then the forkserver once; none of the three actor processes
    assert len(marker.read_text().split()) == 2


@pytest.mark.timeout(120)
def test_a_script_whose_top_level_does_work_runs_again_in_each_actor(tmp_path: Path) -> None:
    # no guard: its top level runs the job, so only each actor process may run it again
    # (up to Runtime()), never the forkserver
    marker = tmp_path / "runs.txt"
    _run_script(tmp_path, "", COUNTED_ACTORS + "\n    anyio.run(main)\n", str(marker))
    assert len(marker.read_text().split()) == 1 + 3


@pytest.mark.timeout(120)
def test_a_defining_script_that_fails_in_the_forkserver_runs_again_in_each_actor(
    tmp_path: Path,
) -> None:
    # after its marker line, its top level divides by zero in the forkserver only (the
    # preload is loaded there, and multiprocessing is not loading a child's __main__):
    # that run is rolled back, and each actor process runs the script as before
    marker = tmp_path / "runs.txt"
    failing = COUNTED_ACTORS.replace(
        "    class Echo",
        "    import multiprocessing\n"
        "    _X = 1 // (\n"
        '        getattr(multiprocessing.current_process(), "_inheriting", False)\n'
        '        or "runtime.actor.preload" not in sys.modules\n'
        "    )\n\n"
        "    class Echo",
    )
    guarded = failing + '\n    if __name__ == "__main__":\n        anyio.run(main)\n'
    _run_script(tmp_path, "", guarded, str(marker))
    # the script, the forkserver's attempt, and the three actor processes
    assert len(marker.read_text().split()) == 1 + 1 + 3


@pytest.mark.parametrize(
    ("source", "only_defines"),
    [
        ("import os\nclass A:\n    pass\nif __name__ == '__main__':\n    main()", True),
        ('"doc"\nX: int = len("abc")\n@dataclass\nclass B:\n    y: int = 0', True),
        ("try:\n    import os\nexcept ImportError:\n    os = None", True),
        ("import sys\nif sys.version_info >= (3, 12):\n    X = 1\nelse:\n    X = 2", True),
        ("anyio.run(main)", False),
        ("import a_module_nobody_has_loaded", False),
        ("from os import a_submodule_nobody_has_loaded", False),
        ("for i in range(3):\n    pass", False),
        ("if check():\n    X = 1", False),
        ("if __name__ == '__main__':\n    main()\nelse:\n    print('imported')", False),
    ],
)
def test_only_a_top_level_that_imports_loaded_modules_and_defines_runs_in_the_forkserver(
    source: str, only_defines: bool
) -> None:
    assert _only_defines(ast.parse(source).body) is only_defines


def _run_script(
    tmp_path: Path, side: str, script: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (as script.py, beside ``side`` as side.py) with a fresh forkserver;
    it must print "answer 42".

    Its stdout is block-buffered, as on any pipe when Python runs without ``-u``.
    """
    (tmp_path / "side.py").write_text(textwrap.dedent(side))
    (tmp_path / "script.py").write_text(textwrap.dedent(script))
    return run_answering_script(tmp_path, *args, forkserver="fresh")
