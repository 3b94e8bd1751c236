"""The README's screenshot of the HTML attendance report (docs/reports.md, "Formats").

    .venv/bin/python scripts/screenshot_report.py [--now 2026-12-04T10:30] [--out FILE]

Generates the CURRENT month of a 14-person hall up to now (``bench/reports.py``'s generator:
the last person joins during the month and a 补卡 of one slot corrects their first punch),
writes it to a throw-away SQLite store, renders ``report attendance --format html`` as of now
(so today is 未判定 and later days are empty) and photographs it in headless Chromium
(Debian's ``chromium``) at 1280 px wide over the DevTools protocol. The person joins on the
last working day before today, so the picture keeps one size whatever the day: it is an
excerpt of the rendered page, the title, the heat map (the joiner's empty days, today grey),
每日明细 from the joiner's first day (the one-slot 补卡) to today (未判定) with the earlier
days folded into one row, and 请假与更正; 按星期统计迟到次数, 月度汇总, 工作日历 and the
notes are left out of the picture. ``--now`` pins the moment (the hall's local time), so a
given day's picture can be made again; the data come from a fixed seed.

Refuses (exit 1, nothing written) when the page is wider than the window or a table has to
scroll inside its box: the picture would cut it off at the right edge.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import shutil
import subprocess
import sys
import tempfile
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.reports import generate, load  # noqa: E402
from central.reports import build, render  # noqa: E402
from central.reports.month import Month  # noqa: E402
from central.store import open_store  # noqa: E402
from contract.schedule import Schedule  # noqa: E402
from scripts.cdp import Cdp, CdpError, headless_chromium  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")  # the hall's timezone ([central] timezone's default)
WIDTH = 1280
STAFF, WINDOWS, RATINGS, LEAVES = 14, 8, 40, 6
# What the picture leaves out (docs/reports.md, Formats): the sections below, and the days of
# 每日明细 before firstDay (the joiner's first day), folded into one row that says so.
EXCERPT_JS = """
(firstDay => {
  const sections = [...document.querySelectorAll('h2')];
  const section = name => sections.find(h => h.textContent === name);
  for (const name of ['按星期统计迟到次数', '月度汇总', '工作日历']) {
    const h = section(name);
    h.nextElementSibling.style.display = 'none';
    h.style.display = 'none';
  }
  document.querySelectorAll('.notes').forEach(e => { e.style.display = 'none'; });
  const body = section('每日明细').nextElementSibling.querySelector('tbody');
  const earlier = [...body.rows].filter(r => r.cells[0].textContent < firstDay);
  earlier.forEach(r => { r.style.display = 'none'; });
  if (earlier.length) {
    const row = body.insertRow(0);
    const cell = row.insertCell();
    cell.colSpan = body.rows[1].cells.length;
    cell.style.color = '#888';
    cell.textContent = `⋯ 截图省略 ${earlier[0].cells[0].textContent} 至 ` +
      `${earlier[earlier.length - 1].cells[0].textContent} 共 ${earlier.length} 行`;
  }
  const last = section('请假与更正').nextElementSibling.getBoundingClientRect();
  return Math.ceil(last.bottom + window.scrollY) + 16;
})
"""
PAGE_READY = "document.readyState === 'complete' && document.querySelectorAll('svg').length >= 2"


class ShotError(Exception):
    """The screenshot cannot be made; the message says why and what to do."""


def joiner_day(month: Month, now: datetime) -> date:
    """The last working day of the month before today: the joiner's first day (today when
    there is none), so the picture's part of 每日明细 runs from it to today."""
    schedule = Schedule()
    before = [d for d in month.days() if d < now.date() and schedule.working_day(d)[0]]
    return before[-1] if before else now.date()


def month_html(now: datetime, joins: date) -> bytes:
    """The attendance report of ``now``'s month as of ``now``, as a self-contained page."""
    month = Month(now.year, now.month, TZ)
    rows, roster, leave = generate(
        WINDOWS, STAFF, RATINGS, month=month, now=now, leaves=LEAVES, joins=joins
    )
    with tempfile.TemporaryDirectory() as tmp, open_store(f"sqlite:///{tmp}/hall.db") as store:
        load(store, rows, roster, leave)
        out = io.BytesIO()
        render(build("attendance", store, month, None, now=now), "html", out)
    return out.getvalue()


async def photograph(cdp: Cdp, page: Path, first_day: date) -> bytes:
    await cdp.call("Page.enable")
    await cdp.call(
        "Emulation.setDeviceMetricsOverride",
        width=WIDTH,
        height=1000,
        deviceScaleFactor=1,
        mobile=False,
    )
    await cdp.call("Page.navigate", url=page.as_uri())
    for _ in range(300):  # the charts draw after load: wait up to ~30 s (a wait, not a test)
        if await cdp.value(PAGE_READY):
            break
        await asyncio.sleep(0.1)
    else:
        raise ShotError(f"{page}: the charts were never drawn (is the page complete?)")
    await _check_fits(cdp)
    bottom = await cdp.value(f"{EXCERPT_JS}({json.dumps(first_day.isoformat())})")
    shot = await cdp.call(
        "Page.captureScreenshot",
        format="png",
        captureBeyondViewport=True,
        clip={"x": 0, "y": 0, "width": WIDTH, "height": bottom, "scale": 1},
    )
    return base64.b64decode(shot["data"])


async def _check_fits(cdp: Cdp) -> None:
    """Nothing may run off the right edge: neither the page nor a table inside its box."""
    page = await cdp.value("document.documentElement.scrollWidth")
    cut = await cdp.value(
        "[...document.querySelectorAll('.table-wrap')]"
        ".filter(w => w.scrollWidth > w.clientWidth)"
        ".map(w => w.previousElementSibling.textContent)"
    )
    if page > WIDTH or cut:
        raise ShotError(
            f"at {WIDTH} px the page is {page} px wide and these tables scroll: {cut or 'none'}; "
            "expected everything within the window (docs/reports.md, Formats: html)"
        )


def chromium_exe() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise ShotError("chromium not found; install it: apt-get install chromium fonts-noto-cjk")
    # Without a Chinese font the picture shows boxes for every label (as scripts/demo.sh warns).
    fc_list = shutil.which("fc-list")
    fonts = (
        subprocess.run([fc_list, ":lang=zh"], capture_output=True, text=True) if fc_list else None
    )
    if fonts is not None and not fonts.stdout.strip():
        raise ShotError(
            "no Chinese font installed (fc-list :lang=zh is empty); install one: "
            "apt-get install fonts-noto-cjk"
        )
    return exe


async def with_chromium(page: Path, profile: Path, first_day: date) -> bytes:
    with headless_chromium(chromium_exe(), profile, WIDTH, 1000) as url:
        async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
            return await photograph(Cdp(ws), page, first_day)


def parse_now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(TZ).replace(second=0, microsecond=0)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ShotError(
            f"--now: expected the hall's local time as YYYY-MM-DDTHH:MM "
            f"(e.g. 2026-12-04T10:30), got {text!r}"
        ) from None
    return moment.replace(tzinfo=TZ) if moment.tzinfo is None else moment.astimezone(TZ)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--now", help="the moment of the report, hall's local time (default: now)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "report-attendance.png")
    ap.add_argument("--html", type=Path, help="also keep the rendered HTML report here")
    args = ap.parse_args()
    try:
        now = parse_now(args.now)
        joins = joiner_day(Month(now.year, now.month, TZ), now)
        html = month_html(now, joins)
        with tempfile.TemporaryDirectory() as tmp:
            page = Path(tmp) / "report.html"
            page.write_bytes(html)
            png = asyncio.run(with_chromium(page, Path(tmp) / "chromium", joins))
    except (ShotError, CdpError) as exc:
        print(f"screenshot_report: {exc}", file=sys.stderr)
        return 1
    if args.html:
        args.html.write_bytes(html)
    args.out.write_bytes(png)
    print(f"{args.out}: {now:%Y-%m} as of {now:%Y-%m-%d %H:%M} ({now.tzname()}), {WIDTH} px wide")
    return 0


if __name__ == "__main__":
    sys.exit(main())
