"""Hostile configuration files: refused fast, by file and position, with short messages."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from crackseg.utils.deployment.service.config import ConfigFileError, load_config
from tests.support.config_files import alias_bomb
from tests.support.service_helpers import cli


def _refused(path: Path) -> tuple[str, str, float]:
    t0 = time.monotonic()
    with pytest.raises(ConfigFileError) as info:
        load_config(path)
    took = time.monotonic() - t0
    assert len(info.value.problems) == 1, info.value.problems
    where, what = info.value.problems[0]
    assert where.startswith(str(path)), where  # names the file
    return where, what, took


def test_alias_bomb_is_refused_in_under_a_second(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    assert len(path.read_bytes()) < 600
    where, what, took = _refused(path)
    assert took < 1.0
    assert "aliases expand to more than 200,000 values" in what
    assert "line " in where


def test_a_smaller_bomb_gives_short_messages(tmp_path: Path) -> None:
    # Expands to ~60,000 values: within the bound, and every problem line stays short.
    path = tmp_path / "small-bomb.yaml"
    path.write_text(alias_bomb(5))
    with pytest.raises(ConfigFileError) as info:
        load_config(path)
    text = str(info.value)
    assert max(len(line) for line in text.splitlines()) <= 600
    assert len(text) < 20_000


def test_long_values_are_cut(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    path.write_text(
        "deployments:\n  - id: api\n    url: http://127.0.0.1:1/h\n"
        f"    check_interval: [{', '.join(['1'] * 5000)}]\n"
        f"    {'k' * 1000}: 1\n"
    )
    with pytest.raises(ConfigFileError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert all(len(line) <= 510 for line in lines), [len(line) for line in lines]
    assert lines[0].startswith("deployments[0].check_interval: must be a number, got [1, 1,")
    assert "..." in lines[0]


def test_deep_nesting_names_the_position(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("deployments: " + "[" * 5000 + "]" * 5000 + "\n")
    where, what, took = _refused(path)
    assert what == "invalid YAML: nested deeper than 64 levels"
    assert where == f"{path}, line 1, column 77"
    assert took < 1.0


def test_self_referring_alias(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("deployments: &d [*d]\n")
    _, what, _ = _refused(path)
    assert "refers to itself" in what


def test_undecodable_bytes_name_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"deployments:\n  - id: caf\xe9\n    url: http://127.0.0.1:1/h\n")
    where, what, _ = _refused(path)
    assert where == f"{path}, line 2, column 12"
    assert what == "not UTF-8 text (byte 0xe9); save the file as UTF-8"


def test_control_characters_name_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "nul.yaml"
    path.write_bytes(b"deployments: []\nlog_level: in\x00fo\n")
    where, what, _ = _refused(path)
    assert where == f"{path}, line 2, column 14"
    assert "character #x0000 is not allowed" in what


def test_huge_file_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * (2 * 1024 * 1024) + "\n")
    where, what, _ = _refused(path)
    assert where == str(path) and "larger than 1024 KiB" in what


def test_validate_refuses_the_bomb_quickly(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    t0 = time.monotonic()
    r = cli("validate", str(path), timeout=30)
    assert r.returncode != 0
    assert time.monotonic() - t0 < 15  # a Python start-up included, on a busy machine
    assert str(path) in r.stderr and "alias bomb" in r.stderr
    assert "Traceback" not in r.stderr
