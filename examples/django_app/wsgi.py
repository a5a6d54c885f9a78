"""The example Django project's WSGI entry point, for gunicorn.

    cd examples/django_app
    gunicorn -c ../gunicorn.conf.py -k gthread --threads 4 wsgi:application

``spotgrace.gunicorn`` (in ``gunicorn.conf.py``) wraps ``application`` in
``spotgrace.wsgi.GraceMiddleware`` in every worker: ``/readyz``, ``/healthz``,
``Connection: close`` from the notice on, 503 once intake stops.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

import spotgrace

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
application = get_wsgi_application()


# Registered here, where every worker loads it (Django imports urls.py only on the
# first request, so a hook registered there would run only in workers that served one).
@spotgrace.on_shutdown(timeout=2)
def close_connections() -> None:
    """Per worker: close what this worker opened (``django.db.connections.close_all()``)."""
    print(f"django worker {os.getpid()}: connections closed", flush=True)
