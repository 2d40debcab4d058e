"""The condition language: each placeholder, comparator and function, compiled once and
evaluated on what a check saw; every refusal names the condition and the position."""

from __future__ import annotations

import time

import orjson
import pytest

from crackseg.utils.deployment.monitoring.checks.conditions import (
    ConditionError,
    Observation,
    compile_condition,
    compile_conditions,
)


def failed(condition: str, **seen: object) -> str | None:
    """None when ``condition`` holds on the observation, else its failure text."""
    result = compile_condition(condition).check(Observation(**seen))  # type: ignore[arg-type]
    return None if result is None else str(result)


BODY = orjson.dumps(
    {
        "status": "UP",
        "ready": True,
        "name": "john.doe",
        "items": [{"id": 1}, {"id": 2, "tags": ["a", "b"]}],
        "load": 0.75,
        "nothing": None,
        "nested": {"deep": {"er": [{"value": 42}]}},
    }
)


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        ("[STATUS] == 200", True),
        ("[STATUS] != 200", False),
        ("[STATUS] < 300", True),
        ("[STATUS] <= 200", True),
        ("[STATUS] > 200", False),
        ("[STATUS] >= 200", True),
        ("[STATUS] == any(200, 204)", True),
        ("[STATUS] == pat(2*)", True),
        ("[STATUS] != pat(5*)", True),
        ("[BODY].status == UP", True),
        ("[BODY].status == up", False),  # text is compared as written, as Gatus does
        ('[BODY].status == "UP"', True),
        ("[BODY].ready == true", True),
        ("[BODY].load < 0.8", True),
        ("[BODY].load > 0.8", False),
        ("[BODY].nothing == null", True),
        ("[BODY].items[1].id == 2", True),
        ("[BODY].items[1].tags[0] == a", True),
        ("[BODY].nested.deep.er[0].value == 42", True),
        ("[BODY].name == pat(john*)", True),
        ("[BODY].name == any(bob, john.doe)", True),
        ("len([BODY].items) == 2", True),
        ("len([BODY].name) == 8", True),
        ("len([BODY].items[1]) > 10", True),  # an object: its minified JSON's length
        ("has([BODY].items) == true", True),
        ("has([BODY].errors) == false", True),
        ("[HEADERS].Content-Type == pat(*json*)", True),
        ("[HEADERS].content-type == application/json", True),
        ("[RESPONSE_TIME] < 300", True),
        ("[RESPONSE_TIME] > 300", False),
        ("[CONNECTED] == true", True),
        ("200 == [STATUS]", True),  # a placeholder may stand on either side
    ],
)
def test_each_placeholder_comparator_and_function(condition: str, holds: bool) -> None:
    result = failed(
        condition,
        status=200,
        body=BODY,
        response_time_ms=120.0,
        headers={"content-type": "application/json"},
    )
    assert (result is None) == holds, result


@pytest.mark.parametrize(
    ("condition", "seen", "message"),
    [
        ("[STATUS] == 200", {"status": 503}, "[STATUS] == 200: got 503"),
        ("[BODY].ready == true", {"body": b'{"ready": false}'}, "[BODY].ready == true: got false"),
        (
            "[BODY].status == Healthy",
            {"body": b'{"status": "healthy"}'},
            '[BODY].status == Healthy: got "healthy"',
        ),
        ("len([BODY].items) > 0", {"body": b'{"items": []}'}, "len([BODY].items) > 0: got 0"),
        ("[RESPONSE_TIME] < 300", {"response_time_ms": 512.4}, "[RESPONSE_TIME] < 300: got 512"),
        (
            "[BODY].ready == true",
            {"body": b"<html>busy</html>"},
            "[BODY].ready == true: got nothing (the body is not JSON)",
        ),
        (
            "[BODY].items[3].id == 1",
            {"body": b'{"items": [1]}'},
            "[BODY].items[3].id == 1: got nothing (no [3]: the array has 1 items)",
        ),
        (
            "[BODY].load < 1",
            {"body": b'{"load": "high"}'},
            '[BODY].load < 1: got "high" (not a number)',
        ),
        (
            "[HEADERS].X-Version == 2",
            {"headers": {}},
            "[HEADERS].X-Version == 2: got nothing (no x-version header)",
        ),
        (
            "[CERTIFICATE_EXPIRATION] > 7d",
            {"cert_expiry_s": 3 * 86_400 - 30},
            "[CERTIFICATE_EXPIRATION] > 7d: got 2d23h",
        ),
        # no TLS on the check: 0, as Gatus, so an expiry condition can never pass unseen
        ("[CERTIFICATE_EXPIRATION] > 48h", {}, "[CERTIFICATE_EXPIRATION] > 48h: got 0s"),
        ("[CONNECTED] == true", {"connected": False}, "[CONNECTED] == true: got false"),
        ("[STATUS] == any(200, 204)", {"status": 500}, "[STATUS] == any(200, 204): got 500"),
    ],
)
def test_a_failed_condition_names_itself_and_the_value_seen(
    condition: str, seen: dict[str, object], message: str
) -> None:
    assert failed(condition, **seen) == message


@pytest.mark.parametrize(
    ("condition", "position", "problem"),
    [
        ("[STATUS] = 200", 15, "no comparator"),
        ("[IP] == 127.0.0.1", 1, "unknown placeholder [IP]"),
        ("[status] == 200", 1, "unknown placeholder [status]"),
        ("[STATUS].code == 200", 9, "[STATUS] takes no path"),
        ("[BODY]..a == 1", 8, "a key must follow '.'"),
        ("[BODY].a[x] == 1", 9, "an array index must be [0], [1], ..."),
        ("[BODY].a b == 1", 9, "the JSON path goes on with .key or [index]"),
        ("[HEADERS] == x", 10, "[HEADERS] needs a header name"),
        ("[CONNECTED] > 1", 15, "compares with true or false"),
        ("[STATUS] == ok", 13, "[STATUS] compares with a number"),
        ("[CERTIFICATE_EXPIRATION] > soon", 28, "compares with a duration"),
        ("[STATUS] < pat(2*)", 10, "pat() needs == or !="),
        ("len([STATUS]) > 1", 5, "len() applies to [BODY] only"),
        ("len([BODY].a > 1", 4, "( is not closed"),
        ("[STATUS]) == 1", 9, ") closes nothing"),
        ("1 == 1", 1, "needs a placeholder on one side"),
        ("[STATUS] == ", 13, "a side of the comparison is empty"),
        ("[BODY].a[0 == 1", 9, "[ is not closed"),
    ],
)
def test_a_bad_condition_is_refused_with_its_position(
    condition: str, position: int, problem: str
) -> None:
    with pytest.raises(ConditionError) as info:
        compile_condition(condition)
    assert info.value.position == position, info.value
    assert problem in info.value.problem
    assert f"condition {condition!r} at position {position}: " in str(info.value)


def test_limits_on_length_count_depth_and_lines() -> None:
    with pytest.raises(ConditionError, match="longer than 512"):
        compile_condition("[STATUS] == " + "2" * 600)
    with pytest.raises(ConditionError, match="at most 32 conditions"):
        compile_conditions(["[STATUS] == 200"] * 33)
    with pytest.raises(ConditionError, match="deeper than 32"):
        compile_condition("[BODY]" + ".a" * 33 + " == 1")
    with pytest.raises(ConditionError, match="one line"):
        compile_condition("[STATUS] == 200\n[STATUS] == 201")


def test_a_deep_path_into_a_64_kib_body_is_bounded() -> None:
    """Hostile: 64 KiB of nesting and padding; a 30-segment path reads it once, quickly."""
    depth = 30
    doc: object = {"leaf": "x" * 60_000}
    for _ in range(depth):
        doc = {"a": doc}
    body = orjson.dumps(doc)
    assert 60_000 < len(body) <= 64 * 1024
    condition = compile_condition("[BODY]" + ".a" * depth + ".leaf == pat(x*)")
    obs = Observation(status=200, body=body)
    started = time.perf_counter()
    for _ in range(100):
        assert condition.check(obs) is None
    assert time.perf_counter() - started < 1.0  # parsed once per observation, not per check
    # too deep for the body: a failure naming the missing key, never an exception
    longer = compile_condition("[BODY]" + ".a" * (depth + 1) + " == 1")
    result = longer.check(obs)
    assert result is not None and "no key 'a'" in str(result)


def test_a_body_that_is_truncated_json_reads_as_not_json() -> None:
    """The checker keeps at most max_body_bytes: a cut JSON body is "not JSON", a failure."""
    cut = orjson.dumps({"ready": True, "pad": "x" * 100})[:50]
    assert failed("[BODY].ready == true", body=cut) == (
        "[BODY].ready == true: got nothing (the body is not JSON)"
    )


def test_compiled_conditions_compare_by_their_text() -> None:
    assert compile_condition("[STATUS] == 200") == compile_condition("  [STATUS] == 200 ")
    assert compile_condition("[STATUS] == 200").placeholders == {"STATUS"}
    assert compile_condition("len([BODY].a) > [STATUS]").placeholders == {"BODY", "STATUS"}
