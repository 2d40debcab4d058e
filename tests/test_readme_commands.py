"""The README's commands run as printed, so they cannot rot.

The commands of "Running it as a service" and the Python of "Quick start" run, one by one,
against a running demo (``crackseg-monitor demo``), from the repository's folder, as a
newcomer would after ``make run``. The suite never binds a fixed port, so the demo takes a free
one and the ports the README names (8080 the demo, 8090 the example service, 8000 its nginx)
are replaced by free ones in the commands and in a copy of ``examples/monitor.yaml`` (whose
store then lives in a temporary folder); a command that finds the demo on its default address
gets it from ``CRACKSEG_MONITOR_URL`` instead. Nothing else changes. ``make run`` itself is the demo
(tests/service/test_demo.py) and ``make test`` is this suite.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crackseg.utils.deployment.service.config import load_config
from tests.support.demo import Demo, start_demo, stop_demo
from tests.support.procs import stop_group
from tests.support.wait import free_port

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
EXAMPLE = ROOT / "examples" / "monitor.yaml"
ALERTING = ROOT / "examples" / "alerting.yaml"
RUNNERS = (".venv/bin/crackseg-monitor", "curl ")
UNTIL_CTRL_C = "runs until Ctrl-C"


def sections() -> dict[str, str]:
    parts = re.split(r"^## (.+)$", README, flags=re.M)
    return {"": parts[0], **{parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}}


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.M | re.S)


def commands(section: str) -> list[str]:
    return [line for b in blocks(sections()[section], "bash") for line in b.splitlines() if line]


def test_the_readme_opens_with_make_run_and_make_test() -> None:
    first = blocks(README, "bash")[0].splitlines()
    assert [line.split()[:2] for line in first] == [["make", "run"], ["make", "test"]]
    assert README.index("make run") < README.index("## ")


def test_every_shell_command_is_one_this_test_runs() -> None:
    # A command added to the README must be runnable by the test below (or be make run/test).
    for name, text in sections().items():
        for block in blocks(text, "bash"):
            for line in block.splitlines():
                if name == "" and line.startswith("make "):
                    continue
                assert line.startswith(RUNNERS), f"README ({name or 'top'}): {line!r}"
    assert commands("Running it as a service")


def test_the_example_file_validates_without_secrets_and_alerting_names_its_secret(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SLACK_WEBHOOK_URL"}
    cli = str(Path(sys.executable).with_name("crackseg-monitor"))
    ok = subprocess.run([cli, "validate", str(EXAMPLE)], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([cli, "validate", str(ALERTING)], env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "SLACK_WEBHOOK_URL is not set" in bad.stderr
    env["SLACK_WEBHOOK_URL"] = "https://hooks.slack.com/services/T000/B000/XXXX"
    env["MONITOR_DB"] = str(tmp_path / "a.db")
    good = subprocess.run([cli, "validate", str(ALERTING)], env=env, capture_output=True, text=True)
    assert good.returncode == 0, good.stderr


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    d = start_demo("--port", str(free_port()))
    try:
        d.url = d.wait_for(r"status page: (http://127\.0\.0\.1:\d+)/", 60).group(1)
        yield d
    finally:
        assert stop_demo(d) == 0


def _ports(demo: Demo) -> dict[str, str]:
    return {"8080": demo.url.rsplit(":", 1)[1], "8090": str(free_port()), "8000": str(free_port())}


def _substitute(text: str, ports: dict[str, str], example: Path | None = None) -> str:
    text = re.sub(r"\b(8080|8090|8000)\b", lambda m: ports[m.group(1)], text)
    if example is not None:
        text = text.replace("examples/monitor.yaml", str(example))
    return text


# The README's commands deploy through nginx and call curl.
def test_the_service_commands_run_as_printed(
    demo: Demo, tmp_path: Path, nginx_bin: str, curl_bin: str
) -> None:
    ports = _ports(demo)
    example = tmp_path / "monitor.yaml"
    example.write_text(_substitute(EXAMPLE.read_text(), ports))
    assert load_config(example).store_path().parent == tmp_path  # its history stays in tmp
    with contextlib.ExitStack() as services:
        # A command that runs until Ctrl-C serves the commands after it (deploy asks it),
        # then gets its Ctrl-C.
        _run_commands(demo, ports, example, services)


def _run_commands(
    demo: Demo, ports: dict[str, str], example: Path, services: contextlib.ExitStack
) -> None:
    for line in commands("Running it as a service"):
        cmd = _substitute(line, ports, example)
        if UNTIL_CTRL_C in line:
            services.enter_context(_run_until_ready(cmd))
            continue
        t0 = time.monotonic()
        env = dict(os.environ)
        if " -c " not in f" {cmd.split('#')[0]} ":
            env["CRACKSEG_MONITOR_URL"] = demo.url  # the default address, on its free port
        done = subprocess.run(
            ["bash", "-c", cmd], cwd=ROOT, capture_output=True, text=True, timeout=100, env=env
        )
        assert done.returncode == 0, f"{line}\n-> {cmd}\n{done.stdout}\n{done.stderr}"
        assert time.monotonic() - t0 < 100


@contextlib.contextmanager
def _run_until_ready(cmd: str) -> Iterator[None]:
    # Its log goes to a file: a pipe nobody reads while later commands run would fill and
    # block the service.
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {cmd}"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # "serving on http://..." once it listens
            assert line.startswith("serving on http://127.0.0.1:"), (line, cmd)
            yield
            proc.send_signal(signal.SIGINT)  # Ctrl-C
            code = proc.wait(60)
            log.seek(0)
            assert code == 0, log.read()[-4000:]
        finally:
            stop_group(proc, signal.SIGKILL)
            if proc.stdout is not None:
                proc.stdout.close()


def test_the_quick_start_python_runs_as_printed(demo: Demo, tmp_path: Path) -> None:
    ports = _ports(demo)
    code_blocks = blocks(sections()["Quick start (the spec's API)"], "python")
    assert len(code_blocks) >= 2
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for code in code_blocks:
        done = subprocess.run(
            [sys.executable, "-c", _substitute(code, ports)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert done.returncode == 0, f"{code}\n{done.stdout}\n{done.stderr}"
        assert re.search(r"^(unknown|healthy)$", done.stdout, flags=re.M), done.stdout
    assert (tmp_path / "outputs" / "monitoring_data.json").exists()
    shutil.rmtree(tmp_path / "outputs")
