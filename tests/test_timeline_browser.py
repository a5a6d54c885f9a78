"""Look at the timeline the way a user would: real headless Chromium, a screenshot.

The page holds the shutdowns of the real scenarios in ``tests/helpers/shutdowns.py``
(clean, hook timeout, watchdog, second signal, run + child, a child
SIGKILLed by run, rolling restart).
Chromium is Debian's package; ``python3 scripts/dev.py test`` installs it as
root. Without it the tests skip, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from spotgrace.timeline import read_shutdowns, render_html
from tests.helpers.browser import Image, chromium, find_chromium, read_png, screenshot
from tests.helpers.shutdowns import run_all

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _chromium() -> None:
    if find_chromium() is None:
        why = "chromium is not installed (python3 scripts/dev.py test installs it as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("timeline-browser")
    runs = run_all(tmp)
    lines = [line for cap in runs.values() for line in cap.events_file.splitlines()]
    shutdowns, stats = read_shutdowns(lines)
    assert len(shutdowns) == 8
    path = tmp / "timeline.html"
    path.write_text(render_html(shutdowns, stats), encoding="utf-8")
    return path


def white(r: int, g: int, b: int) -> bool:
    return r > 245 and g > 245 and b > 245


def shot(page: Path, tmp: Path, height: int) -> Image:
    out = tmp / (page.stem + ".png")
    run = screenshot(page, out, width=1100, height=height)
    assert run.console() == []
    return read_png(out.read_bytes())


def test_screenshot_is_not_blank(page: Path, tmp_path: Path) -> None:
    img = shot(page, tmp_path, height=2900)
    drawn = img.width * img.height - img.count(white)
    assert drawn > 0.04 * img.width * img.height, f"{drawn} non-white pixels only"
    # The picture's own colours, not just text: bars and verdict boxes were painted.
    assert img.near("#2e7d32") > 200  # hooks that finished, clean verdicts
    assert img.near("#ef6c00") > 100  # the timed-out hook, deadlines
    assert img.near("#6a1b9a") > 200  # hooks still running when the process ended
    assert img.near("#c62828") > 100  # the unclean verdicts' border
    # The same measure on an empty page finds nothing: the check can fail.
    empty = tmp_path / "empty.html"
    empty.write_text("<!DOCTYPE html><html><body></body></html>")
    blank = shot(empty, tmp_path, height=600)
    assert blank.width * blank.height - blank.count(white) < 50


def test_page_has_no_console_errors_and_the_dom_has_every_shutdown(page: Path) -> None:
    run = chromium(page, "--dump-dom")
    assert run.console() == []
    assert run.stdout.count("<svg ") == 8
    for name in ("deregister", "hang_forever", "block_the_loop", "first_good", "last_good"):
        assert f">{name}</text>" in run.stdout
    assert "NOT CLEAN: the watchdog ended the process at its deadline" in run.stdout


def test_console_errors_are_detected(tmp_path: Path) -> None:
    """The console check above can fail: a page that logs an error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><body><script>console.error('boom'); nope();</script></body></html>"
    )
    messages = chromium(bad, "--dump-dom").console()
    assert any("boom" in m for m in messages)
    assert any("ReferenceError" in m for m in messages)


def test_page_is_self_contained(page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html
    assert not re.search(r"\b(src|href)\s*=|url\(|@import", html)
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) == {"http://www.w3.org/2000/svg"}
