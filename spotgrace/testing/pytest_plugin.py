"""A pytest plugin with the ``spotgrace_fake`` fixture (extra ``testing``).

Enable it with ``-p spotgrace.testing.pytest_plugin`` (or ``pytest_plugins =
["spotgrace.testing.pytest_plugin"]`` in the top-level ``conftest.py``)::

    def test_my_app_stops_on_a_spot_notice(spotgrace_fake):
        spotgrace_fake.interrupt(after=1.0)
        ...   # ECS_* and AWS_EC2_METADATA_SERVICE_ENDPOINT point at it
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import FakeEndpoints

__all__ = ["spotgrace_fake"]


@pytest.fixture
def spotgrace_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEndpoints]:
    """Fake ECS/EC2 endpoints on 127.0.0.1, with the environment pointing at them."""
    with FakeEndpoints() as fake:
        for key, value in fake.env().items():
            monkeypatch.setenv(key, value)
        yield fake
