"""The status page in headless Chromium, driven like a person would (DevTools protocol): at a
desktop and a phone width, light and dark. It reads the heartbeat ticks and their tip, an
incident row, a range change and its hover read-out, a badge, creates and expires a silence
from the page, and checks the public view shows nothing private."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from crackseg.utils.deployment.delivery.channels.log import LoggingAlertHandler
from tests.support.cdp import Browser, Page
from tests.support.page_rig import URL_SECRET, PageRig, page_rig

TOKEN = "page-token-0b7d4e"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
VARIANTS = [pytest.param(1400, False, id="desktop-light"), pytest.param(390, True, id="phone-dark")]


def _fleet(rig: PageRig) -> None:
    rig.target.set("/slow", status=200, body='{"status": "healthy"}', delay=0.03)
    rig.add("api-gateway", "/ok", checks=3, group="Platform", public=True)
    # Then one check an hour: its bar keeps fewer checks than places (the empty "none" ticks
    # read below) however long the rest takes. At 0.3 s a phone's 21 places filled in 6 s,
    # which a loaded machine spent on the fleet and the browser before the page was read.
    rig.add("api-gateway", "/ok", checks=0, group="Platform", public=True, check_interval=3600)
    rig.add("auth", "/slow", checks=3, group="Platform", public=True)
    rig.add("segmenter-v2", "/ok", checks=3, group="Model team", public=True)
    rig.add("thumbnailer", "/bad", checks=3, group="Model team", public=True)
    rig.add("legacy-batch", "/deg", checks=3)
    now = time.time()
    rig.backfill("segmenter-v2", now - 8 * 86_400, now - 30)


def _keep(shot: Path, name: str) -> None:
    # A test run must not dirty the tree; CRACKSEG_UPDATE_SCREENSHOTS=1 refreshes the docs.
    if os.environ.get("CRACKSEG_UPDATE_SCREENSHOTS") != "1":
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    tmp = SHOTS / f".{name}.{os.getpid()}.tmp"
    shutil.copyfile(shot, tmp)
    os.replace(tmp, SHOTS / name)


async def _key(page: Page, key: str) -> None:
    for kind in ("keyDown", "keyUp"):
        await page.call("Input.dispatchKeyEvent", type=kind, key=key, code=key,
                        windowsVirtualKeyCode={"ArrowLeft": 37, "ArrowRight": 39}[key])  # fmt: skip


async def _sign_in(page: Page) -> None:
    await page.wait_for("!document.getElementById('token-form').hidden")
    await page.js(
        f"document.getElementById('token-input').value = {json.dumps(TOKEN)};"
        "document.querySelector('#token-form button').click(); true"
    )
    await page.wait_for("document.body.dataset.loaded === 'true'")


@pytest.mark.parametrize(("width", "dark"), VARIANTS)
async def test_private_page_heartbeats_incidents_ranges_badges_silences(
    tmp_path: Path, chromium_bin: str, width: int, dark: bool
) -> None:
    with page_rig(tmp_path, token=TOKEN, protect_reads=True) as rig:
        rig.monitor.add_alert_handler(LoggingAlertHandler(key="ops-log"))
        _fleet(rig)
        async with Browser(chromium_bin, tmp_path / "profile") as browser:
            page = await browser.page(rig.server.url + "/", width=width, dark=dark)
            await _sign_in(page)
            bg = await page.js("getComputedStyle(document.body).backgroundColor")
            assert (bg == "rgb(15, 20, 27)") is dark, bg

            # Heartbeats, grouped: the newest tick is the last check.
            ticks = await page.wait_for(
                "(() => { const o = {}; for (const tr of document.querySelectorAll('tr.row'))"
                " o[tr.dataset.deploymentId] = [...tr.querySelectorAll('.tick')]"
                ".map(t => t.dataset.status); return o.thumbnailer && o.thumbnailer.length ? o : null })()"
            )
            assert set(ticks) == {"api-gateway", "auth", "segmenter-v2", "thumbnailer",
                                  "legacy-batch"}  # fmt: skip
            assert ticks["thumbnailer"][-3:] == ["unhealthy"] * 3
            assert ticks["legacy-batch"][-1] == "degraded"
            assert (
                ticks["api-gateway"][-3:] == ["healthy"] * 3 and ticks["api-gateway"][0] == "none"
            )
            # A bar has as many places at every row; the missing ones lead, as "none".
            bars = await page.js(
                "[...document.querySelectorAll('.hb')].map(b => [b.dataset.deploymentId,"
                " [...b.querySelectorAll('.tick')].map(t => t.dataset.status),"
                " state.beats[b.dataset.deploymentId].t.length])"
            )
            assert len({len(shown) for _, shown, _ in bars}) == 1, bars
            shown, checks = next((s, n) for dep, s, n in bars if dep == "api-gateway")
            assert shown == ["none"] * (len(shown) - checks) + ["healthy"] * checks, (shown, checks)
            assert set(ticks["segmenter-v2"]) <= {"healthy", "degraded", "unhealthy"}
            groups = await page.js(
                "[...document.querySelectorAll('tr.group-row')].map(r => r.dataset.group)"
            )
            assert groups == ["Model team", "Platform", ""]

            # Hover, then the keyboard: the tip tells the check.
            await page.js(
                "const t = [...document.querySelectorAll('tr[data-deployment-id=thumbnailer] .tick')]"
                ".pop(); t.dispatchEvent(new MouseEvent('mouseover', {bubbles: true})); true"
            )
            tip = await page.js("document.getElementById('hb-tip').textContent")
            assert "unhealthy" in tip and "HTTP 500" in tip and " ms" in tip
            await page.js(
                "document.querySelector('tr[data-deployment-id=api-gateway] .hb').focus(); true"
            )
            active = (
                "document.querySelector('tr[data-deployment-id=api-gateway] .tick.active')"
                ".dataset.time + '|' + document.getElementById('hb-tip').textContent"
            )
            newest = await page.js(active)
            await _key(page, "ArrowLeft")
            older = await page.js(active)
            # Checks 0.3 s apart can read alike to the second: the tick's own time tells them apart.
            assert "healthy" in newest and "healthy" in older
            assert float(older.split("|")[0]) < float(newest.split("|")[0])
            # The page's refresh redraws every bar: the keyboard user keeps their place.
            await page.js("refresh().then(() => true)")
            assert await page.js("document.activeElement.dataset.deploymentId") == "api-gateway"
            assert await page.js(active) == older

            # An incident row of the timeline.
            row = await page.wait_for(
                "(() => { const r = document.querySelector('#incident-rows"
                " tr[data-incident-deployment=thumbnailer][data-alert-type=health_check_failed]');"
                " return r && r.textContent })()"
            )
            assert "Health check failed" in row and "ongoing" in row
            told = await page.js(
                "document.querySelector('#incident-rows tr[data-incident-deployment=thumbnailer]"
                "[data-alert-type=health_check_failed] td.notified').textContent"
            )
            assert told == "ops-log", "the row says who was notified"

            # A deployment's view: a range change redraws from the server's buckets.
            await page.js("location.hash = '#/deployments/segmenter-v2'; true")
            await page.wait_for("document.getElementById('range-summary').dataset.range === '24h'")
            await page.js("document.querySelector('.range-btn[data-range=\"7d\"]').click(); true")
            await page.wait_for("document.getElementById('range-summary').dataset.range === '7d'")
            assert (
                await page.js("document.getElementById('range-summary').dataset.buckets") == "336"
            )
            assert "range=7d" in await page.js("location.hash")
            summary = await page.js("document.getElementById('range-summary').textContent")
            assert "checks" in summary and "up" in summary
            box = await page.js(
                "(() => { const r = document.getElementById('chart-range').getBoundingClientRect();"
                " window.scrollTo(0, r.top + scrollY - 100);"
                " const q = document.getElementById('chart-range').getBoundingClientRect();"
                " return [q.left + q.width * 0.5, q.top + q.height * 0.4] })()"
            )
            await page.call("Input.dispatchMouseEvent", type="mouseMoved", x=box[0], y=box[1])
            readout = await page.wait_for("document.getElementById('range-readout').textContent")
            assert "checks" in readout and "mean" in readout and "p95" in readout

            # Zoom: a drag across the chart shows only those buckets; a refresh keeps them;
            # a double-click shows the whole range again.
            edges = await page.js(
                "(() => { const q = document.getElementById('chart-range').getBoundingClientRect();"
                " return [q.left + q.width * 0.3, q.left + q.width * 0.6, q.top + q.height * 0.4,"
                " q.left + 46.5] })()"  # just right of the value axis (46 px)
            )
            x0, x1, yy, left = edges
            for kind, x in (("mousePressed", x0), ("mouseMoved", x1), ("mouseReleased", x1)):
                await page.call("Input.dispatchMouseEvent", type=kind, x=x, y=yy,
                                button="left", buttons=1 if kind != "mouseReleased" else 0,
                                clickCount=1)  # fmt: skip
            zoomed = await page.wait_for(
                "document.getElementById('chart-range').dataset.zoomBuckets !== '336'"
                " && document.getElementById('chart-range').dataset.zoom"
            )
            lo, hi = (int(v) for v in zoomed.split("-"))
            assert 60 < hi - lo + 1 < 130, zoomed  # ~30% of 336 buckets, less the axis margin
            count = "document.getElementById('chart-range').dataset.zoomBuckets"
            assert await page.js(count) == str(hi - lo + 1)
            await page.call("Input.dispatchMouseEvent", type="mouseMoved", x=left, y=yy)
            first = await page.wait_for("document.getElementById('range-readout').dataset.bucket")
            assert first == "0", "the zoomed chart starts at the drag's first bucket"
            readout = await page.js("document.getElementById('range-readout').textContent")
            assert "checks" in readout
            await page.js("refresh().then(() => true)")
            assert await page.js("document.getElementById('chart-range').dataset.zoom") == zoomed
            for kind, clicks in (("mousePressed", 1), ("mouseReleased", 1),
                                 ("mousePressed", 2), ("mouseReleased", 2)):  # fmt: skip
                await page.call("Input.dispatchMouseEvent", type=kind, x=x1, y=yy,
                                button="left", clickCount=clicks)  # fmt: skip
            await page.wait_for("document.getElementById('chart-range').dataset.zoom === ''")
            assert await page.js(count) == "336"
            incidents = await page.js("document.getElementById('detail-incidents').textContent")
            assert "No incident recorded for segmenter-v2" in incidents

            # Its badges: a public deployment's, drawn and readable.
            badge = await page.js("fetch('/badges/segmenter-v2/health.svg').then(r => r.text())")
            assert ">health<" in badge and ">healthy<" in badge
            await page.wait_for(
                "[...document.querySelectorAll('#detail-badges img')].every(i => i.naturalWidth > 0)"
                " && document.querySelectorAll('#detail-badges img').length === 3"
            )

            # A silence made on the page, then expired from it.
            await page.js(
                "document.getElementById('silence-deployment').value = 'legacy-batch';"
                "document.getElementById('silence-comment').value = 'moving to v3';"
                "document.querySelector('#silence-form button').click(); true"
            )
            held = await page.wait_for(
                "(() => { const r = document.querySelector("
                "'#silence-rows tr[data-silence-deployment=legacy-batch]'); return r && r.textContent })()"
            )
            assert "moving to v3" in held and "health check failed" in held
            made = rig.silences.list()
            assert [(s.deployment_id, s.comment, s.created_by) for s in made] == [
                ("legacy-batch", "moving to v3", "status page")]  # fmt: skip
            await page.js("window.scrollTo(0, 0); true")
            shot = await page.screenshot(tmp_path / "page.png")
            assert shot[:8] == b"\x89PNG\r\n\x1a\n"
            _keep(tmp_path / "page.png", f"status_page_{'phone_dark' if dark else 'desktop'}.png")
            await page.js(
                "document.querySelector('#silence-rows button[data-silence-id]').click(); true"
            )
            await page.wait_for("!document.querySelector('#silence-rows tr[data-silence]')")
            assert rig.silences.list() == []
            assert URL_SECRET not in await page.js("document.documentElement.outerHTML")


@pytest.mark.parametrize(("width", "dark"), VARIANTS)
async def test_public_view_shows_status_and_nothing_private(
    tmp_path: Path, chromium_bin: str, width: int, dark: bool
) -> None:
    with page_rig(tmp_path, token=TOKEN, protect_reads=True) as rig:
        _fleet(rig)
        async with Browser(chromium_bin, tmp_path / "profile") as browser:
            page = await browser.page(rig.server.url + "/status", width=width, dark=dark)
            await page.wait_for("document.body.dataset.loaded === 'true'")
            rows = await page.js(
                "[...document.querySelectorAll('.public-list li')].map(li => [li.dataset.deploymentId,"
                " li.dataset.status, [...li.querySelectorAll('.tick')].map(t => t.dataset.status).pop()])"
            )
            assert rows == [
                ["segmenter-v2", "healthy", "healthy"], ["thumbnailer", "unhealthy", "unhealthy"],
                ["api-gateway", "healthy", "healthy"], ["auth", "healthy", "healthy"],
            ]  # fmt: skip
            groups = await page.js(
                "[...document.querySelectorAll('.public-group')].map(g => g.dataset.group)"
            )
            assert groups == ["Model team", "Platform"]
            assert (
                await page.js("document.getElementById('overall').dataset.overall") == "unhealthy"
            )
            incidents = await page.wait_for(
                "[...document.querySelectorAll('#public-incidents li[data-incident]')]"
                ".map(li => li.textContent).join('|')"
            )
            assert "thumbnailer · Service unavailable" in incidents
            dom = await page.js("document.documentElement.outerHTML")
            data = await page.js("fetch('/status.json').then(r => r.text())")
            for text in (dom, data):
                for private in ("legacy-batch", URL_SECRET, "127.0.0.1", "HTTP 500", "user:",
                                "CPU", "cpu_usage", "memory", "last_error", "response_time"):  # fmt: skip
                    assert private not in text, f"{private!r} is on the public view"
            shot = await page.screenshot(tmp_path / "public.png")
            assert shot[:8] == b"\x89PNG\r\n\x1a\n"
            _keep(
                tmp_path / "public.png", f"public_status_{'phone_dark' if dark else 'desktop'}.png"
            )
