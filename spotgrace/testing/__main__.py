"""``python -m spotgrace.testing [PORT]``: fake endpoints until Ctrl-C."""

from __future__ import annotations

from . import main

main()
