"""The example WSGI apps as a user without spotgrace runs them: a /readyz that is always 200.

``flask_app`` (from ``examples/flask_app.py``) and ``django_app`` (from
``examples/django_app``) are imported lazily, each from its own directory
(gunicorn's ``--chdir``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__: list[str] = []  # `django_app`, `flask_app`: made on first use (module __getattr__)


def _with_readyz(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/readyz":
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
            return [b"ok\n"]
        return app(environ, start_response)

    return wrapped


def __getattr__(name: str) -> Any:
    if name == "flask_app":
        import flask_app  # type: ignore[import-not-found]

        return _with_readyz(flask_app.app)
    if name == "django_app":
        import wsgi  # type: ignore[import-not-found]

        return _with_readyz(wsgi.application)
    raise AttributeError(name)
