"""The hook registry: decorator forms, validation, ordering."""

from __future__ import annotations

import pytest

import spotgrace
from spotgrace._core._hooks import HookRegistry, default_registry, ordered


def test_bare_decorator_registers_on_the_default_registry_and_returns_the_function() -> None:
    def flush() -> None: ...

    assert spotgrace.on_shutdown(flush) is flush
    (hook,) = [h for h in default_registry.hooks() if h.fn is flush]
    assert (hook.order, hook.timeout, hook.name) == (0, None, flush.__qualname__)


def test_decorator_with_options() -> None:
    @spotgrace.on_shutdown(order=10, timeout=5, name="close-pool")
    async def close_pool() -> None: ...

    (hook,) = [h for h in default_registry.hooks() if h.fn is close_pool]
    assert (hook.order, hook.timeout, hook.name, hook.is_async) == (10, 5, "close-pool", True)


def test_order_lower_first_then_last_registered_first() -> None:
    reg = HookRegistry()
    names = ["a0", "b10", "c0", "d-5", "e10"]
    for name in names:
        order = int(name[1:])
        reg.register(lambda: None, order=order, name=name)
    assert [h.name for h in ordered([reg])] == ["d-5", "c0", "a0", "e10", "b10"]


def test_ordering_spans_registries_by_registration_time() -> None:
    first, second = HookRegistry(), HookRegistry()
    first.register(lambda: None, name="early")
    second.register(lambda: None, name="late")
    assert [h.name for h in ordered([second, first])] == ["late", "early"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"timeout": 0}, spotgrace.ConfigError),
        ({"timeout": -1}, spotgrace.ConfigError),
        ({"timeout": float("nan")}, spotgrace.ConfigError),
        ({"timeout": float("inf")}, spotgrace.ConfigError),
        ({"timeout": "5"}, TypeError),
        ({"order": 1.5}, TypeError),
        ({"order": True}, TypeError),
    ],
)
def test_bad_hook_options_fail_at_registration(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        spotgrace.on_shutdown(**kwargs)  # type: ignore[call-overload]


def test_non_callable_is_refused() -> None:
    with pytest.raises(TypeError, match="callable"):
        HookRegistry().register(42)  # type: ignore[arg-type]


def test_unregister_and_clear() -> None:
    reg = HookRegistry()

    def a() -> None: ...

    def b() -> None: ...

    reg.register(a)
    reg.register(b)
    assert reg.unregister(a) is True
    assert reg.unregister(a) is False
    assert [h.fn for h in reg.hooks()] == [b]
    reg.clear()
    assert reg.hooks() == []
