"""CallbackRouter: the "none" router for users who switch traffic themselves."""

from __future__ import annotations

import pytest

from crackseg.utils.deployment.errors import RouterError
from crackseg.utils.deployment.rollout.routers.base import Backend, TrafficRouter
from crackseg.utils.deployment.rollout.routers.callback import CallbackRouter


def test_calls_the_function_and_records_current() -> None:
    seen: list[list[Backend]] = []
    router = CallbackRouter(seen.append, public_url="http://lb.example:80")
    assert isinstance(router, TrafficRouter)
    assert router.public_url == "http://lb.example:80" and router.current() == []
    first = [Backend("127.0.0.1:8001", 100, "v1")]
    second = [Backend("127.0.0.1:8001", 90, "v1"), Backend("127.0.0.1:8002", 10, "v2")]
    router.apply(first)
    router.apply(second)
    assert seen == [first, second]
    assert router.current() == second and list(router.history) == [first, second]
    router.close()


def test_a_failing_callback_keeps_the_previous_backends() -> None:
    def switch(backends: list[Backend]) -> None:
        if any(b.label == "v3" for b in backends):
            raise RuntimeError("load balancer API said no")

    router = CallbackRouter(switch)
    router.apply([Backend("h:1", 1, "v2")])
    with pytest.raises(RouterError, match="said no") as info:
        router.apply([Backend("h:2", 1, "v3")])
    assert isinstance(info.value.__cause__, RuntimeError)
    assert router.current() == [Backend("h:1", 1, "v2")]


def test_rejects_changes_without_traffic_and_works_without_a_function() -> None:
    router = CallbackRouter()
    with pytest.raises(RouterError):
        router.apply([Backend("h:1", 0)])
    with pytest.raises(RouterError):
        router.apply([Backend("h:1", -1), Backend("h:2", 1)])
    router.apply([Backend("h:1", 3)])
    assert router.current() == [Backend("h:1", 3)] and router.public_url is None
