"""docs/api.md is what tools/api_reference.py makes from the code now: it cannot drift."""

from __future__ import annotations

from tools.api_reference import OUT, render


def test_the_api_reference_is_generated_from_the_code() -> None:
    assert OUT.read_text(encoding="utf-8") == render(), (
        "docs/api.md is stale: run .venv/bin/python -m tools.api_reference"
    )


def test_the_reference_names_every_route_and_the_problem_shape() -> None:
    text = render()
    for route in ("GET /api/v1/deployments`", "POST /api/v1/silences`", "GET /healthz`"):
        assert route in text
    assert "### Problem" in text and "`detail`" in text and "application/problem+json" in text
