"""A SIGHUP reload that fails or hangs never stops SIGTERM from stopping the service."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.support.config_files import alias_bomb
from tests.support.service_helpers import running
from tests.support.wait import poll


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(
        "deployments:\n  - id: api\n    url: http://127.0.0.1:9/health\n    check_interval: 1\n"
        "store:\n  path: history.db\nserver:\n  port: 0\n"
    )
    return path


def _stops_within(svc: object, seconds: float) -> float:
    t0 = time.monotonic()
    svc.signal(signal.SIGTERM)  # type: ignore[attr-defined]
    assert svc.wait(seconds + 10) == 0  # type: ignore[attr-defined]
    took = time.monotonic() - t0
    assert took < seconds, took
    return took


def test_alias_bomb_reload_is_rejected_and_sigterm_still_stops(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    with running("run", "-c", str(cfg)) as svc:
        svc.url()
        cfg.write_text(alias_bomb())
        svc.signal(signal.SIGHUP)
        line = svc.wait_log("alias bomb", timeout=10)
        assert str(cfg) in line
        svc.wait_log("rejected, keeping the running configuration")
        _stops_within(svc, 2.0)


def test_a_reload_that_hangs_never_delays_the_stop(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    with running("run", "-c", str(cfg)) as svc:
        svc.url()
        # Reading a FIFO nobody writes to blocks forever: a stand-in for a dead network mount.
        cfg.unlink()
        os.mkfifo(cfg)
        svc.signal(signal.SIGHUP)
        # Opening the write end succeeds once the service's reload has the FIFO open for
        # reading; kept open (and silent), it keeps that read blocked.
        fd = poll(lambda: _open_writer(cfg), timeout=10)
        assert fd, "the reload never opened the file"
        try:
            _stops_within(svc, 2.0)
        finally:
            os.close(fd)


def _open_writer(path: Path) -> int | None:
    try:
        return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return None
