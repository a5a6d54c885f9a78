"""The core: one shutdown coordinator per process and the parts it is made of.

What it is for: the state machine ``RUNNING → DRAINING → CLEANING → DONE``,
the budget (``t0 + stop_timeout - margin``), signal handlers, cleanup hooks,
in-flight tracking, the watchdog, options and errors, and the event log.

May import: the standard library and structlog only; nothing else of
spotgrace (checked by the layer contracts in ``pyproject.toml``).

Start reading at :mod:`._coordinator` (the sequence), then :mod:`._hooks`
(ordering and per-hook budgets) and :mod:`._watchdog` (the deadline).
"""
