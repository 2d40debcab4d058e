"""`crackseg-monitor deploy` shows the judge's evidence beside each window's progress."""

from __future__ import annotations

import io

import pytest

from crackseg.utils.deployment.service.cli.deploy import WindowProgress, _show


def test_window_lines_carry_the_latest_evidence(capsys: pytest.CaptureFixture[str]) -> None:
    bars = WindowProgress(io.StringIO())  # not a terminal: a line per quarter
    bars.update("canary 50%", 1.0, 10.0)
    _show("evidence", {"label": "canary 50%", "text": "inconclusive (gathering): 0/40"}, bars, 0)
    bars.update("canary 50%", 3.0, 10.0)
    bars.evidence("canary 50%", "passed (safe, two-sample): canary 1/180 errors")
    bars.update("canary 50%", 10.0, 10.0)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "  canary 50%: 25% of 10 s; inconclusive (gathering): 0/40",
        "  canary 50%: 100% of 10 s; passed (safe, two-sample): canary 1/180 errors",
    ]


def test_a_gate_step_prints_its_evidence_as_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    bars = WindowProgress(io.StringIO())
    step = {
        "step": "canary 10%", "at": 1.0, "verdict": "failed", "judge_verdict": "failed",
        "judge_code": "worse_errors", "alpha": 0.01,
        "evidence": {"mode": "two-sample", "canary": {"requests": 300, "errors": 9},
                     "stable": {"requests": 290, "errors": 0}, "p_value": 0.004},
    }  # fmt: skip
    _show("step", step, bars, 0.0)
    text = capsys.readouterr().out
    assert "canary 10%: verdict=failed" in text and "alpha" not in text
    assert "evidence: failed (worse_errors, two-sample): canary 9/300 errors" in text
