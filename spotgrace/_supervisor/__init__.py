"""``spotgrace run``'s engine: any program as PID 1, with a deadline.

What it is for: start the child in its own process group, forward signals,
reap zombies (as PID 1 or a child subreaper), SIGKILL the group at
``stop_timeout - margin`` and exit with the child's code. The command-line
front ends (``spotgrace run``, ``spotgrace doctor``) live in
:mod:`spotgrace._cli`.

May import: :mod:`spotgrace._core` only.

Start reading at :mod:`._supervisor`; :mod:`._reaper` decodes wait statuses,
:mod:`._probes` looks at PID 1 and metadata for ``doctor``.
"""
