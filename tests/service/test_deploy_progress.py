"""`crackseg-monitor deploy` shows the judge's evidence beside each window's progress."""

from __future__ import annotations

import io

from crackseg.utils.deployment.service.supervisor import WindowProgress


def test_window_lines_carry_the_latest_evidence() -> None:
    lines: list[str] = []
    bars = WindowProgress(io.StringIO(), lines.append)  # not a terminal: lines per quarter
    bars.update("canary 50%", 1.0, 10.0)
    bars.evidence("canary 50%", "inconclusive (gathering, two-sample): canary 0/40 errors")
    bars.update("canary 50%", 3.0, 10.0)
    bars.evidence("canary 50%", "passed (safe, two-sample): canary 1/180 errors")
    bars.update("canary 50%", 10.0, 10.0)
    assert lines == [
        "  canary 50%: 25% of 10 s; inconclusive (gathering, two-sample): canary 0/40 errors",
        "  canary 50%: 100% of 10 s; passed (safe, two-sample): canary 1/180 errors",
    ]
    bars.finish()
    bars.update("canary 50%", 3.0, 10.0)  # the next rollout's window starts bare
    assert lines[-1] == "  canary 50%: 25% of 10 s"
