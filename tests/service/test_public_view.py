"""The public status view's JSON: public deployments only, and of them only the allow-listed
fields, whatever the private statuses hold (URL with a secret, errors, host figures)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import requests

from tests.support.page_rig import URL_SECRET, page_rig
from tests.support.procs import named_process

TOKEN = "public-view-token-51ab"


def test_public_json_shows_public_deployments_and_nothing_private(tmp_path: Path) -> None:
    # A live process of its own, so the private status holds its name and figures for the
    # public view to leave out: a fresh CI machine runs no other "python".
    with (
        page_rig(tmp_path, token=TOKEN, protect_reads=True) as rig,
        named_process("crackseg_public_view") as proc,
    ):
        rig.add("api", "/ok", checks=3, public=True, group="Platform")
        rig.add("segmenter", "/bad", checks=3, public=True, group="Model team",
                process_name=proc)  # fmt: skip
        rig.add("ungrouped", "/deg", checks=2, public=True)
        rig.add("internal-db", "/ok", checks=1)
        assert requests.get(rig.server.url + "/api/v1/deployments", timeout=10).status_code == 401
        r = requests.get(rig.server.url + "/status.json", timeout=10)
        assert r.status_code == 200
        view = r.json()
        assert [g["name"] for g in view["groups"]] == ["Model team", "Platform", None]
        ids = [d["id"] for g in view["groups"] for d in g["deployments"]]
        assert ids == ["segmenter", "api", "ungrouped"]
        seg = view["groups"][0]["deployments"][0]
        assert set(seg) == {"id", "status", "uptime_24h_percent", "uptime_7d_percent", "heartbeat"}
        assert seg["status"] == "unhealthy" and set(seg["heartbeat"]) == {"t", "s"}
        assert seg["heartbeat"]["s"][-1] == "unhealthy"
        assert view["overall"] == "unhealthy"
        assert view["incidents"], "the failing deployment's incident is listed"
        for inc in view["incidents"]:
            assert set(inc) == {"deployment_id", "title", "severity", "start", "end"}
            assert inc["deployment_id"] in ids
        titles = {(i["deployment_id"], i["title"]) for i in view["incidents"]}
        assert ("segmenter", "Service unavailable") in titles
        text = r.text
        private_status = rig.monitor.get_deployment_status("segmenter")
        assert private_status["process_running"] is True, private_status
        for private in ("internal-db", URL_SECRET, "127.0.0.1", "http", "HTTP 500", proc, "python",
                        "cpu", "memory", "last_error", "message", "response_time", "host"):  # fmt: skip
            assert private not in text, f"{private!r} leaked into the public JSON"
        assert not re.search(r"\d+\.\d+\.\d+\.\d+", json.dumps(view["groups"]))


def test_public_page_is_open_and_served_with_the_strict_policy(tmp_path: Path) -> None:
    with page_rig(tmp_path, token=TOKEN, protect_reads=True) as rig:
        r = requests.get(rig.server.url + "/status", timeout=10)
        assert r.status_code == 200 and "text/html" in r.headers["Content-Type"]
        assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert "/static/status.js" in r.text
        empty = requests.get(rig.server.url + "/status.json", timeout=10).json()
        assert empty["groups"] == [] and empty["overall"] == "unknown"


def test_public_json_is_built_once_per_interval(tmp_path: Path) -> None:
    with page_rig(tmp_path) as rig:
        rig.add("api", "/ok", checks=1, public=True)
        first = requests.get(rig.server.url + "/status.json", timeout=10)
        again = requests.get(rig.server.url + "/status.json", timeout=10)
        assert first.headers["Cache-Control"] == "public, max-age=5"
        # An open URL: a crowd asking costs one build per interval, not one per request.
        assert again.json()["generated_at"] == first.json()["generated_at"]
