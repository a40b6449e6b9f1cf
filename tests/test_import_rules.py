"""Which parts of the code may import which, checked on the source and in a fresh process.

``actors`` is the user-facing package and never imports ``runtime``. Inside ``runtime``,
``driver`` runs in the script's process and ``actor`` inside actor processes: neither
imports the other, and the modules both sides use import neither.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from runtime._entry import PRELOAD_ENV, PRELOAD_MAIN_ENV

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "runtime"

#: modules used on both sides. runtime/_entry.py is deliberately not among them: it is the
#: named entry point an actor process starts in, so it is the one shared module allowed to
#: import runtime.actor.
SHARED = [
    RUNTIME / "wire",
    RUNTIME / "shm",
    RUNTIME / "observe",
    RUNTIME / "_api.py",
    RUNTIME / "_config.py",
    RUNTIME / "_lean.py",
    RUNTIME / "_main_import.py",
    RUNTIME / "_process_name.py",
    RUNTIME / "_stdio.py",
]


def _sources(*roots: Path) -> list[Path]:
    """The .py files at or under ``roots``; each root must exist, so no check runs empty."""
    files: list[Path] = []
    for root in roots:
        assert root.exists(), f"{root.relative_to(ROOT)} is gone: update this test"
        files.extend([root] if root.is_file() else sorted(root.rglob("*.py")))
    return files


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(path: Path) -> Iterator[tuple[int, str]]:
    """Every module name ``path`` imports, anywhere in it, with its line.

    ``from a import b`` yields ``a`` and ``a.b``: ``b`` may be a submodule.
    """
    module = _module_of(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                assert node.level - 1 < len(anchor), f"{path}:{node.lineno}: relative import"
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _violations(files: Iterable[Path], forbidden: Iterable[str]) -> list[str]:
    banned = tuple(forbidden)
    found: dict[tuple[Path, int], str] = {}  # one line per import statement
    for path in files:
        for line, name in _imported(path):
            if any(name == ban or name.startswith(ban + ".") for ban in banned):
                found.setdefault((path, line), name)
    return [
        f"{path.relative_to(ROOT)}:{line} imports {name}" for (path, line), name in found.items()
    ]


def test_actors_never_imports_runtime() -> None:
    bad = _violations(_sources(ROOT / "actors"), ["runtime"])
    assert not bad, "actors/ must not import runtime:\n" + "\n".join(bad)


def test_driver_and_actor_sides_never_import_each_other() -> None:
    bad = _violations(_sources(RUNTIME / "driver"), ["runtime.actor"])
    bad += _violations(_sources(RUNTIME / "actor"), ["runtime.driver"])
    assert not bad, "runtime.driver and runtime.actor import each other:\n" + "\n".join(bad)


def test_shared_modules_import_neither_side() -> None:
    bad = _violations(_sources(*SHARED), ["runtime.driver", "runtime.actor"])
    assert not bad, "a module used by both sides imports one side:\n" + "\n".join(bad)


def test_importing_actors_loads_no_runtime_module() -> None:
    code = (
        "import sys, actors\n"
        "print(*sorted(m for m in sys.modules if m == 'runtime' or m.startswith('runtime.')))"
    )
    loaded = _run_python(code).split()
    assert not loaded, f"import actors loaded runtime modules: {loaded}"


def _loaded_by(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    return set(_run_python(f"{code}\nimport sys\nprint(*sorted(sys.modules))").split())


def _run_python(code: str, script: Path | None = None, **variables: str) -> str:
    """What a fresh interpreter prints running ``code`` from the project's root, with
    ``python -c``, or as a script written to ``script``; it must succeed.

    Without what a runtime of this test process handed its forkserver (``PRELOAD_ENV``,
    ``PRELOAD_MAIN_ENV``): the preload would import those modules, this suite's numpy
    among them, and try to run this process's ``__main__``.
    """
    env = {k: v for k, v in os.environ.items() if k not in (PRELOAD_ENV, PRELOAD_MAIN_ENV)}
    env |= variables
    if script is not None:
        script.write_text(code)
    done = subprocess.run(
        [sys.executable, *(["-c", code] if script is None else [str(script)])],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_script_pays_for_neither_numpy_nor_rich_until_it_uses_them() -> None:
    # what every script and the forkserver import is the runtime's fixed cost: numpy comes
    # with the first shared array, rich never (structlog is imported without it)
    loaded = _loaded_by("from runtime import Runtime\nimport actors")
    assert not {"numpy", "rich", "ray", "multiprocessing.managers", "secrets"} & loaded
    forkserver = _loaded_by("import runtime.actor.preload")
    assert not {"numpy", "rich", "ray"} & forkserver
    assert not any(m.startswith("runtime.driver") for m in forkserver)  # the actor side only


@pytest.mark.timeout(60)
@pytest.mark.parametrize("before", ["", "gc.disable()"], ids=["collecting", "collector-off"])
def test_importing_the_runtime_leaves_the_collector_on_or_off_as_it_found_it(
    before: str,
) -> None:
    # the import pauses the collector, and moves what it made to the oldest generation
    done = _run_python(
        f"import gc\n{before}\nwas = gc.isenabled()\nfrom runtime import Runtime\n"
        "print(gc.isenabled() == was)"
    )
    assert done == "True"


@pytest.mark.timeout(60)
def test_importing_the_runtime_leaves_what_the_script_froze_frozen() -> None:
    done = _run_python(
        "import gc\nmarker = [[]]\ngc.freeze()\nfrom runtime import Runtime\n"
        "print(all(o is not marker for o in gc.get_objects()))"
    )
    assert done == "True"


@pytest.mark.timeout(60)
def test_a_script_that_imports_the_runtime_at_its_top_freezes_the_heap_it_has_then(
    tmp_path: Path,
) -> None:
    # the garbage made before is finalized first, not frozen with the rest
    code = (
        "import gc\n"
        "class Noisy:\n"
        "    def __del__(self):\n"
        "        print('finalized', gc.get_freeze_count() == 0)\n"
        "cycle = Noisy()\ncycle.me = cycle\ndel cycle\n"
        "from runtime import Runtime\n"
        "print('frozen', gc.get_freeze_count() > 0)\n"
    )
    done = _run_python(code, tmp_path / "script.py")
    assert done.splitlines() == ["finalized True", "frozen True"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("code", "as_file", "variables"),
    [
        ("def load():\n    from runtime import Runtime\nload()\n", True, {}),
        ("from runtime import Runtime\n", False, {}),
        ("from runtime import Runtime\n", True, {"ACTORS_QUICK_EXIT": "0"}),
        # the script keeps its garbage for a collection of its own
        ("import gc\ngc.disable()\nfrom runtime import Runtime\n", True, {}),
    ],
    ids=["from-a-function", "python-c", "quick-exit-off", "collector-off"],
)
def test_a_runtime_imported_elsewhere_than_a_scripts_top_freezes_nothing(
    code: str, as_file: bool, variables: dict[str, str], tmp_path: Path
) -> None:
    # the script's older objects may still become garbage there: they stay collectable
    script = tmp_path / "script.py" if as_file else None
    done = _run_python(code + "import gc\nprint(gc.get_freeze_count())", script, **variables)
    assert done == "0"


@pytest.mark.timeout(60)
def test_multiprocessing_managers_imports_as_usual_after_the_runtime_left_it_out() -> None:
    # aiomultiprocess is loaded with a stand-in for it, gone once the import is done
    done = _run_python(
        "import sys, multiprocessing\nfrom runtime import Runtime\n"
        "print('multiprocessing.managers' in sys.modules, hasattr(multiprocessing, 'managers'))\n"
        "import multiprocessing.managers\n"
        "print(multiprocessing.managers.SyncManager.__qualname__,"
        " hasattr(multiprocessing.managers.SyncManager, 'register'))"
    )
    assert done.splitlines() == ["False False", "SyncManager True"]


@pytest.mark.timeout(60)
def test_with_another_thread_running_the_runtime_hides_no_module_while_it_loads() -> None:
    # that thread could import one meanwhile: it must get the real module, not a stand-in
    # (multiprocessing.managers) nor an ImportError (rich)
    done = _run_python(
        "import sys, threading\nstop = threading.Event()\n"
        "waiter = threading.Thread(target=stop.wait)\nwaiter.start()\n"
        "from runtime import Runtime\nstop.set()\nwaiter.join()\n"
        "managers = sys.modules.get('multiprocessing.managers')\n"
        "print(managers is not None and hasattr(managers.SyncManager, 'register'),"
        " 'rich' in sys.modules)"
    )
    assert done == "True True"
