"""A self-contained HTML report: tables, charts and the charting library in one file.

The charts use Apache ECharts (Apache-2.0), vendored as ``vendor/echarts.min.js`` from the npm
package ``echarts`` and embedded in every file: the report opens offline, on a machine with no
route to a CDN, and keeps working after it is mailed or archived. Why ECharts: actively
maintained (an Apache top-level project), a native heat map, Chinese labels and fonts work out
of the box, one file with no dependencies. Its licence: ``vendor/ECHARTS-LICENSE``.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any, TextIO

from central.reports.model import Report, Sheet, Timeline, cell_text

ECHARTS_VERSION = "6.1.0"

_STYLE = """
body { font-family: "Noto Sans CJK SC", "Microsoft YaHei", "PingFang SC", sans-serif;
       margin: 16px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
/* A wide table scrolls inside its box: the page itself never gets wider than the window,
   so a 1280-px screen shows every chart and heading whole. */
.table-wrap { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 5px; white-space: nowrap; }
td:last-child { white-space: normal; min-width: 6em; } /* 说明, 来源, 原因: free text wraps */
th { background: #f0f0f0; position: sticky; top: 0; }
td.late { background: #ffe699; } td.missing, td.bad { background: #f4b6b6; }
td.leave { background: #bdd7ee; }
td.pending { color: #999; }
.chart { width: 100%; max-width: 1200px; margin-bottom: 12px; }
.notes { color: #555; font-size: 13px; }
details { margin: 2px 0; font-size: 13px; } summary { cursor: pointer; }
.timeline { display: flex; max-width: 1000px; height: 18px; border: 1px solid #ccc; }
.timeline span { display: block; height: 100%; }
.timeline .serving { background: #70ad47; } .timeline .paused { background: #ffc000; }
.timeline .away { background: #e06666; } .timeline .excused { background: #9dc3e6; }
.timeline .unknown { background: #bbb; }
@media print {
  @page { size: A4 landscape; margin: 10mm; }
  body { margin: 0; font-size: 10px; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  h1 { font-size: 16px; } h2 { font-size: 13px; margin-top: 12px; break-after: avoid; }
  .table-wrap { overflow: visible; }
  table { width: 100%; font-size: 9px; }
  th, td { padding: 1px 3px; white-space: normal; }
  th { position: static; }
  thead { display: table-header-group; } /* the header row repeats on every page */
  tr, .chart { break-inside: avoid; }
  .chart { max-width: 100%; }
}
"""


def echarts_js() -> str:
    return (resources.files("central.reports") / "vendor" / "echarts.min.js").read_text("utf-8")


def _script_json(value: Any) -> str:
    # Inside <script>, "</" would end the element early; "\/" is the same JSON string.
    return json.dumps(value, ensure_ascii=False).replace("</", "<\\/")


def _table(sheet: Sheet) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in sheet.headers)
    body = []
    for r, row in enumerate(sheet.rows):
        tds = []
        for c, value in enumerate(row):
            kind = sheet.marks.get((r, c))
            cls = f' class="{kind}"' if kind else ""
            tds.append(f"<td{cls}>{html.escape(cell_text(value))}</td>")
        body.append(f"<tr>{''.join(tds)}</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(sheet.headers)}">(无)</td></tr>')
    return (
        f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _height(option: dict[str, Any]) -> int:
    series = option.get("series") or [{}]
    if series[0].get("type") == "heatmap":
        return 140 + 20 * len(option["yAxis"]["data"])
    if option["yAxis"].get("type") == "category":  # a ranking: one bar per row
        return 60 + 24 * len(option["yAxis"]["data"])
    return 260


def _timelines(timelines: list[Timeline]) -> str:
    """在岗时间线: a <details> per person, one per day inside, each a bar of the day's stretches
    (width by minutes; the title names each stretch). No script: a click opens it."""
    parts = ["<h2>在岗时间线</h2>"]
    legend = " ".join(
        f'<span class="timeline" style="display:inline-flex;width:14px;height:10px">'
        f'<span class="{k}" style="width:100%"></span></span> {html.escape(v)}'
        for k, v in (
            ("serving", "服务中"),
            ("paused", "暂停服务"),
            ("away", "离岗"),
            ("excused", "请假/公出"),
            ("unknown", "设备离线(未打卡)"),
        )
    )
    parts.append(f'<p class="notes">{legend}</p>')
    for person, days in timelines:
        inner = []
        for label, bars in days:
            spans = "".join(
                f'<span class="{html.escape(b.kind)}" style="flex:{b.minutes} 0 0" '
                f'title="{html.escape(f"{b.start}-{b.end} {b.label}")}"></span>'
                for b in bars
            )
            rows = "".join(
                f"<li>{html.escape(f'{b.start}-{b.end} {b.label} ({b.minutes}分钟)')}</li>"
                for b in bars
            )
            inner.append(
                f'<details class="post-day"><summary>{html.escape(label)}</summary>'
                f'<div class="timeline">{spans}</div><ul class="notes">{rows}</ul></details>'
            )
        parts.append(
            f'<details class="post-person"><summary>{html.escape(person)}</summary>'
            f"{''.join(inner)}</details>"
        )
    return "".join(parts)


def write(report: Report, out: TextIO) -> None:
    out.write('<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">')
    out.write(f"<title>{html.escape(report.title)}</title><style>{_STYLE}</style>")
    out.write(f"<script>{echarts_js()}</script></head><body>")
    out.write(f"<h1>{html.escape(report.title)}</h1>")
    for i, (title, option) in enumerate(report.charts):
        out.write(f"<h2>{html.escape(title)}</h2>")
        out.write(f'<div class="chart" id="chart{i}" style="height:{_height(option)}px"></div>')
        # The chart follows the window's width, so a narrower window never gets a page
        # wider than itself.
        out.write(
            f"<script>(function () {{ const chart = echarts.init("
            f"document.getElementById('chart{i}'), null, {{renderer: 'svg'}}); "
            f"chart.setOption({_script_json(option)}); "
            "window.addEventListener('resize', () => chart.resize()); })();</script>"
        )
    for sheet in report.sheets:
        out.write(f"<h2>{html.escape(sheet.name)}</h2>{_table(sheet)}")
    if report.timelines:
        out.write(_timelines(report.timelines))
    if report.notes:
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
        out.write(f'<ul class="notes">{notes}</ul>')
    if report.seal_qr:
        from central.seal.report import qr_svg

        out.write(f'<p class="notes seal">{qr_svg(report.seal_qr)}</p>')
    out.write(
        '<p class="notes">图表: Apache ECharts '
        f"{ECHARTS_VERSION} (Apache License 2.0), 已内嵌, 可离线打开。</p></body></html>\n"
    )
