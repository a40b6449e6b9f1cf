"""Every ```python block of README.md and docs/**/*.md runs, as documented.

Each block is a whole program, run as a script in a subprocess (the repository's root as
working directory and on ``PYTHONPATH``). An HTML comment on the line just before a
block's opening fence says otherwise:

- ``<!-- continue -->``: the block goes on from the page's previous python block; the
  blocks run together as one program, named after the first.
- ``<!-- file: NAME -->``: the block is a file of the page's example project, written as
  ``NAME`` into a directory of its own, which is on ``PYTHONPATH`` for the page's
  programs; it does not run by itself. When the page has files named ``test_*.py``,
  pytest runs that project once.
- ``<!-- no-run: REASON -->``: not run, for the reason given (keep these rare).
- ``<!-- output -->`` before a ```text block right after a program: what the program
  prints, compared line by line (trailing spaces aside).

Shell blocks (```sh) are never run. Fences must start at the beginning of a line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: each example is a short script: this is a hang guard, well under the suite's timeout
TIMEOUT = 60

FENCE = re.compile(r"^```([\w-]*)\s*$")
DIRECTIVE = re.compile(r"^<!--\s*(continue|output|file:\s*\S+|no-run:.*?)\s*-->\s*$")


@dataclass
class Block:
    """One fenced block of a page, with the directive on the line before it, if any."""

    page: str
    line: int
    lang: str
    code: str
    directive: str | None


@dataclass
class Example:
    """A program to run (or a skipped one), or a page's example project to test."""

    page: str
    line: int
    code: str = ""
    output: str | None = None
    skip: str | None = None
    #: the page's example project: file name -> text
    files: dict[str, str] = field(default_factory=dict)
    pytest: bool = False

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}" + (" (pytest)" if self.pytest else "")


def _expect(condition: bool, where: str, problem: str) -> None:
    """A page breaks the conventions above: say where, at collection."""
    if not condition:
        raise AssertionError(f"{where}: {problem}")


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix() if page.is_relative_to(ROOT) else page.name


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, in order."""
    name = _name(page)
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        if end == len(lines):
            raise AssertionError(f"{name}:{i + 1}: a fence that is never closed")
        before = lines[i - 1].strip() if i > 0 else ""
        directive = DIRECTIVE.match(before)
        code = "\n".join(lines[i + 1 : end]) + "\n"
        found.append(Block(name, i + 1, opening.group(1), code, directive and directive.group(1)))
        i = end + 1
    return found


def examples(page: Path) -> list[Example]:
    """What a page asks to run, following the directives of its blocks."""
    found: list[Example] = []
    files: dict[str, str] = {}
    first_test_file: int | None = None
    last: Example | None = None
    for block in blocks(page):
        where = f"{block.page}:{block.line}"
        if block.lang != "python":
            if block.directive == "output":
                _expect(last is not None and not last.skip, where, "an output of no program")
                assert last is not None
                _expect(last.output is None, where, "a second output for one program")
                last.output = block.code
            else:
                _expect(block.directive is None, where, "a directive on a non-python block")
            continue
        directive = block.directive or ""
        _expect(directive != "output", where, "an output block must be ```text")
        if directive.startswith("file:"):
            name = directive.split(":", 1)[1].strip()
            _expect(name not in files, where, f"a second file {name}")
            files[name] = block.code
            if name.startswith("test_") and first_test_file is None:
                first_test_file = block.line
            continue
        if directive == "continue":
            _expect(last is not None and not last.skip, where, "continues no program")
            assert last is not None
            _expect(last.output is None, where, "continues a program whose output was given")
            last.code += block.code
            continue
        skip = None
        if directive.startswith("no-run:"):
            skip = directive.split(":", 1)[1].strip()
            _expect(bool(skip), where, "no-run needs a reason")
        last = Example(block.page, block.line, block.code, skip=skip)
        found.append(last)
    for example in found:
        example.files = files
    if first_test_file is not None:
        found.append(Example(_name(page), first_test_file, files=files, pytest=True))
    return found


ALL = [example for page in PAGES for example in examples(page)]


def _env(project: Path, logs: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTORS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(project), str(ROOT)])
    env["ACTORS_LOG_DIR"] = str(logs)  # the examples' logs stay in the test's directory
    env.pop("COLUMNS", None)
    return env


@pytest.mark.parametrize("example", ALL, ids=[e.id for e in ALL])
def test_every_python_block_of_the_guides_runs_as_documented(
    example: Example, tmp_path: Path
) -> None:
    if example.skip:
        pytest.skip(f"{example.id}: {example.skip}")
    project = tmp_path / "project"
    project.mkdir()
    for name, text in example.files.items():
        (project / name).write_text(text)
    if example.pytest:
        (project / "pytest.ini").write_text("[pytest]\n")  # the project's own root and config
        basetemp = tmp_path / "basetemp"  # not the suite's own
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        command += [f"--basetemp={basetemp}"]
        cwd = project
    else:
        script = tmp_path / "example.py"
        script.write_text(example.code)
        command = [sys.executable, str(script)]
        cwd = ROOT
    result = subprocess.run(
        command,
        cwd=cwd,
        env=_env(project, tmp_path / "logs"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, (
        f"{example.id} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    if example.output is not None:
        printed = [line.rstrip() for line in result.stdout.rstrip().splitlines()]
        stated = [line.rstrip() for line in example.output.rstrip().splitlines()]
        assert printed == stated, f"{example.id} printed other than the page says"


def test_the_pages_have_examples_and_each_skip_says_why() -> None:
    assert len([e for e in ALL if not e.skip]) >= 10
    assert all(e.skip.strip() for e in ALL if e.skip is not None)


def test_the_comments_before_blocks_join_skip_write_and_check_them(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "\n".join(
            [
                "<!-- file: helper.py -->",
                "```python",
                "X = 1",
                "```",
                "```python",
                "a = 1",
                "```",
                "<!-- continue -->",
                "```python",
                "print(a)",
                "```",
                "<!-- output -->",
                "```text",
                "1",
                "```",
                "```sh",
                "make test",
                "```",
                "<!-- no-run: it needs a network -->",
                "```python",
                "import socket",
                "```",
                "",
            ]
        )
    )
    first, skipped = examples(page)
    assert (first.line, first.code, first.output) == (5, "a = 1\nprint(a)\n", "1\n")
    assert first.files == {"helper.py": "X = 1\n"}
    assert (skipped.line, skipped.skip) == (20, "it needs a network")
    page.write_text("<!-- output -->\n```text\n1\n```\n")
    with pytest.raises(AssertionError, match=r"^page.md:2: an output of no program$"):
        examples(page)


def test_no_python_block_hides_from_the_examples_by_indentation() -> None:
    hidden = [
        f"{page.relative_to(ROOT)}:{n}"
        for page in PAGES
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if re.match(r"^\s+```python", line)
    ]
    assert not hidden, f"indented python fences are not run: {hidden}"


def _slug(heading: str) -> str:
    # the ids MkDocs (Python-Markdown's toc) gives headings
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def test_every_link_of_the_readme_into_the_docs_finds_its_page_and_heading() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\((docs/[^)\s]+)\)", readme):
        path, _, anchor = target.partition("#")
        page = ROOT / path
        if not page.is_file():
            broken.append(target)
            continue
        if anchor:
            headings = re.findall(r"^#+\s+(.*?)\s*$", page.read_text(encoding="utf-8"), re.M)
            if anchor not in {_slug(h) for h in headings}:
                broken.append(target)
    assert not broken, f"README links to no such page or heading: {broken}"
