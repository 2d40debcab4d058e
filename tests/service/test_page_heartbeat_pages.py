"""The status page follows ``next_cursor`` of ``/api/v1/heartbeats``: with more deployments
than one page holds (1,001 against pages of 1,000), the deployment sorted last, on the
second page, still gets its heartbeat ticks, in a real headless Chromium."""

from __future__ import annotations

from pathlib import Path

from tests.support.cdp import Browser
from tests.support.page_rig import page_rig


async def test_the_page_reads_every_page_of_heartbeats(tmp_path: Path, chromium_bin: str) -> None:
    with page_rig(tmp_path) as rig:
        for i in range(1_000):
            # Checked once an hour: enough to be listed, little load on a shared machine.
            rig.monitor.add_deployment_monitoring(
                f"a{i:04d}", rig.target.url("/ok"), check_interval=3600
            )
        rig.add("zz-last", "/bad", checks=2)  # sorted last: only on the second page
        async with Browser(chromium_bin, tmp_path / "profile") as browser:
            page = await browser.page(rig.server.url + "/", width=1400, dark=False)
            await page.wait_for("document.body.dataset.loaded === 'true'", timeout=60.0)
            assert await page.js("Object.keys(state.beats).length") == 1_001
            ticks = await page.wait_for(
                "document.querySelectorAll('.hb[data-deployment-id=\"zz-last\"] .tick:not(.tick-none)').length",
                timeout=30.0,
            )
            assert ticks >= 2
