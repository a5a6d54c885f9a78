"""The docs: every Python snippet is run by this test or says why not, and the site builds.

A snippet is a fenced Python block (```` ```python ````, ```` ```py ````,
``~~~python``, with attributes or indented in a list) in ``README.md`` or
``docs/*.md``; a block inside another fence (a page showing markup) is not one.
The line before it must be ``<!-- snippet: run -->`` (run here as a script in a
fresh interpreter; it must exit 0) or ``<!-- snippet: skip: REASON -->``.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARK = re.compile(r"<!-- snippet: (run|skip: (?P<reason>\S.*\S)) -->")
#: An opening fence: its characters and its language (```python, ~~~ py, ```{.python title="x"}).
FENCE = re.compile(r"^\s*(?P<fence>`{3,}|~{3,})\s*\{?\s*\.?(?P<lang>[\w+-]*)")
PYTHON = frozenset({"python", "python3", "py", "py3", "pycon"})


@dataclass(frozen=True)
class Snippet:
    path: Path
    line: int
    mark: str | None
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _closes(line: str, fence: str) -> bool:
    text = line.strip()
    return text.startswith(fence) and set(text) == {fence[0]}


def snippets(path: Path) -> list[Snippet]:
    lines = path.read_text().splitlines()
    found = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        fence = m["fence"]
        end = next((j for j in range(i + 1, len(lines)) if _closes(lines[j], fence)), len(lines))
        if m["lang"].lower() in PYTHON:
            prev = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            mark = MARK.fullmatch(prev)
            code = textwrap.dedent("\n".join(lines[i + 1 : end]))
            found.append(Snippet(path, i + 1, mark.group(1) if mark else None, code))
        i = end + 1  # a fence inside this block is the block's text, not a block
    return found


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
ALL = [s for doc in DOCS for s in snippets(doc)]


def test_snippets_are_found() -> None:
    assert len(ALL) >= 20
    assert any(s.mark == "run" for s in ALL)


@pytest.mark.parametrize("snippet", ALL, ids=lambda s: s.where)
def test_every_snippet_is_run_or_says_why_not(snippet: Snippet) -> None:
    assert snippet.mark is not None, (
        f"{snippet.where}: precede the block with <!-- snippet: run --> "
        "or <!-- snippet: skip: REASON -->"
    )
    # Even a skipped snippet must parse (top-level `async with` allowed, as in a notebook).
    compile(snippet.code, snippet.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


RUN = [s for s in ALL if s.mark == "run"]


@pytest.mark.parametrize("snippet", RUN, ids=lambda s: s.where)
def test_runnable_snippet_runs(snippet: Snippet, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTGRACE_")}
    proc = subprocess.run(
        [sys.executable, "-c", snippet.code],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"{snippet.where} failed:\n{proc.stderr[-2000:]}"


def test_every_kind_of_python_fence_is_a_snippet(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```py\na = 1\n```\n\n"
        "~~~python\nb = 1\n~~~\n\n"
        '```python title="x.py"\nc = 1\n```\n\n'
        "``` {.python}\nd = 1\n```\n\n"
        "- a list item\n\n    <!-- snippet: run -->\n    ```python\n    e = 1\n    ```\n\n"
        "````markdown\n<!-- snippet: run -->\n```python\nnot a snippet\n```\n````\n\n"
        "```console\n$ python -c 1\n```\n"
    )
    found = snippets(page)
    assert [s.code for s in found] == ["a = 1", "b = 1", "c = 1", "d = 1", "e = 1"]
    assert [s.mark for s in found] == [None, None, None, None, "run"]


def test_a_failing_run_snippet_fails(tmp_path: Path) -> None:
    bad = Snippet(ROOT / "docs" / "page.md", 1, "run", "raise SystemExit(3)")
    with pytest.raises(AssertionError, match="failed"):
        test_runnable_snippet_runs(bad, tmp_path)


def test_the_mark_check_catches_an_unmarked_snippet(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```python\nx = 1\n```\n\n<!-- snippet: skip: a reason -->\n```python\ny\n```\n"
    )
    found = snippets(page)
    assert [s.mark for s in found] == [None, "skip: a reason"]


def _build(root: Path, dest: Path) -> subprocess.CompletedProcess[str]:
    # No -q: with it MkDocs drops its warnings before --strict can count them.
    mkdocs = Path(sys.executable).with_name("mkdocs")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [str(mkdocs), "build", "--strict", "-d", str(dest)],
        cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    proc = _build(ROOT, tmp_path / "site")
    assert proc.returncode == 0, proc.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "core" / "index.html").read_text()
    assert "graceful" in api  # generated from the docstrings
    assert "on_shutdown" in api
    assert ":class:" not in api
    ecs = (tmp_path / "site" / "api" / "ecs" / "index.html").read_text()
    assert ".. warning::" not in ecs  # a Sphinx directive in a docstring is a box
    assert '<div class="admonition warning">' in ecs
    for page in (tmp_path / "site" / "api").rglob("*.html"):
        assert "::</p>" not in page.read_text(), page  # reST's literal-block marker


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    for name in ("docs", "scripts", "spotgrace"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with open(tmp_path / "docs" / "timeline.md", "a", encoding="utf-8") as f:
        f.write("\nSee [the missing page](no-such-page.md).\n")
    proc = _build(tmp_path, tmp_path / "site")
    assert proc.returncode != 0
    assert "no-such-page.md" in proc.stderr
