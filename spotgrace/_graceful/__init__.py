"""The public face of the core: ``graceful()``, ``run()``, ``Grace`` and ``AsyncGrace``.

What it is for: a ``with`` / ``async with`` block (or ``run(main)``) that
installs the signal handlers, starts early warning when asked, and runs the
core's sequence when the block ends because of a shutdown.

May import: :mod:`spotgrace._core` and :mod:`spotgrace.watch` (the latter
only when ``watch=`` is set, so that ``import spotgrace`` needs no httpx).

Start reading at :mod:`._graceful`; :mod:`._run` is ``run()``;
:mod:`._verdict` turns how the shutdown went into the exit code;
:mod:`._early_warning` turns the ``watch`` option into a running watcher.
"""
