"""The import-linter contracts in ``pyproject.toml`` really break on a bad import.

Each case copies the package and ``pyproject.toml`` into a temporary
directory, adds one forbidden import to one module, and runs ``lint-imports``
on the copy: it must report a broken contract. One clean copy must pass, so a
failure is the added import's doing, not the set-up's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports(tmp_path: Path, module: str | None = None, line: str = "") -> tuple[int, str]:
    shutil.copytree(
        ROOT / "spotgrace", tmp_path / "spotgrace", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    if module is not None:
        with open(tmp_path / module, "a", encoding="utf-8") as f:
            f.write(f"\n{line}\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    code = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"
    proc = subprocess.run(
        [sys.executable, "-c", code, "--no-cache"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_the_clean_copy_keeps_every_contract(tmp_path: Path) -> None:
    code, out = _lint_imports(tmp_path)
    assert code == 0, out
    assert "0 broken" in out
    where = subprocess.run(
        [sys.executable, "-c", "import spotgrace, sys; print(spotgrace.__file__)"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(tmp_path))  # the copy, not the installed package, was checked


@pytest.mark.parametrize(
    ("module", "line"),
    [
        # the core imports no integration
        ("spotgrace/_core/_hosts.py", "import spotgrace.aiohttp"),
        # integrations never import each other
        ("spotgrace/checkpoint/_base.py", "import spotgrace.ecs"),
        # nothing imports the CLI: an integration, the public typing module, the root
        ("spotgrace/timeline/_files.py", "import spotgrace._cli"),
        ("spotgrace/typing.py", "import spotgrace._cli"),
        ("spotgrace/__init__.py", "from spotgrace._cli import _plan"),
        ("spotgrace/_core/_hosts.py", "import spotgrace.__main__"),
        # `import spotgrace` stays free of integrations and optional dependencies
        ("spotgrace/__init__.py", "import spotgrace.timeline"),
        ("spotgrace/__init__.py", "import httpx"),
        ("spotgrace/typing.py", "import spotgrace.aiohttp"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(tmp_path: Path, module: str, line: str) -> None:
    code, out = _lint_imports(tmp_path, module, line)
    assert code != 0, out
    assert "BROKEN" in out, out
