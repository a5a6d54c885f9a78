"""What the HTTP integrations (:mod:`spotgrace.aiohttp`, :mod:`spotgrace.asgi`) share.

What it is for: probe paths and options, the 503 answer, a race-free close
of listening sockets and a grace period for idle keep-alive connections.

May import: :mod:`spotgrace._core` and the standard library; never a web
framework (each integration imports its own).

Start reading at :mod:`._shared`.
"""
