"""With no extra installed, the core, the CLI and the stdlib-only packages still work.

A fresh interpreter is run with every optional dependency made unimportable
(``None`` in ``sys.modules``: ``import aiohttp`` raises ModuleNotFoundError,
as in an install of ``spotgrace`` alone). Checked by hand once with a real
core-only venv from the wheel and the sdist; this keeps it from regressing.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

OPTIONAL = ("aiohttp", "httpx", "uvicorn", "starlette", "redis", "fastapi", "sniffio", "boto3")

PRELUDE = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in OPTIONAL)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "module", ["spotgrace", "spotgrace.checkpoint", "spotgrace.timeline", "spotgrace.typing"]
)
def test_imports_without_extras(module: str) -> None:
    proc = _run(f"import {module}")
    assert proc.returncode == 0, proc.stderr


def test_every_subcommand_help_without_extras() -> None:
    code = (
        "import contextlib, io\n"
        "from spotgrace._cli import build_parser, main\n"
        "names = [a for a in build_parser()._subparsers._group_actions[0].choices]\n"
        "assert names, names\n"
        "for argv in [['--help']] + [[n, '--help'] for n in names]:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit as exc:\n"
        "            assert exc.code == 0, (argv, exc.code)\n"
        "    assert 'usage: spotgrace' in out.getvalue(), argv\n"
        "print(sorted(names))\n"
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    assert "'plan'" in proc.stdout
    assert "'timeline'" in proc.stdout


def test_plan_and_timeline_run_without_extras() -> None:
    code = (
        "from spotgrace._cli import main\n"
        "assert main(['plan']) == 0\n"
        "assert main(['timeline', '--quiet', '/dev/null']) == 2  # no shutdown in it\n"
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    assert "spotgrace plan: FITS" in proc.stdout
