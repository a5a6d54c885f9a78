"""Two middlewares on one grace, one nested in the other; a body open across the notice.

Run: PYTHONPATH=$PWD /work/main/.venv/bin/python bench/reviewwsgi/two_middlewares.py
"""

from __future__ import annotations

import spotgrace
from spotgrace.wsgi import GraceMiddleware


def app(environ, start_response):
    start_response("200 OK", [])
    return iter([b"x"])


with spotgrace.graceful(signals=(), exit_code="return", drain_delay=5) as grace:
    a = GraceMiddleware(app, grace=grace)
    nested = GraceMiddleware(GraceMiddleware(app, grace=grace), grace=grace)
    ba = a({"PATH_INFO": "/x"}, lambda *x: None)
    bn = nested({"PATH_INFO": "/x"}, lambda *x: None)
    grace.request_shutdown("test")
    at_notice = grace.statistics()["inflight"]
    ba.close()
    bn.close()
    bn.close()
    print(
        f"in flight at the notice {at_notice} (expect 3), after closing {grace.statistics()['inflight']}"
    )
    grace._c.stopping.wait(10)
