"""A pytest plugin (``-p tests.support.collection_report``) that writes, for every collected
test, its fixture closure and its markers to the JSON file named by ``CRACKSEG_COLLECTION_REPORT``.
The test of the ``service`` marker reads it from a child pytest."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest


def pytest_collection_finish(session: pytest.Session) -> None:
    out = os.environ.get("CRACKSEG_COLLECTION_REPORT")
    if not out:
        return
    report = {
        item.nodeid: {
            "fixtures": sorted(getattr(item, "fixturenames", ())),
            "markers": sorted({m.name for m in item.iter_markers()}),
        }
        for item in session.items
    }
    Path(out).write_bytes(orjson.dumps(report))
