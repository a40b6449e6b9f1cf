"""The methods dataclasses and records compile are kept for the next process, unchanged."""

from __future__ import annotations

import dataclasses
import marshal
import os
import subprocess
import sys
from pathlib import Path

import pytest

from actors import _compiled
from actors._compiled import compiled, compiled_methods

ROOT = Path(__file__).resolve().parent.parent


def _point_class() -> type:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Point:
        x: int
        y: int = 0
        tags: tuple[str, ...] = dataclasses.field(default_factory=tuple)

    return Point


@pytest.mark.timeout(10)
def test_a_dataclass_made_within_the_block_has_the_code_compile_makes() -> None:
    plain = _point_class()
    with compiled_methods():
        kept = _point_class()
    for method in ("__init__", "__repr__", "__eq__", "__hash__", "__setattr__"):
        a, b = getattr(plain, method).__code__, getattr(kept, method).__code__
        assert (a.co_code, a.co_consts, a.co_names, a.co_varnames, a.co_filename) == (
            b.co_code,
            b.co_consts,
            b.co_names,
            b.co_varnames,
            b.co_filename,
        ), method
    point = kept(1, tags=("a",))
    assert point == kept(1, 0, ("a",))
    assert hash(point) == hash(kept(1, 0, ("a",)))
    assert repr(point).endswith("Point(x=1, y=0, tags=('a',))")
    assert kept(2).tags == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 2  # type: ignore[attr-defined]


@pytest.mark.timeout(10)
def test_dataclasses_compile_as_before_once_the_block_ends_even_by_an_error() -> None:
    def fail_within() -> None:
        with compiled_methods():
            assert "exec" in vars(dataclasses)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_within()
    assert "exec" not in vars(dataclasses)


@pytest.mark.timeout(10)
def test_the_same_source_gives_the_same_code_object() -> None:
    source = "def f(a, b=1):\n    return a + b\n"
    assert compiled(source) is compiled(source)
    scope: dict[str, object] = {}
    exec(compiled(source), scope)
    assert scope["f"](1) == 2  # type: ignore[operator]


def _run(code: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


_REPORT = (
    "import actors; from actors import _compiled as c; "
    "print(c._path(), c._added, len(c._used), sep='\\n')"
)


@pytest.mark.timeout(120)
def test_a_later_process_loads_the_methods_instead_of_compiling_them(tmp_path: Path) -> None:
    env = {"PYTHONPYCACHEPREFIX": str(tmp_path), "PYTHONDONTWRITEBYTECODE": ""}
    path, _, used = _run(_REPORT, env).splitlines()
    assert Path(path).is_relative_to(tmp_path)
    assert Path(path).is_file()
    assert int(used) > 0
    assert Path(path).stat().st_mode & 0o777 == 0o644
    # the next process finds every method it needs: it compiles none, and writes nothing
    mtime = Path(path).stat().st_mtime_ns
    assert _run(_REPORT, env).splitlines() == [path, "False", used]
    assert Path(path).stat().st_mtime_ns == mtime


@pytest.mark.timeout(120)
def test_nothing_is_written_when_python_writes_no_bytecode(tmp_path: Path) -> None:
    env = {"PYTHONPYCACHEPREFIX": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    path, added, _ = _run(_REPORT, env).splitlines()
    assert added == "True"
    assert not Path(path).exists()
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


@pytest.mark.timeout(10)
def test_a_file_others_may_write_or_a_damaged_one_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "kept.methods"
    monkeypatch.setattr(_compiled, "_path", lambda: str(path))
    source = "x = 1\n"
    good = _compiled._HEADER + marshal.dumps({source: compile("x = 2\n", "<string>", "exec")})
    path.write_bytes(good)
    path.chmod(0o644)
    assert list(_compiled._load()) == [source]  # the check below fails for its reason only
    path.chmod(0o664)  # the group may write it: it may hold anybody's code
    assert _compiled._load() == {}
    path.chmod(0o644)
    for damaged in (good[:-7], b"junk", good.replace(b"actors-compiled-1", b"actors-compiled-0")):
        path.write_bytes(damaged)
        assert _compiled._load() == {}
    path.unlink()
    assert _compiled._load() == {}
