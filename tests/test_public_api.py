"""The public surface: a sorted, complete __all__; no framework imported by `import spotgrace`."""

from __future__ import annotations
import __future__

import subprocess
import sys
import types

import spotgrace


def test_all_is_sorted_and_complete() -> None:
    assert spotgrace.__all__ == sorted(spotgrace.__all__)
    public = {
        name
        for name, value in vars(spotgrace).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType | __future__._Feature)
    }
    assert public | {"__version__"} == set(spotgrace.__all__)


def test_every_public_name_has_a_docstring() -> None:
    for name in spotgrace.__all__:
        obj = getattr(spotgrace, name)
        if callable(obj) and not isinstance(obj, type(spotgrace.ExitCode)):
            assert obj.__doc__, f"spotgrace.{name} has no docstring"


def test_import_does_not_import_frameworks() -> None:
    code = (
        "import sys, spotgrace; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('aiohttp', 'httpx', 'uvicorn', 'starlette', 'redis')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
