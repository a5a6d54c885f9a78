"""Attacks on ``spotgrace.aiohttp.run_app``'s request factory (review 13)."""

from __future__ import annotations

import warnings
from typing import Any

from aiohttp import web

import spotgrace.aiohttp as sa


class _Marked(web.Request):
    pass


def test_an_app_whose_own_make_request_is_set_on_the_instance_keeps_it() -> None:
    # aiohttp's Server is given ``app._make_request`` (the instance's attribute), and so
    # was run_app's factory before it was re-made from the class: an override set on
    # the app (a test helper, a library wrapping requests) must still make the requests.
    made: list[Any] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        app = web.Application()

        def own(*args: Any, _cls: type = web.Request) -> Any:
            made.append(_cls)
            return ("own", _cls)

        app._make_request = own  # type: ignore[method-assign]
    factory = sa._request_factory(app, _Marked)
    assert factory(1, 2, 3, 4, 5) == ("own", _Marked)
    assert made == [_Marked]


def test_a_subclass_override_calling_super_is_re_made_with_the_class() -> None:
    # Held up under attack: an Application subclass whose _make_request calls super()
    # (its __class__ cell) with _cls keeps working and gets the grace class.
    calls: list[type] = []

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)

        class Sub(web.Application):
            def _make_request(  # type: ignore[override]
                self,
                message: Any,
                payload: Any,
                protocol: Any,
                writer: Any,
                task: Any,
                _cls: type = web.Request,
            ) -> Any:
                calls.append(_cls)
                return super()._make_request  # the cell resolves: no RuntimeError

        app = Sub()
    factory = sa._request_factory(app, _Marked)
    assert factory(1, 2, 3, 4, 5) is not None
    assert calls == [_Marked]
