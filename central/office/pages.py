"""The HTML of the office's pages: Chinese for the 政务服务股's staff, server-rendered, every
value escaped. Only ``/today`` loads a script, the app's own ``/today.js`` (the
Content-Security-Policy allows no inline script and nothing from elsewhere)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from html import escape
from urllib.parse import urlencode

from central.cases.desk import Due, due
from central.cases.states import (
    ACTION_LABELS,
    STATE_LABELS,
    STEP_LABELS,
    TRANSITIONS,
    CaseState,
)
from central.store.records import AuditEntry, CaseLogEntry, CaseRecord, UserRecord

ROLE_LABELS = {"clerk": "办事员", "admin": "管理员"}
LEVEL_LABELS = {1: "非常不满意", 2: "不满意", 3: "基本满意", 4: "满意", 5: "非常满意"}
AUDIT_LABELS = {
    "login.ok": "登录",
    "login.failed": "登录失败",
    "login.locked": "登录被限制",
    "logout": "退出",
    "case.move": "办理案件",
    "user.add": "新增账号",
    "user.change": "修改账号",
}
# The list's state filter: the open cases (default), the overdue ones, every case, one state.
STATE_FILTERS = {"open": "未办结", "overdue": "已逾期", "all": "全部"}


def e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def when(moment: datetime | None, tz: tzinfo) -> str:
    return "—" if moment is None else moment.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def state_label(state: str) -> str:
    try:
        return STATE_LABELS[CaseState(state)]
    except ValueError:
        return state


def layout(
    title: str,
    body: str,
    user: str | None = None,
    role: str | None = None,
    csrf: str | None = None,
    script: str | None = None,
) -> str:
    nav = ""
    if user is not None:
        links = ['<a href="/cases">差评案件</a>', '<a href="/today">今日在岗</a>']
        if role == "admin":
            links += ['<a href="/audit">操作日志</a>', '<a href="/users">账号</a>']
        nav = (
            f"<nav>{' '.join(links)}</nav>"
            f'<span class="who">{e(user)}（{e(ROLE_LABELS.get(role or "", role))}）</span>'
            '<form method="post" action="/logout">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">'
            '<button type="submit">退出登录</button></form>'
        )
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{e(title)} - 差评办理</title><link rel="stylesheet" href="/office.css">'
        + (f'<script src="{e(script)}" defer></script>' if script else "")
        + f"</head><body><header><h1>差评办理 · {e(title)}</h1>{nav}</header>"
        f"<main>{body}</main></body></html>"
    )


def login_page(token: str, error: str | None = None, name: str = "") -> str:
    alert = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    body = (
        f'<form class="login" method="post" action="/login">{alert}'
        f'<input type="hidden" name="csrf" value="{e(token)}">'
        f'<label>用户名<input name="name" value="{e(name)}" autocomplete="username" '
        "required autofocus></label>"
        '<label>密码<input name="password" type="password" autocomplete="current-password" '
        "required></label>"
        '<button type="submit">登录</button></form>'
    )
    return layout("登录", body)


@dataclass(frozen=True)
class Filters:
    state: str = "open"  # a key of STATE_FILTERS or a CaseState value
    window: str = ""
    staff: str = ""
    month: str = ""  # YYYY-MM

    def query(self) -> str:
        pairs = {k: v for k, v in vars(self).items() if v}
        return urlencode(pairs)


def _options(chosen: str, options: Iterable[tuple[str, str]]) -> str:
    return "".join(
        f'<option value="{e(v)}"{" selected" if v == chosen else ""}>{e(label)}</option>'
        for v, label in options
    )


def _deadline_cell(d: Due, tz: tzinfo) -> str:
    if d.step is None:
        return "—"
    step = STEP_LABELS.get(d.step, d.step)
    flag = ' <span class="flag">已逾期</span>' if d.overdue else ""
    return f"{e(step)}：{e(when(d.deadline, tz))}{flag}"


def cases_page(
    cases: list[CaseRecord],
    filters: Filters,
    now: datetime,
    tz: tzinfo,
    names: Mapping[str, str],
    error: str | None = None,
    **frame: str | None,
) -> str:
    states = [(k, v) for k, v in STATE_FILTERS.items()]
    states += [(s.value, STATE_LABELS[s]) for s in CaseState]
    form = (
        '<form class="filters" method="get" action="/cases">'
        f'<label>状态<select name="state">{_options(filters.state, states)}</select></label>'
        f'<label>窗口<input name="window" value="{e(filters.window)}" size="6"></label>'
        f'<label>工号<input name="staff" value="{e(filters.staff)}" size="10"></label>'
        f'<label>月份（评价时间）<input name="month" value="{e(filters.month)}" '
        'placeholder="YYYY-MM" size="8"></label>'
        '<button type="submit">筛选</button></form>'
    )
    alert = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    rows = []
    for case in cases:
        d = due(case, now)
        staff = case.staff_id or ""
        who = f"{names.get(staff, '')} {staff}".strip() or "—"
        marked = ' class="overdue"' if d.overdue else ""
        rows.append(
            f'<tr data-case="{case.id}" data-state="{e(case.state)}"{marked}>'
            f'<td><a href="/cases/{case.id}">{case.id}</a></td>'
            f"<td>{e(when(case.rated_at, tz))}</td>"
            f"<td>{e(case.site)}</td><td>{e(case.window)}</td><td>{e(who)}</td>"
            f"<td>{e(LEVEL_LABELS.get(case.level, case.level))}</td>"
            f"<td>{e(state_label(case.state))}</td>"
            f"<td>{_deadline_cell(d, tz)}</td></tr>"
        )
    overdue = sum(1 for c in cases if due(c, now).overdue)
    summary = f"<p>共 {len(cases)} 件，其中已逾期 {overdue} 件。</p>"
    table = (
        "<table><thead><tr><th>编号</th><th>评价时间</th><th>站点</th><th>窗口</th>"
        "<th>工作人员</th><th>评价</th><th>状态</th><th>当前环节期限</th></tr></thead>"
        f"<tbody>{''.join(rows) or '<tr><td colspan=8>没有符合条件的案件</td></tr>'}</tbody>"
        "</table>"
    )
    return layout("差评案件", form + alert + summary + table, **frame)


def case_page(
    case: CaseRecord,
    log: list[CaseLogEntry],
    now: datetime,
    tz: tzinfo,
    staff_name: str,
    error: str | None = None,
    notice: str | None = None,
    *,
    user: str,
    role: str,
    csrf: str,
) -> str:
    d = due(case, now)
    staff = case.staff_id or ""
    who = f"{staff_name} {staff}".strip() or "—"
    deadlines = "".join(
        f"<li>{e(STEP_LABELS.get(step, step))}：{e(when(at, tz))}</li>"
        for step, at in sorted(case.deadlines.items(), key=lambda kv: kv[1])
    )
    facts = (
        f'<dl class="facts" id="case" data-case="{case.id}" data-state="{e(case.state)}">'
        f"<dt>案件编号</dt><dd>{case.id}</dd>"
        f'<dt>状态</dt><dd id="state">{e(state_label(case.state))}</dd>'
        f"<dt>当前环节期限</dt><dd>{_deadline_cell(d, tz)}</dd>"
        f"<dt>站点 / 窗口</dt><dd>{e(case.site)} / {e(case.window)}</dd>"
        f"<dt>工作人员</dt><dd>{e(who)}</dd>"
        f"<dt>评价</dt><dd>{e(LEVEL_LABELS.get(case.level, case.level))}（{case.level}）</dd>"
        f"<dt>原因</dt><dd>{e('、'.join(case.reasons) or '—')}</dd>"
        f"<dt>办件编号</dt><dd>{e(case.case_no or '—')}</dd>"
        f"<dt>事项编码</dt><dd>{e(case.item_code or '—')}</dd>"
        f"<dt>评价时间</dt><dd>{e(when(case.rated_at, tz))}</dd>"
        f"<dt>受理时间</dt><dd>{e(when(case.opened_at, tz))}</dd>"
        f"<dt>办结时间</dt><dd>{e(when(case.closed_at, tz))}</dd>"
        f"<dt>各环节期限</dt><dd><ul>{deadlines}</ul></dd>"
        f"<dt>评价记录</dt><dd>{e(case.rating_id)}</dd></dl>"
    )
    alert = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    alert += f'<p class="notice" role="status">{e(notice)}</p>' if notice else ""
    forms = []
    for target in TRANSITIONS.get(CaseState(case.state), ()):
        label = ACTION_LABELS[target]
        forms.append(
            f'<form method="post" action="/cases/{case.id}/move" data-target="{target.value}">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">'
            f'<input type="hidden" name="from" value="{e(case.state)}">'
            f'<input type="hidden" name="target" value="{target.value}">'
            f"<strong>{e(label)}</strong>"
            f"<span>办理后状态：{e(STATE_LABELS[target])}</span>"
            f'<label>办理说明<textarea name="note" maxlength="2000"></textarea></label>'
            f'<button type="submit">{e(label)}</button></form>'
        )
    actions = (
        f'<h2>办理</h2><div class="actions">{"".join(forms)}</div>'
        if forms
        else "<h2>办理</h2><p>案件已终结，不能再办理。</p>"
    )
    history = "".join(
        f"<tr><td>{e(when(entry.at, tz))}</td><td>{e(entry.by)}</td>"
        f"<td>{e(state_label(entry.from_state) if entry.from_state else '—')}</td>"
        f"<td>{e(state_label(entry.to_state))}</td><td>{e(entry.note)}</td></tr>"
        for entry in log
    )
    table = (
        '<h2>办理记录</h2><table id="log"><thead><tr><th>时间</th><th>办理人</th>'
        f"<th>原状态</th><th>新状态</th><th>说明</th></tr></thead><tbody>{history}</tbody>"
        "</table>"
    )
    back = '<p><a href="/cases">← 返回案件列表</a></p>'
    return layout(f"案件 {case.id}", back + alert + facts + actions + table, user, role, csrf)


def audit_page(entries: list[AuditEntry], tz: tzinfo, who: str, **frame: str | None) -> str:
    form = (
        '<form class="filters" method="get" action="/audit">'
        f'<label>用户<input name="user" value="{e(who)}" size="12"></label>'
        '<button type="submit">筛选</button></form>'
    )
    rows = "".join(
        f"<tr><td>{e(when(a.at, tz))}</td><td>{e(a.user)}</td>"
        f"<td>{e(AUDIT_LABELS.get(a.action, a.action))}</td><td>{e(a.target)}</td>"
        f"<td>{e(a.detail)}</td><td>{e(a.address)}</td></tr>"
        for a in entries
    )
    table = (
        '<table id="audit"><thead><tr><th>时间</th><th>用户</th><th>操作</th><th>对象</th>'
        f"<th>详情</th><th>地址</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    return layout("操作日志", form + f"<p>最近 {len(entries)} 条</p>" + table, **frame)


def users_page(users: list[UserRecord], tz: tzinfo, **frame: str | None) -> str:
    rows = "".join(
        f"<tr><td>{e(u.name)}</td><td>{e(ROLE_LABELS.get(u.role, u.role))}</td>"
        f"<td>{e(when(u.created_at, tz))}</td><td>{'已停用' if u.disabled else '正常'}</td></tr>"
        for u in users
    )
    body = (
        "<p>账号在服务器上用 <code>hall-central users</code> 命令管理。</p>"
        "<table><thead><tr><th>用户名</th><th>角色</th><th>创建时间</th><th>状态</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
    )
    return layout("账号", body, **frame)


def message_page(title: str, text: str, **frame: str | None) -> str:
    return layout(
        title,
        f'<p class="error" role="alert">{e(text)}</p><p><a href="/cases">返回</a></p>',
        **frame,
    )


# --- today (central/office/today.py) -----------------------------------------------------

TODAY_SECTIONS = ("people", "windows", "absences")


def _who(person: Mapping[str, object] | None) -> str:
    if not person:
        return "—"
    return f"{person.get('name', '')} {person.get('id', '')}".strip()


def _half_cell(half: Mapping[str, object]) -> str:
    parts = []
    if half.get("punch"):
        parts.append(e(half["punch"]))
    elif half.get("correction") is not None:
        parts.append(f"补卡 {e(half['correction'])}".strip())
    if half.get("late") is not None:
        parts.append(f'<span class="flag">迟到 {e(half["late"])} 分</span>')
    if half.get("leave"):
        parts.append(f'<span class="leave">{e(half["leave"])}</span>')
    if half.get("absent"):
        parts.append('<span class="flag">缺勤</span>')
    return " ".join(parts) or "未打卡"


def today_people(state: Mapping[str, object]) -> str:
    people = state.get("people") or []
    assert isinstance(people, list)
    note = "" if state.get("working") else "<p>今天不是工作日，不判定迟到和缺勤。</p>"
    rows = []
    for p in people:
        halves = p["halves"]
        marks = []
        for half, label in (("am", "上午"), ("pm", "下午")):
            h = halves[half]
            if h.get("late") is not None:
                marks.append(f"{label}迟到 {h['late']} 分")
            if h.get("leave"):
                marks.append(f"{label}{h['leave']}")
            if h.get("absent"):
                marks.append(f"{label}缺勤")
        if p.get("chief"):
            marks.append("首席代表（按月考核）")
        status = "、".join(marks) or "正常"
        rows.append(
            f'<tr data-staff="{e(p["id"])}" data-site="{e(p["site"])}">'
            f"<td>{e(p['name'])}</td><td>{e(p['id'])}</td><td>{e(p['window'] or '—')}</td>"
            f"<td>{_half_cell(halves['am'])}</td><td>{_half_cell(halves['pm'])}</td>"
            f'<td class="status">{e(status)}</td></tr>'
        )
    return note + (
        "<table><thead><tr><th>姓名</th><th>工号</th><th>窗口</th><th>上午上班</th>"
        "<th>下午上班</th><th>状态</th></tr></thead>"
        f"<tbody>{''.join(rows) or '<tr><td colspan=6>没有人员名单</td></tr>'}</tbody></table>"
    )


def today_windows(state: Mapping[str, object]) -> str:
    windows = state.get("windows") or []
    assert isinstance(windows, list)
    rows = []
    for w in windows:
        label = w["state_label"]
        if w["state"] in ("open", "paused") and w.get("since"):
            label = f"{label}（自 {w['since']}）"
        assigned = "、".join(_who(a) for a in w.get("assigned") or []) or "—"
        rows.append(
            f'<tr data-window="{e(w["window"])}" data-state="{e(w["state"])}">'
            f'<td>{e(w["window"])}</td><td class="state-{e(w["state"])}">{e(label)}</td>'
            f"<td>{e(_who(w.get('staff')))}</td><td>{e(assigned)}</td></tr>"
        )
    return (
        "<table><thead><tr><th>窗口</th><th>状态</th><th>当前工作人员</th><th>排班人员</th>"
        f"</tr></thead><tbody>{''.join(rows) or '<tr><td colspan=4>没有窗口</td></tr>'}"
        "</tbody></table>"
    )


def today_absences(state: Mapping[str, object]) -> str:
    absences = state.get("absences") or []
    assert isinstance(absences, list)
    if not absences:
        return '<p class="none">当前没有脱岗。</p>'
    rows = "".join(
        f'<tr data-staff="{e(a["id"])}"><td>{e(a["name"])} {e(a["id"])}</td>'
        f"<td>{e(a['window'] or '—')}</td><td>{e(a['cause'])}</td><td>{e(a['since'])}</td>"
        f"<td>{e(a['minutes'])} 分钟</td></tr>"
        for a in absences
    )
    return (
        "<table><thead><tr><th>人员</th><th>窗口</th><th>原因</th><th>开始</th><th>已持续</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def today_sections(state: Mapping[str, object]) -> dict[str, str]:
    """Each section's HTML: the page's first render and every push (the script swaps them)."""
    return {
        "people": today_people(state),
        "windows": today_windows(state),
        "absences": today_absences(state),
        "as_of": e(state.get("as_of") or ""),
    }


def today_page(state: Mapping[str, object], **frame: str | None) -> str:
    sections = today_sections(state)
    body = (
        f'<p class="live"><span id="today-status">{e(state.get("date"))} '
        f'数据时间 <span id="today-as_of">{sections["as_of"]}</span></span> '
        '<span id="today-live" data-state="connecting">正在连接实时更新…</span></p>'
        f'<h2>人员</h2><div id="today-people">{sections["people"]}</div>'
        f'<h2>窗口</h2><div id="today-windows">{sections["windows"]}</div>'
        f'<h2>脱岗</h2><div id="today-absences">{sections["absences"]}</div>'
    )
    return layout("今日在岗", body, script="/today.js", **frame)
