"""Benchmark: the monthly reports of a busy hall, on SQLite and on PostgreSQL.

    .venv/bin/python bench/reports.py [--windows 60] [--staff 100] [--ratings 300] [--rounds 3]

Generates November 2026 (21 working days, winter hours) for a hall of ``--windows`` windows
and ``--staff`` people (every 25th a chief representative): four punches per person per working
day with some late, early and missing ones, ``--ratings`` ratings a working day spread over
the windows (one in ten a 差评, invitations answered and expired), two pauses per window a
day, logins, and 40 leave rows as ``leave import`` stores them: 补卡 of one slot each (for
punches nobody made) and 请假/公出 of half and whole days. The last person joins mid-month
(roster ``starts``). The same events go into a fresh SQLite file and a throw-away PostgreSQL
schema. ``generate`` also makes the README's report screenshot (scripts/screenshot_report.py).

Timed (best of ``--rounds``), per store: the month's time at the post (central/post/compute.py
``post_days``), ``report attendance`` and ``report ratings`` from the
store to the rendered terminal table, and the attendance report as xlsx and HTML. Baseline
in the same run: the plain SELECT of the month's rows that the reports start from, so the
ratio says what the report adds to reading the data. Target (the issue): under 2 s a report.
The last line holds the figures as key=value.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from central.post.compute import post_days  # noqa: E402
from central.reports import build, render  # noqa: E402
from central.reports.month import Month  # noqa: E402
from central.reports.source import month_events  # noqa: E402
from central.store import EventRow, Store, open_store  # noqa: E402
from contract import EventType  # noqa: E402
from contract.schedule import DayPlan, Schedule  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
MONTH = Month(2026, 11, TZ)
NOW = datetime(2026, 12, 10, 12, 0, tzinfo=TZ)
TARGET_S = 2.0


# Names for the first people (the README's screenshot shows them); the rest are numbered.
SAMPLE_NAMES = (
    "王芳", "李娜", "陈刚", "赵敏", "周杰", "吴磊", "郑洁",
    "孙浩", "钱伟", "冯丽", "何强", "林静", "黄勇", "马琳",
)  # fmt: skip
IN_SLOTS = ("morning_in", "afternoon_in")


def generate(
    windows: int,
    staff: int,
    ratings: int,
    seed: int = 7,
    month: Month = MONTH,
    now: datetime = NOW,
    leaves: int = 40,
    joins: date | None = None,
) -> tuple[list, dict, list]:
    """The month's events up to ``now``, the site's roster and the approved leave rows.

    Punches follow each day's own hours (contract/schedule.py, so any season works); a
    month still running has events only before ``now``. The last person joins on ``joins``
    (default: the middle working day so far; roster ``starts``, docs/reports.md) and forgets
    the first punch of the first day, which a 补卡 of that one slot corrects; other forgotten
    punches get a 补卡 now and then too, the rest of ``leaves`` are 请假/公出 of half and
    whole days.
    """
    rnd = random.Random(seed)
    schedule = Schedule()
    workdays = [d for d in month.days() if d <= now.date() and schedule.working_day(d)[0]]
    people = [_person(i, windows) for i in range(staff)]
    if joins is None:
        joins = workdays[len(workdays) // 2] if workdays else month.first
    people[-1]["starts"] = joins.isoformat()
    rows: list[tuple[str, datetime, dict, str]] = []  # (type, at, data, device)
    # (staff id, day, slot, the time on the 补卡 approval) of each punch nobody made
    forgotten: list[tuple[str, date, str, str]] = []

    def at(day: date, hh: int, mm: int, jitter: int = 0) -> datetime:
        return datetime(day.year, day.month, day.day, hh, tzinfo=month.tz) + timedelta(
            minutes=mm + rnd.randint(-jitter, jitter)
        )

    for d in workdays:
        plan = schedule.plan(d)
        for p in people:
            if p is people[-1] and d < joins:
                continue  # not at the hall yet
            if p["role"] == "chief" and rnd.random() < 0.8:
                continue
            for slot, due in _slot_times(plan).items():
                off = -8 if slot in IN_SLOTS else 6  # a little early in, a little late out
                if rnd.random() < 0.05:
                    off = 15 if slot in IN_SLOTS else -15  # late, or leaving early
                moment = datetime.combine(d, due, month.tz) + timedelta(
                    minutes=off + rnd.randint(-5, 5)
                )
                first_day = p is people[-1] and d == joins and slot == "morning_in"
                if first_day or rnd.random() < 0.02:
                    forgotten.append((p["id"], d, slot, moment.strftime("%H:%M")))
                    continue
                rows.append((EventType.PUNCH, moment, _punch(p), "kiosk-01"))
        for w in range(windows):
            device, window = f"pad-{w // 8:02d}", f"W{w:02d}"
            base = {"window": window, "pad": w % 8 + 1, "staff_id": people[w % staff]["id"]}
            rows.append((EventType.LOGIN, at(d, 8, 30, 5), base, device))
            for hh in (10, 15):
                start = at(d, hh, 0, 30)
                rows.append((EventType.PAUSED, start, base, device))
                rows.append((EventType.RESUMED, start + timedelta(minutes=8), base, device))
            rows.append((EventType.LOGOUT, at(d, 17, 30, 5), base, device))
        for i in range(ratings):
            w = rnd.randrange(windows)
            level = rnd.choices((5, 4, 3, 2, 1), (60, 25, 5, 6, 4))[0]
            data = {
                "window": f"W{w:02d}",
                "pad": w % 8 + 1,
                "staff_id": people[w % staff]["id"],
                "level": level,
                "label": "x",
                "reasons": ["态度不好"] if level <= 2 else [],
                "invite_id": i % 65535 + 1 if rnd.random() < 0.7 else None,
            }
            moment = at(d, 9 + i % 8, 0, 25)
            rows.append((EventType.RATING, moment, data, f"pad-{w // 8:02d}"))
            if rnd.random() < 0.1:
                expired = {k: data[k] for k in ("window", "pad", "staff_id", "invite_id")}
                rows.append((EventType.RATING_EXPIRED, moment, expired, f"pad-{w // 8:02d}"))
    rows = [r for r in rows if r[1] < now]  # a month still running: nothing from the future
    leave = _leave_rows(rnd, people, workdays, forgotten, leaves, joins)
    return rows, {"v": 1, "version": 1, "staff": people}, leave


def _person(i: int, windows: int) -> dict:
    return {
        "id": f"S{i:04d}",
        "name": SAMPLE_NAMES[i] if i < len(SAMPLE_NAMES) else f"员工{i:03d}",
        "role": "chief" if i % 25 == 0 else "staff",
        "window": f"W{i % windows:02d}",
    }


def _slot_times(plan: DayPlan) -> dict[str, dt_time]:
    """When each of the day's four punches is due (the day's own hours)."""
    return {
        "morning_in": plan.morning.start,
        "morning_out": plan.morning.end,
        "afternoon_in": plan.afternoon.start,
        "afternoon_out": plan.afternoon.end,
    }


def _leave_rows(
    rnd: random.Random,
    people: list[dict],
    workdays: list[date],
    forgotten: list[tuple[str, date, str, str]],
    count: int,
    joins: date,
) -> list[dict]:
    """``count`` approved rows as ``leave import`` stores them (central/leave.py).

    A 补卡 names one slot and the punch time from the approval (docs/reports.md): the
    joiner's forgotten first punch always, a quarter of the other forgotten punches; the rest
    are 请假/公出 of a morning or a whole day.
    """
    joiner = [f for f in forgotten if f[0] == people[-1]["id"]][:1]
    others = [f for f in forgotten if f not in joiner]
    fixed = joiner + rnd.sample(others, min(len(others), count // 4))
    rows = [_correction(*f) for f in fixed[:count]]
    while len(rows) < count and workdays:
        d = rnd.choice(workdays)
        # Leave is approved only for someone already at the hall (the joiner from ``joins``).
        at_hall = people if d >= joins else people[:-1]
        rows.append(
            {
                "staff_id": at_hall[rnd.randrange(len(at_hall))]["id"],
                "kind": rnd.choice(("请假", "公出")),
                "starts": d,
                "starts_half": "am",
                "ends": d,
                "ends_half": rnd.choice(("am", "pm")),
                "approver": "主任",
                "note": "",
                "slot": "",
                "slot_time": "",
            }
        )
    for line, row in enumerate(rows, start=2):
        row["source"] = f"bench.csv:{line}"
    return rows


def _correction(sid: str, day: date, slot: str, clock: str) -> dict:
    half = "am" if slot.startswith("morning") else "pm"
    return {
        "staff_id": sid,
        "kind": "补卡",
        "starts": day,
        "starts_half": half,
        "ends": day,
        "ends_half": half,
        "approver": "主任",
        "note": "忘记打卡",
        "slot": slot,
        "slot_time": clock,
    }


def _punch(p: dict) -> dict:
    return {
        "staff_id": p["id"],
        "slot": "extra",
        "status": "on_time",
        "minutes_off": 0,
        "distance": 0.3,
        "liveness": "off",
    }


def load(store: Store, rows: list, roster: dict, leave: list) -> None:
    seqs: dict[str, int] = {}
    events = []
    for etype, at, data, device in rows:
        seqs[device] = seqs.get(device, 0) + 1
        events.append(
            EventRow(
                str(uuid.uuid4()),
                device,
                "jiedong",
                seqs[device],
                etype,
                at,
                at.isoformat(timespec="milliseconds"),
                "synced",
                json.dumps(data, ensure_ascii=False),
            )
        )
    for i in range(0, len(events), 5000):
        store.write_batch(events[i : i + 5000], [])
    # As if every event arrived on time (the store stamps the real clock).
    store.query("UPDATE events SET received_at = at RETURNING 1")
    store.put_roster("jiedong", roster)
    store.add_leaves(leave, "bench")


def best(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(store: Store, rounds: int) -> dict[str, float]:
    def report(kind: str, fmt: str) -> None:
        out = io.BytesIO()
        render(build(kind, store, MONTH, None, now=NOW), fmt, out)

    types = (EventType.PUNCH, EventType.RATING, EventType.RATING_EXPIRED, EventType.PAUSED)
    return {
        "baseline": best(lambda: month_events(store, MONTH, types), rounds),
        "attendance": best(lambda: report("attendance", "table"), rounds),
        "ratings": best(lambda: report("ratings", "table"), rounds),
        "xlsx": best(lambda: report("attendance", "xlsx"), rounds),
        "html": best(lambda: report("attendance", "html"), rounds),
        # Time at the post, 脱岗 and 串岗 of the month (docs/post.md): every window's logins,
        # pauses and logouts, the punches, leave and device changes, per person and day.
        "post": best(
            lambda: post_days(store, Schedule(), MONTH.first, MONTH.last, now=NOW), rounds
        ),
    }


@contextlib.contextmanager
def pg_store() -> Iterator[Store]:
    """The store in a throw-away PostgreSQL schema, dropped on exit."""
    from tests.support import PG_URL, pg_schema

    with pg_schema() as schema, open_store(PG_URL, schema) as store:
        yield store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=60)
    ap.add_argument("--staff", type=int, default=100)
    ap.add_argument("--ratings", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    # Imported here, not at the top: scripts/screenshot_report.py uses ``generate`` and, like
    # every script, must not import tests/ (tests/test_imports.py).
    from tests.support import PG_URL, pg_available

    rows, roster, leave = generate(args.windows, args.staff, args.ratings)
    print(f"generated {len(rows)} events, {len(leave)} leave rows for {MONTH.label}", flush=True)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stores: list[tuple[str, Callable[[], contextlib.AbstractContextManager[Store]]]] = [
            ("sqlite", lambda: open_store(f"sqlite:///{tmp}/hall.db"))
        ]
        if pg_available():
            stores.append(("pg", pg_store))
        else:
            print(f"PostgreSQL not reachable at {PG_URL}: SQLite only", flush=True)
        for name, opener in stores:
            with opener() as store:
                load(store, rows, roster, leave)
                result = measure(store, args.rounds)
            for key, value in result.items():
                figures[f"{name}_{key}_s"] = value
            print(
                f"{name}: read {result['baseline']:.3f} s, attendance {result['attendance']:.3f} s"
                f", ratings {result['ratings']:.3f} s, xlsx {result['xlsx']:.3f} s, "
                f"html {result['html']:.3f} s, post {result['post']:.3f} s",
                flush=True,
            )
    slowest = max(v for k, v in figures.items() if not k.endswith("baseline_s"))
    ratio = figures["sqlite_attendance_s"] / figures["sqlite_baseline_s"]
    print(
        " ".join(f"{k}={v:.3f}" for k, v in figures.items())
        + f" events={len(rows)} attendance_vs_read_ratio={ratio:.1f}"
        + f" slowest_s={slowest:.3f} target_s={TARGET_S:.0f} ok={int(slowest < TARGET_S)}"
    )


if __name__ == "__main__":
    main()
