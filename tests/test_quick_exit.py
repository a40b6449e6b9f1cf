"""A script that ran a runtime collects its garbage once at exit, then skips the rest."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.helpers import run_answering_script

_SCRIPT = """
    import atexit
    import gc
    import os

    # registered before the runtime's own handler, so it runs after it
    atexit.register(lambda: print("frozen", gc.get_freeze_count() > 0, flush=True))

    import anyio

    from actors import Actor
    from runtime import Runtime


    class Echo(Actor):
        async def receive(self, message: int) -> int:
            return message


    class InACycle:
        def __init__(self) -> None:
            self.me = self
            self.write = os.write  # still there while the interpreter tears down

        def __del__(self) -> None:
            self.write(1, b"finalized\\n")


    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(Echo)
            print("answer", await ref.ask(42), flush=True)


    anyio.run(main)
    gc.disable()
    InACycle()  # garbage now, left for the exit to collect
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("quick", [True, False], ids=["quick", "full"])
def test_garbage_left_at_exit_is_finalized_and_the_rest_of_the_heap_is_frozen(
    tmp_path: Path, quick: bool
) -> None:
    (tmp_path / "script.py").write_text(textwrap.dedent(_SCRIPT))
    env = {} if quick else {"ACTORS_QUICK_EXIT": "0"}
    result = run_answering_script(tmp_path, env_added=env)
    lines = result.stdout.splitlines()
    assert lines.count("finalized") == 1
    assert f"frozen {quick}" in lines
    if quick:
        # collected by the runtime's handler, before the later handlers ran
        assert lines.index("finalized") < lines.index("frozen True")
