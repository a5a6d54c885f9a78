"""The docs: every Python snippet is run by this test or says why not, and the site builds.

A snippet is a fenced ``python`` block in ``README.md`` or ``docs/*.md``. The
line before it must be ``<!-- snippet: run -->`` (run here as a script in a
fresh interpreter; it must exit 0) or ``<!-- snippet: skip: REASON -->``.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARK = re.compile(r"<!-- snippet: (run|skip: (?P<reason>\S.*\S)) -->")


@dataclass(frozen=True)
class Snippet:
    path: Path
    line: int
    mark: str | None
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def snippets(path: Path) -> list[Snippet]:
    lines = path.read_text().splitlines()
    found = []
    for i, line in enumerate(lines):
        if line.strip() != "```python":
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        prev = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        m = MARK.fullmatch(prev)
        found.append(Snippet(path, i + 1, m.group(1) if m else None, "\n".join(lines[i + 1 : end])))
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


def test_the_mark_check_catches_an_unmarked_snippet(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```python\nx = 1\n```\n\n<!-- snippet: skip: a reason -->\n```python\ny\n```\n"
    )
    found = snippets(page)
    assert [s.mark for s in found] == [None, "skip: a reason"]


def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).with_name("mkdocs")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [str(mkdocs), "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "core" / "index.html").read_text()
    assert "graceful" in api  # generated from the docstrings
    assert "on_shutdown" in api
    assert ":class:" not in api
