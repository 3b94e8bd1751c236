"""The report formats read back by other programs: the csv module, openpyxl, Chromium.

The reports come from the hall CLI (``hall-central report``) over a hand-made month in a real
SQLite store (tests/test_reports.py has the numbers); here the question is whether each format
carries them intact: Chinese text, marks, one sheet per table, offline charts.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import re
import shutil
import subprocess
import sys
from datetime import date, datetime, time
from pathlib import Path

import aiohttp
import pytest

from central.reports import build
from central.reports import render as render_report
from central.reports.month import Month
from central.reports.table import display_width
from central.store import open_store
from scripts.cdp import HEADLESS_FLAGS
from tests import test_board, test_reports
from tests.conftest import require_or_skip
from tests.reportkit import Month as Events
from tests.reportkit import roster
from tests.test_board import Cdp
from tests.test_reports import NOW, TZ, write_october, write_ratings

# Fixtures shared with other modules: headless Chromium with DevTools, and a store on each of
# SQLite and PostgreSQL.
chromium = test_board.chromium
store = test_reports.store

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def conf(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reports")
    with open_store(f"sqlite:///{tmp}/hall.db") as store:
        write_october(store)
        write_ratings(store)
    path = tmp / "central.toml"
    path.write_text(f'[store]\nurl = "sqlite:///{tmp}/hall.db"\n')
    return path


def central(conf: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "central.cli", "-c", str(conf), *args],
        cwd=REPO,
        capture_output=True,
    )


def test_table_aligns_chinese_by_display_width(conf):
    r = central(conf, "report", "attendance", "--month", "2026-10")
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().splitlines()
    start = lines.index("== 月度汇总") + 1
    block = lines[start : lines.index("", start)]
    # Every row's 工号 column starts at the same display column as its heading.
    heading = block[0]
    col = display_width(heading[: heading.index("工号")])
    for line in block[1:]:
        sid = next(t for t in ("S001", "S002", "C001", "C002", "S009") if t in line)
        assert display_width(line[: line.index(sid)]) == col, line
    assert any("王芳" in line for line in block)


def test_csv_has_a_bom_and_reads_back(conf, tmp_path):
    out = tmp_path / "a.csv"
    r = central(
        conf, "report", "attendance", "--month", "2026-10", "--format", "csv", "--out", str(out)
    )
    assert r.returncode == 0, r.stderr.decode()
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert rows[0] == ["2026-10 考勤月报"]
    at = rows.index(["# 月度汇总"])
    header = rows[at + 1]
    by_id = {row[1]: dict(zip(header, row, strict=True)) for row in rows[at + 2 : at + 7]}
    assert by_id["S001"]["迟到(分钟)"] == "11" and by_id["S001"]["请假(天)"] == "0.5"
    assert by_id["C001"]["考勤规则"] == "每月≥4条: 未达标"
    assert ["# 每日明细"] in rows and ["# 请假与更正"] in rows and ["# 工作日历"] in rows


def test_xlsx_sheets_frozen_header_widths_and_marks(conf, tmp_path):
    from openpyxl import load_workbook

    out = tmp_path / "r.xlsx"
    r = central(
        conf, "report", "attendance", "--month", "2026-10", "--format", "xlsx", "--out", str(out)
    )
    assert r.returncode == 0, r.stderr.decode()
    book = load_workbook(out)
    assert book.sheetnames == [
        "月度汇总",
        "在岗与纪律",
        "每日明细",
        "请假与更正",
        "工作日历",
        "说明",
    ]
    daily = book["每日明细"]
    assert daily.freeze_panes == "A2"
    headers = [c.value for c in daily[1]]
    late = [
        row
        for row in daily.iter_rows(min_row=2)
        if row[headers.index("上午上班")].value == "08:41 迟到11分"
    ]
    assert len(late) == 1
    cell = late[0][headers.index("上午上班")]
    assert cell.fill.fgColor.rgb.endswith("FFE699")  # marked late
    assert late[0][headers.index("上午下班")].fill.fill_type is None
    assert daily.column_dimensions["A"].width >= 10  # "2026-10-08" fits
    cal = book["工作日历"]
    rows = {r[0].value: [c.value for c in r] for r in cal.iter_rows(min_row=2)}
    assert rows[datetime(2026, 10, 10)][2:4] == ["是", "调休上班"]
    assert rows[datetime(2026, 10, 1)][2:4] == ["否", "法定节假日 (国庆节)"]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render(html: Path, png: Path, tmp: Path, height: int = 1800) -> None:
    browser = _chromium()
    if browser is None:
        require_or_skip(
            "chromium not installed (apt-get install chromium; scripts/services.sh installs it)"
        )
    # Offline by construction: no network flags, and the page has nothing to fetch.
    subprocess.run(
        [
            browser,
            *HEADLESS_FLAGS,
            f"--user-data-dir={tmp / 'chromium'}",
            f"--window-size=1400,{height}",
            f"--screenshot={png}",
            html.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def _dump_dom(html: Path, tmp: Path) -> str:
    browser = _chromium()
    assert browser
    return subprocess.run(
        [
            browser,
            *HEADLESS_FLAGS,
            f"--user-data-dir={tmp / 'chromium-dom'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            html.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
        text=True,
    ).stdout


@pytest.mark.parametrize("kind", ["attendance", "ratings"])
def test_html_is_self_contained_and_draws_its_charts(conf, tmp_path, kind):
    out = tmp_path / f"{kind}.html"
    r = central(conf, "report", kind, "--month", "2026-10", "--format", "html", "--out", str(out))
    assert r.returncode == 0, r.stderr.decode()
    text = out.read_text("utf-8")
    assert "http://" not in text.split("<script>", 1)[0] and "<script src" not in text
    png = tmp_path / f"{kind}.png"
    render(out, png, tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dom = _dump_dom(out, tmp_path)
    # ECharts ran (SVG renderer): every chart div holds an <svg> with the data drawn.
    assert dom.count("<svg") >= 2
    if kind == "attendance":
        assert "王芳 S001" in dom  # a heat map row label
    else:
        assert "jiedong/A03" in dom and "puning/A03" in dom  # two windows, not one


def test_bad_month_and_site_are_usage_errors(conf):
    r = central(conf, "report", "ratings", "--month", "2026-13")
    assert r.returncode == 2 and "report ratings --month: expected YYYY-MM" in r.stderr.decode()
    r = central(conf, "report", "attendance", "--site", "Bad Site")
    assert r.returncode == 2 and "report attendance --site: expected" in r.stderr.decode()


def test_one_site_only(conf):
    r = central(
        conf, "report", "ratings", "--month", "2026-10", "--site", "puning", "--format", "csv"
    )
    assert r.returncode == 0, r.stderr.decode()
    rows = list(csv.reader(io.StringIO(r.stdout.decode("utf-8-sig"), newline="")))
    at = rows.index(["# 窗口评价"])
    assert rows[0] == ["2026-10 puning 好差评月报"]
    assert [row[:3] for row in rows[at + 2 : rows.index([], at)]] == [["puning", "A03", "2"]]


# --- typed xlsx, neutral "not judged" days, notes, HTML layout and print: on both stores -----

SLOT_HEADERS = ("上午上班", "上午下班", "下午上班", "下午下班")
MID_MONTH = datetime(2026, 10, 9, 10, 0, tzinfo=TZ)  # Friday morning: the 9th is not over


def built(store, kind: str, fmt: str, now: datetime = NOW) -> bytes:
    report = build(kind, store, Month(2026, 10, TZ), None, None, now)
    out = io.BytesIO()
    render_report(report, fmt, out)
    return out.getvalue()


def write_mid_month(store) -> None:
    """S001 punched once today (late, but the day is not over); S002 not yet."""
    roster(store, "jiedong", [("S001", "王芳", "staff", "A03"), ("S002", "李娜", "staff", "A05")])
    ev = Events(store)
    ev.day("S001", date(2026, 10, 8))
    ev.day("S002", date(2026, 10, 8))
    ev.punch("S001", date(2026, 10, 9), time(8, 41))
    ev.flush()


def test_xlsx_dates_rates_filters_and_print_setup(store, tmp_path):
    from openpyxl import load_workbook

    write_october(store)
    write_ratings(store)
    for kind in ("attendance", "ratings"):
        path = tmp_path / f"{kind}.xlsx"
        path.write_bytes(built(store, kind, "xlsx"))
        book = load_workbook(path)
        for ws in book.worksheets[:-1]:  # every table; the last sheet is 说明 (notes)
            last = ws.cell(1, ws.max_column).column_letter
            assert ws.auto_filter.ref == f"A1:{last}{ws.max_row}", ws.title
            assert ws.page_setup.orientation == "landscape", ws.title
            assert str(ws.page_setup.paperSize) == str(ws.PAPERSIZE_A4), ws.title
            assert ws.sheet_properties.pageSetUpPr.fitToPage, ws.title
            assert (ws.page_setup.fitToWidth, ws.page_setup.fitToHeight) == (1, 0), ws.title
            assert ws.print_title_rows == "$1:$1", ws.title
        if kind == "attendance":
            daily = book["每日明细"]
            first = daily["A2"]
            assert first.value == datetime(2026, 10, 1) and first.number_format == "yyyy-mm-dd"
            assert daily.auto_filter.ref == f"A1:N{daily.max_row}"  # 14 columns (在岗)
        else:
            win = book["窗口评价"]
            headers = [c.value for c in win[1]]
            rate = win.cell(2, headers.index("满意率") + 1)
            assert isinstance(rate.value, float) and abs(rate.value - 4 / 6) < 1e-9
            assert rate.number_format == "0.0%"
            when = book["差评明细"]["A2"]
            assert when.value == datetime(2026, 10, 8, 9, 14)
            assert when.number_format == "yyyy-mm-dd hh:mm"
            trend = book["每日满意率"]
            assert (
                trend["A2"].value == datetime(2026, 10, 8) and trend["C2"].number_format == "0.0%"
            )


def _xlsx_text(data: bytes) -> str:
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(data))
    return "\n".join(
        str(c.value) for ws in book.worksheets for row in ws.iter_rows() for c in row if c.value
    )


def test_no_report_output_points_to_docs(store):
    """A manager has the report, not the repository: every note states its rule itself."""
    write_october(store)
    write_ratings(store)
    for now in (NOW, MID_MONTH):
        for kind in ("attendance", "ratings"):
            for fmt in ("table", "csv", "xlsx", "html"):
                data = built(store, kind, fmt, now)
                text = _xlsx_text(data) if fmt == "xlsx" else data.decode("utf-8-sig")
                pointers = [text[m.start() - 40 : m.end() + 20] for m in re.finditer("docs/", text)]
                assert pointers == [], (kind, fmt)
                says_why = (
                    "设备时钟不可信 (未与时间服务器同步, 或与中心收到时间相差超过一天)" in text
                )
                assert says_why, (kind, fmt)


def test_today_is_neutral_in_table_csv_and_xlsx(store, tmp_path):
    from openpyxl import load_workbook

    write_mid_month(store)
    table = built(store, "attendance", "table", MID_MONTH).decode()
    today = [ln for ln in table.splitlines() if ln.startswith("2026-10-09") and "jiedong" in ln]
    assert len(today) == 2
    assert all("*" not in line and "缺卡" not in line and "迟到" not in line for line in today)
    assert any("李娜" in line and line.count("—") == 4 for line in today)
    rows = list(
        csv.reader(io.StringIO(built(store, "attendance", "csv", MID_MONTH).decode("utf-8-sig")))
    )
    at = rows.index(["# 每日明细"])
    header = rows[at + 1]
    block = rows[at + 2 : rows.index([], at)]
    csv_today = [dict(zip(header, r, strict=True)) for r in block if r[0] == "2026-10-09"]
    assert [[r[h] for h in SLOT_HEADERS] for r in csv_today] == [
        ["08:41", "—", "—", "—"],
        ["—", "—", "—", "—"],
    ]
    assert all(r["缺卡"] == "" for r in csv_today)
    summary = rows[rows.index(["# 月度汇总"]) + 1 :][:3]
    by_id = {r[1]: dict(zip(summary[0], r, strict=True)) for r in summary[1:]}
    assert (by_id["S001"]["应出勤(天)"], by_id["S001"]["迟到(次)"]) == ("1", "0")
    assert (by_id["S002"]["应出勤(天)"], by_id["S002"]["缺卡(次)"]) == ("1", "0")
    path = tmp_path / "a.xlsx"
    path.write_bytes(built(store, "attendance", "xlsx", MID_MONTH))
    daily = load_workbook(path)["每日明细"]
    headers = [c.value for c in daily[1]]
    cells = [
        row[headers.index(h)]
        for row in daily.iter_rows(min_row=2)
        if row[0].value == datetime(2026, 10, 9)
        for h in SLOT_HEADERS
    ]
    assert len(cells) == 8
    assert all(c.fill.fill_type is None and c.font.color.rgb.endswith("999999") for c in cells)


async def _page(ws, url: str):
    cdp = Cdp(ws)
    await cdp.call("Page.enable")
    await cdp.call("Page.navigate", url=url)
    ready = "document.readyState === 'complete' && document.querySelectorAll('svg').length >= 2"
    for _ in range(200):  # a wait for the page to draw, not a speed assertion
        result = await cdp.call("Runtime.evaluate", expression=ready, returnByValue=True)
        if result["result"]["value"]:
            return cdp
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never drew its charts")


async def _value(cdp, js: str):
    result = await cdp.call("Runtime.evaluate", expression=js, returnByValue=True)
    return result["result"]["value"]


def test_html_fits_1280_px_neutral_today_and_prints_a4_landscape(store, tmp_path, chromium):
    write_october(store)
    write_mid_month_extra = tmp_path / "mid.html"
    path = tmp_path / "october.html"
    path.write_bytes(built(store, "attendance", "html"))
    write_mid_month_extra.write_bytes(built(store, "attendance", "html", MID_MONTH))

    async def drive() -> dict:
        async with aiohttp.ClientSession() as http, http.ws_connect(chromium, max_msg_size=0) as ws:
            cdp = await _page(ws, path.as_uri())
            widest = (
                "Math.max(...[...document.querySelectorAll('.table-wrap')]"
                ".map(w => w.scrollWidth - w.clientWidth))"
            )
            out = {
                "inner": await _value(cdp, "window.innerWidth"),
                "page": await _value(cdp, "document.documentElement.scrollWidth"),
                "widest": await _value(cdp, widest),
            }
            # A narrower window: the wide tables scroll inside their boxes, not the page.
            await cdp.call(
                "Emulation.setDeviceMetricsOverride",
                width=1000,
                height=720,
                deviceScaleFactor=1,
                mobile=False,
            )
            fits = "document.documentElement.scrollWidth <= window.innerWidth"
            for _ in range(50):  # wait for the resize to reach the charts (not a speed test)
                if await _value(cdp, fits):
                    break
                await asyncio.sleep(0.1)
            out["page_1000"] = await _value(cdp, "document.documentElement.scrollWidth")
            out["widest_1000"] = await _value(cdp, widest)
            await cdp.call("Emulation.clearDeviceMetricsOverride")
            await cdp.call("Emulation.setEmulatedMedia", media="print")
            out["print_th"] = await _value(
                cdp, "getComputedStyle(document.querySelector('th')).position"
            )
            out["print_thead"] = await _value(
                cdp, "getComputedStyle(document.querySelector('thead')).display"
            )
            pdf = await cdp.call("Page.printToPDF", preferCSSPageSize=True)
            out["pdf"] = base64.b64decode(pdf["data"])
            await cdp.call("Emulation.setEmulatedMedia", media="")
            cdp = await _page(ws, write_mid_month_extra.as_uri())
            out["today"] = await _value(
                cdp,
                "JSON.stringify(echarts.getInstanceByDom(document.getElementById('chart0'))"
                ".getOption().series[0].data)",
            )
            return out

    out = asyncio.run(drive())
    assert out["inner"] == 1280
    # At 1280 px every table fits; at 1000 px the daily table (13 columns) scrolls in its
    # box and the page is still no wider than the window (the charts follow the window).
    assert out["page"] <= 1280 and out["widest"] <= 0, out
    assert out["page_1000"] <= 1000 and out["widest_1000"] > 0, out
    assert (out["print_th"], out["print_thead"]) == ("static", "table-header-group")
    boxes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", out["pdf"])
    assert boxes, out["pdf"][:200]
    width, height = (float(v) for v in boxes[0])
    assert abs(width - 842) < 2 and abs(height - 595) < 2  # A4 landscape, in points
    # Mid-month: on the 9th (x = 8) nobody is judged; no cell that day is 正常 (0).
    states = {(x, y): v for x, y, v in json.loads(out["today"])}
    assert [v for (x, _y), v in states.items() if x == 8] and all(
        v == 5 for (x, _y), v in states.items() if x == 8
    )
