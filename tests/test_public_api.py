"""The public surface: a sorted, complete __all__; no framework imported by `import spotgrace`."""

from __future__ import annotations
import __future__

import subprocess
import sys
import types

import pytest

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


@pytest.mark.parametrize(
    ("module", "extra"), [("spotgrace.sqs", "sqs"), ("spotgrace.fleet", "fleet")]
)
def test_a_missing_extra_is_one_clear_import_error(module: str, extra: str) -> None:
    # boto3 and botocore look absent to the import system: the package names its extra.
    code = (
        "import importlib.util\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n.split('.')[0] in "
        "('boto3', 'botocore') else real(n, *a)\n"
        f"import {module}\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("spotgrace._core._errors.MissingExtraError:"), proc.stderr
    assert f'pip install "spotgrace[{extra}]"' in last
