"""What the HTTP integrations (aiohttp, asgi, wsgi, gunicorn) share.

What it is for: probe paths and options, the 503 answer, a race-free close
of listening sockets and a grace period for idle keep-alive connections
(``_shared``); the WSGI middleware (``_wsgi``, public as ``spotgrace.wsgi``; its
bodies and the book of requests before the notice in ``_wsgi_body``);
the state a pre-fork master shares with its workers (``_prefork``); stopping
intake on listeners shared by forked workers (``_listen``); dropping new
SYNs and seeing the handshakes still under way (``_handshakes``); spotgrace in the
lifespan of a server that owns the process (``_lifespan``).

May import: :mod:`spotgrace._core`, :mod:`spotgrace._graceful` and the
standard library; never a web framework or server (each integration imports its own).

Start reading at :mod:`._shared`.
"""
