"""The report formats read back by other programs: the csv module, openpyxl, Chromium.

The reports come from the hall CLI (``hall-central report``) over a hand-made month in a real
SQLite store (tests/test_reports.py has the numbers); here the question is whether each format
carries them intact: Chinese text, marks, one sheet per table, offline charts.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from central.reports.table import display_width
from central.store import open_store
from tests.conftest import require_or_skip
from tests.test_reports import write_october, write_ratings

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
    assert book.sheetnames == ["月度汇总", "每日明细", "请假与更正", "工作日历", "说明"]
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
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
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
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
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
