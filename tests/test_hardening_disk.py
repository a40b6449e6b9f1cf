"""A full disk under the logs: lines are dropped, not messages, actors or the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import Runtime
from tests.helpers import Crashy

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
#: the tmpfs the logs go to: a few thousand traced messages fill it
SIZE = "1m"
MESSAGES = 20_000

# With the run's directory and logs on the small disk ($TMPDIR): one actor, then the disk
# filled, then another spawn.
SPAWN_ON_A_FULL_DISK = """
import json, os, sys

import anyio

from actors import ActorStartError
from runtime import Runtime
from tests.helpers import Recorder


async def main() -> None:
    out = {}
    async with Runtime() as rt:
        first = await rt.spawn(Recorder)
        pid = await first.ask("pid", timeout=30)
        with open(os.path.join(os.environ["TMPDIR"], "filler"), "wb") as filler:
            try:
                while True:
                    filler.write(bytes(1 << 16))
            except OSError:
                pass
        try:
            await rt.spawn(Recorder)
        except ActorStartError as exc:
            out["error"] = [exc.error_type, str(exc)]
        out["first_answers"] = await first.ask("pid", timeout=30) == pid
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    anyio.run(main)
"""


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A tmpfs of SIZE, unmounted afterwards. Its path is short: the run's sockets go
    there when it is $TMPDIR, and a socket's path has at most 107 bytes."""
    mount = Path(tempfile.mkdtemp(prefix="disk-", dir="/tmp"))
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        mount.rmdir()
        pytest.skip(f"no tmpfs can be mounted here ({made.stderr.strip()}): it takes root")
    try:
        yield mount
    finally:
        # lazily if a process of a failed run still holds a file there
        if subprocess.run(["umount", str(mount)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)
        mount.rmdir()


async def test_a_full_log_disk_drops_lines_once_said_and_every_message_is_handled(
    small_disk: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    logs = small_disk / "logs"
    async with Runtime(log_dir=logs, trace=True) as rt:
        counter = await rt.spawn(Crashy, name="counter")
        for _ in range(MESSAGES):
            await counter.tell("inc")
        assert await counter.ask("get", timeout=60) == MESSAGES
    assert rt.report.handled == {"counter": MESSAGES + 1}
    assert rt.report.restarts == {"counter": 0}
    warnings = [line for line in capfd.readouterr().err.splitlines() if "dropped" in line]
    assert len(warnings) == 1, warnings
    assert "No space left on device" in warnings[0]
    # what was written is whole lines: a write cut short was taken back
    for log in logs.glob("*.jsonl"):
        for line in log.read_bytes().splitlines():
            json.loads(line)


def test_a_spawn_on_a_full_disk_fails_saying_so_and_the_running_actors_run_on(
    small_disk: Path,
) -> None:
    script = small_disk / "spawn_on_a_full_disk.py"
    script.write_text(SPAWN_ON_A_FULL_DISK)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(small_disk), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    error_type, error = out["error"]
    assert error_type == "OSError"
    assert "No space left on device" in error
    assert out["first_answers"]
