"""The log viewer behaves like a command-line tool: exit codes and messages, no tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "tests/data/trace_run"


def _viewer(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "runtime.trace", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_output_cut_short_by_its_reader_ends_quietly_as_sigpipe_would(tmp_path: Path) -> None:
    # far more output than a pipe holds, so the viewer is still writing when its reader goes
    for log in RUN.glob("*.jsonl"):
        lines = log.read_bytes().splitlines(keepends=True)
        (tmp_path / log.name).write_bytes(b"".join(lines * 50))
    viewer = _viewer(str(tmp_path), "--merged")
    assert viewer.stdout is not None
    assert viewer.stdout.readline().startswith(b"{")  # as `| head -1` reads it
    viewer.stdout.close()
    _, err = viewer.communicate(timeout=60)
    assert viewer.returncode == 141
    assert b"Traceback" not in err
    assert err == b""


def test_an_unknown_trace_id_is_an_error_that_says_what_a_trace_id_is() -> None:
    viewer = _viewer(str(RUN), "--trace", "nope")
    out, err = viewer.communicate(timeout=60)
    assert viewer.returncode == 2
    assert out == b""
    assert b"no trace 'nope'" in err
    assert b"trace_id" in err


def test_a_missing_run_directory_is_an_error() -> None:
    viewer = _viewer(str(RUN / "missing"))
    _, err = viewer.communicate(timeout=60)
    assert viewer.returncode == 2
    assert b"Traceback" not in err
