"""URLs and views of the example Django project."""

from __future__ import annotations

import time

from django.http import HttpRequest, HttpResponse
from django.urls import path


def work(request: HttpRequest) -> HttpResponse:
    """Sleep ``ms`` milliseconds, then answer ``ok``."""
    time.sleep(int(request.GET.get("ms", "0")) / 1000)
    return HttpResponse(b"ok")


def hello(request: HttpRequest) -> HttpResponse:
    """A cheap answer."""
    return HttpResponse(b"hello")


urlpatterns = [path("work", work), path("hello", hello)]
