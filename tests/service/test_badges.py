"""SVG badges over a real monitor: text, colours, caching, and who may read them."""

from __future__ import annotations

import re
from pathlib import Path

import requests

from tests.support.page_rig import URL_SECRET, page_rig

TOKEN = "badge-token-7c1e"


def _text(svg: str) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


def test_badges_say_health_uptime_and_response_time(tmp_path: Path) -> None:
    with page_rig(tmp_path, token=TOKEN) as rig:
        rig.add("api", "/ok", checks=2, public=True)
        rig.add("batch", "/bad", checks=2, public=True)
        base = rig.server.url + "/badges/"
        r = requests.get(base + "api/health.svg", timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("image/svg+xml")
        assert _text(r.text) == ["health", "healthy"] and "<title>health: healthy</title>" in r.text
        assert _text(requests.get(base + "batch/health.svg", timeout=10).text) == [
            "health", "unhealthy"]  # fmt: skip
        assert _text(requests.get(base + "api/uptime/24h.svg", timeout=10).text) == [
            "uptime 24h", "100.0%"]  # fmt: skip
        assert _text(requests.get(base + "batch/uptime/7d.svg", timeout=10).text) == [
            "uptime 7d", "0.0%"]  # fmt: skip
        assert _text(requests.get(base + "api/uptime/30d.svg", timeout=10).text) == [
            "uptime 30d", "100.0%"]  # fmt: skip
        label, value = _text(requests.get(base + "api/response-time.svg", timeout=10).text)
        assert label == "response time" and re.fullmatch(r"\d+(\.\d)? ms", value)
        assert requests.get(base + "api/uptime/1y.svg", timeout=10).status_code == 404
        assert URL_SECRET not in r.text


def test_badges_are_cacheable(tmp_path: Path) -> None:
    with page_rig(tmp_path) as rig:
        rig.add("api", "/ok", checks=1, public=True, check_interval=3600.0)
        url = rig.server.url + "/badges/api/health.svg"
        first = requests.get(url, timeout=10)
        etag = first.headers["ETag"]
        assert "max-age=" in first.headers["Cache-Control"] and "public" in first.headers[
            "Cache-Control"]  # fmt: skip
        again = requests.get(url, headers={"If-None-Match": etag}, timeout=10)
        assert again.status_code == 304 and not again.content
        assert "default-src 'none'" in first.headers["Content-Security-Policy"]


def test_a_private_deployment_badge_needs_the_token(tmp_path: Path) -> None:
    with page_rig(tmp_path, token=TOKEN) as rig:
        rig.add("internal", "/ok", checks=1)
        url = rig.server.url + "/badges/internal/health.svg"
        hidden = requests.get(url, timeout=10)
        missing = requests.get(rig.server.url + "/badges/nope/health.svg", timeout=10)
        # The same answer for a private and a missing deployment: a URL reveals nothing.
        assert hidden.status_code == missing.status_code == 404
        assert hidden.text == missing.text
        wrong = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 404
        shown = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert shown.status_code == 200 and _text(shown.text) == ["health", "healthy"]
        assert "private" in shown.headers["Cache-Control"]
