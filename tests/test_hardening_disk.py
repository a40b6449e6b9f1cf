"""A full disk under the logs: lines are dropped, not messages, actors or the run."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import Runtime
from tests.helpers import Crashy

pytestmark = pytest.mark.anyio

#: the tmpfs the logs go to: a few thousand traced messages fill it
SIZE = "1m"
MESSAGES = 20_000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of SIZE, unmounted afterwards."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:8]}"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"no tmpfs can be mounted here ({made.stderr.strip()}): it takes root")
    try:
        yield mount
    finally:
        # lazily if a process of a failed run still holds a file there
        if subprocess.run(["umount", str(mount)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


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
