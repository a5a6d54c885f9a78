"""URLs and views of the example Django project."""

from __future__ import annotations

import os
import time

from django.http import HttpRequest, HttpResponse
from django.urls import path

import spotgrace


def work(request: HttpRequest) -> HttpResponse:
    """Sleep ``ms`` milliseconds, then answer ``ok``."""
    time.sleep(int(request.GET.get("ms", "0")) / 1000)
    return HttpResponse(b"ok")


def hello(request: HttpRequest) -> HttpResponse:
    """A cheap answer."""
    return HttpResponse(b"hello")


@spotgrace.on_shutdown(timeout=2)
def close_connections() -> None:
    """Per worker: close what this worker opened (``django.db.connections.close_all()``, say)."""
    print(f"django worker {os.getpid()}: connections closed", flush=True)


urlpatterns = [path("work", work), path("hello", hello)]
