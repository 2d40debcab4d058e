"""The CLI prints text from peers, the API and the store as written: a ``[`` in a redirect
Location, a silence comment or a stored error is text, never console markup."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.httpd import Httpd, QuietHandler
from tests.support.service_helpers import cli, get_json, running, wait_until

#: Would hide its target behind "click" if read as markup.
LINK = "/[link=https://evil.example/]click[/link]"
#: Would raise MarkupError if read as markup.
CLOSING = "/next[/red]x"


class Redirector:
    """A real HTTP server answering every GET with 302 to :attr:`location`."""

    def __init__(self, location: str) -> None:
        self.location = location
        owner = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                self.send_response(302)
                self.send_header("Location", owner.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = Httpd(Handler)
        self.url = self.httpd.url()

    def close(self) -> None:
        self.httpd.close()


@pytest.fixture
def redirector() -> Iterator[Redirector]:
    r = Redirector(CLOSING)
    yield r
    r.close()


def test_check_prints_a_redirect_location_as_written(redirector: Redirector) -> None:
    r = cli("check", redirector.url, "--timeout", "5")
    assert r.returncode == 1, r.stderr
    assert CLOSING in r.stdout and "Error" not in r.stderr
    redirector.location = LINK
    r = cli("check", redirector.url, "--timeout", "5")
    assert r.returncode == 1, r.stderr
    assert LINK in r.stdout  # the target shows, not just "click"


def test_silence_list_status_and_history_print_peer_text_as_written(
    tmp_path: Path, redirector: Redirector
) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        f"deployments:\n  - id: api\n    url: {redirector.url}\n    check_interval: 0.1\n"
        "store:\n  path: history.db\n  flush_interval: 0.1\nserver:\n  port: 0\n"
    )
    with running("run", "-c", str(cfg)) as svc:
        url = svc.url()

        def checked() -> bool:
            (row,) = get_json(f"{url}/api/v1/deployments")["deployments"]
            return int(row["total_checks"]) >= 2

        wait_until(checked, what="two checks")
        comment = "see [/bold] and [link=https://evil.example/]here[/link] :smile:"
        r = cli(
            "silence", "add", "--deployment", "api", "--duration", "10m",
            "--comment", comment, "--url", url,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        r = cli("silence", "list", "--url", url, COLUMNS="400")
        assert r.returncode == 0, r.stderr
        assert comment in r.stdout, r.stdout
        r = cli("status", "--url", url)
        assert r.returncode == 0 and "api" in r.stdout, r.stderr
        svc.signal(signal.SIGTERM)
        assert svc.wait() == 0
    r = cli("history", "api", "-c", str(cfg), "--limit", "3", COLUMNS="400")
    assert r.returncode == 0, r.stderr
    assert CLOSING in r.stdout, r.stdout


def test_the_cli_gives_up_on_a_service_dripping_its_answer() -> None:
    """The API client's deadline covers the whole answer, not each read."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not stop.wait(0.2):
                try:
                    conn.sendall(b"a")
                except OSError:
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        r = cli("silence", "list", "--url", url, timeout=60)
        took = time.monotonic() - started
        assert r.returncode == 1 and "timed out" in r.stderr, r.stderr
        assert took < 2 * 5.0 + 8  # twice the 5 s timeout, plus the interpreter's start
    finally:
        stop.set()
        listener.close()
        thread.join(5)
