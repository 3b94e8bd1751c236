"""The published schedule: the centre's body and versions, the payload's validation, the
kiosk's keeper and watch, the migration message and the December warnings
(contract/published_schedule.py, central/schedule_publish.py, agent/schedule_file.py)."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from agent.link.downlink import ScheduleKeeper
from agent.schedule_file import (
    ScheduleWatch,
    load_published,
    schedule_path,
    schedule_status,
)
from central.schedule_publish import calendar_warning, current_body, history, record_current
from contract.config import ConfigError, ScheduleSection
from contract.published_schedule import (
    ScheduleError,
    YearDays,
    body_digest,
    build_published,
    parse_schedule,
)
from contract.schedule import Schedule, calendar_knows, resolve_year
from tests.support import PG_URL, pg_available, pg_schema

TZ = ZoneInfo("Asia/Shanghai")
KNOWN = max(y for y in range(2024, 2040) if calendar_knows(y))  # 2026 with chinesecalendar 1.11
UNKNOWN = KNOWN + 1


def published(cfg: ScheduleSection | None = None, version: int = 1, today: date | None = None):
    body = current_body(cfg or ScheduleSection(), today or date(KNOWN, 11, 2))
    return build_published(version, datetime(KNOWN, 11, 2, 9, tzinfo=TZ), body)


def test_the_published_calendar_says_what_the_package_says_for_every_day_of_a_known_year():
    kiosk = Schedule.published(published())
    local = Schedule()  # the package itself
    day = date(KNOWN, 1, 1)
    while day.year == KNOWN:
        assert kiosk.working_day(day)[0] == local.working_day(day)[0], day
        day += timedelta(days=1)
    assert kiosk.version == 1


def test_the_centres_config_days_win_and_an_unknown_year_is_complete_only_when_declared():
    one_day = ScheduleSection(holidays=[date(UNKNOWN, 1, 4)])
    days = resolve_year(UNKNOWN, one_day)
    assert days is not None and not days.complete and days.source == "central.toml [schedule]"
    assert resolve_year(UNKNOWN, ScheduleSection()) is None  # nobody knows anything of it
    covered = ScheduleSection(
        holidays=[date(UNKNOWN, 1, 4)], workdays=[date(UNKNOWN, 1, 9)], covered_years=[UNKNOWN]
    )
    days = resolve_year(UNKNOWN, covered)
    assert days is not None and days.complete
    assert date(UNKNOWN, 1, 4) in days.days_off or date(UNKNOWN, 1, 4).weekday() >= 5
    # A working day the config adds on a package holiday overrides the package.
    national_day = date(KNOWN, 10, 1)
    assert national_day in resolve_year(KNOWN, ScheduleSection()).days_off
    opened = resolve_year(KNOWN, ScheduleSection(workdays=[national_day]))
    assert national_day not in opened.days_off
    kiosk = Schedule.published(published(ScheduleSection(workdays=[national_day])))
    assert kiosk.working_day(national_day)[0]


def test_the_body_and_its_digest_follow_the_config_and_the_year():
    a = current_body(ScheduleSection(), date(KNOWN, 6, 1))
    assert body_digest(a) == body_digest(json.loads(json.dumps(a)))  # key order, spelling
    assert sorted(a["calendar"]) == [str(KNOWN)]  # the package lacks the next year
    b = current_body(ScheduleSection(grace_min=3), date(KNOWN, 6, 1))
    assert body_digest(a) != body_digest(b)
    covered = ScheduleSection(holidays=[date(UNKNOWN, 1, 1)], covered_years=[UNKNOWN])
    c = current_body(covered, date(KNOWN, 6, 1))
    assert sorted(c["calendar"]) == [str(KNOWN), str(UNKNOWN)]
    # The new year drops the old one: the body changes by itself.
    assert str(KNOWN) not in current_body(covered, date(UNKNOWN, 1, 1))["calendar"]


def test_next_years_missing_days_are_warned_about_from_december_first():
    assert calendar_warning(ScheduleSection(), date(KNOWN, 11, 30)) is None
    warning = calendar_warning(ScheduleSection(), date(KNOWN, 12, 1))
    assert warning is not None and str(UNKNOWN) in warning and "covered_years" in warning
    one_day = ScheduleSection(holidays=[date(UNKNOWN, 1, 1)])
    assert calendar_warning(one_day, date(KNOWN, 12, 1)) is not None  # one day covers nothing
    listed = ScheduleSection(holidays=[date(UNKNOWN, 1, 1)], covered_years=[UNKNOWN])
    assert calendar_warning(listed, date(KNOWN, 12, 1)) is None


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda p: p.update(v=2), "v"),
        (lambda p: p.update(extra=1), "extra"),
        (lambda p: p["hours"].update(holidays=["2026-01-01"]), "hours"),
        (lambda p: p["hours"]["winter"].update(morning="8:30"), "hours.winter.morning"),
        (lambda p: p["calendar"][str(KNOWN)]["days_off"].update({"1999-01-01": "x"}), "calendar"),
        (lambda p: p.update(version=0), "version"),
        (lambda p: p.update(published_at="2026-12-01T09:00:00"), "published_at"),
    ],
)
def test_a_bad_payload_is_refused_naming_the_key(mutate, where):
    payload = json.loads(published().to_json())
    mutate(payload)
    with pytest.raises(ScheduleError) as err:
        parse_schedule(json.dumps(payload).encode())
    assert str(err.value).startswith(where)
    for raw in (b"[]", b"{", b"x" * 300_000):
        with pytest.raises(ScheduleError):
            parse_schedule(raw)


def test_the_kiosk_keeps_the_last_good_schedule_and_watches_it(tmp_path, caplog):
    keeper = ScheduleKeeper(tmp_path)
    watch = ScheduleWatch(tmp_path)
    assert watch.current().version is None  # the regulation's hours until the first
    assert watch.current().cfg.winter.morning == "08:30-11:30"
    first = published(ScheduleSection(grace_min=5), version=1)
    assert keeper.handle(first.to_json().encode())
    assert not keeper.handle(first.to_json().encode())  # the retained one again: no write
    assert watch.current().version == 1 and watch.current().cfg.grace_min == 5
    assert not keeper.handle(b'{"v":1}') and "schedule refused" in keeper.last_error
    assert load_published(tmp_path).version == 1  # the last good one stays
    assert not keeper.handle(b"")  # a cleared retained message keeps it too
    second = published(ScheduleSection(grace_min=0), version=2)
    assert keeper.handle(second.to_json().encode()) and keeper.last_error is None
    os.utime(schedule_path(tmp_path), ns=(1, 1))  # a same-second rewrite must still be seen
    assert watch.current().version == 2 and watch.current().cfg.grace_min == 0
    # A new keeper (the agent restarted) knows what it has.
    assert ScheduleKeeper(tmp_path).version == 2
    # The file lost since: the same retained schedule delivered again is written again.
    schedule_path(tmp_path).unlink()
    assert keeper.handle(second.to_json().encode())
    assert load_published(tmp_path).version == 2
    schedule_path(tmp_path).write_text("garbage", encoding="utf-8")
    assert watch.current().version is None  # damaged file: the regulation's hours, logged
    assert "unreadable" in caplog.text


def test_the_schedule_keeper_log_lines(tmp_path, caplog):
    caplog.set_level("INFO", logger="agent.link.downlink")
    keeper = ScheduleKeeper(tmp_path)
    keeper.handle(published(version=2).to_json().encode())
    keeper.handle(published(version=2).to_json().encode())  # the retained one again: silent
    keeper.handle(published(version=1).to_json().encode())
    assert [r.getMessage() for r in caplog.records] == [
        "schedule version 2 stored",
        "schedule version went back from 2 to 1",
        "schedule version 1 stored",
    ]


def test_a_schedule_that_cannot_be_written_keeps_the_old_one_and_says_why(tmp_path):
    keeper = ScheduleKeeper(tmp_path / "data")
    (tmp_path / "data").mkdir()
    schedule_path(tmp_path / "data").mkdir()  # a directory where the file should be
    assert not keeper.handle(published().to_json().encode())
    assert "not stored" in keeper.last_error


def test_check_shows_the_version_and_warns_about_next_year(tmp_path):
    text, warn = schedule_status(tmp_path, date(KNOWN, 11, 2))
    assert warn and "no schedule from the centre yet" in text
    ScheduleKeeper(tmp_path).handle(published(version=7).to_json().encode())
    text, warn = schedule_status(tmp_path, date(KNOWN, 11, 2))
    assert not warn and text.startswith("version 7 from the centre")
    text, warn = schedule_status(tmp_path, date(KNOWN, 12, 1))
    assert warn and str(UNKNOWN) in text


def test_a_kiosk_config_with_its_own_schedule_is_refused_with_the_migration(write_config, tmp_path):
    from agent.config import load_agent_config

    path = write_config(
        f"""
        [device]
        id = "kiosk-01"
        site = "jiedong"
        data_dir = "{tmp_path}"

        [attendance]
        camera = "0"

        [attendance.schedule.winter]
        morning = "09:00-12:00"
        """
    )
    with pytest.raises(ConfigError) as err:
        load_agent_config(path)
    text = str(err.value)
    assert f"{path}: attendance.schedule: no longer read here" in text
    assert "central.toml" in text and "hall-central schedule publish" in text


def test_the_history_judges_a_punch_by_its_version_and_days_by_the_version_in_force():
    v1 = Schedule(ScheduleSection(), {}, 1)
    v2 = Schedule(ScheduleSection(grace_min=30), {}, 2)
    t1, t2 = datetime(KNOWN, 11, 1, tzinfo=TZ), datetime(KNOWN, 11, 10, 12, tzinfo=TZ)
    h = history_of([(t1, v1), (t2, v2)])
    late = datetime(KNOWN, 11, 11, 8, 50, tzinfo=TZ)
    assert h.for_punch(1, late).classify(late).status == "late"
    assert h.for_punch(2, late).classify(late).status == "on_time"
    assert h.for_punch(None, late) is v2 and h.for_punch(99, late) is v2
    assert h.for_punch(None, datetime(KNOWN, 11, 5, tzinfo=TZ)) is v1
    assert h.for_day(date(KNOWN, 11, 10), TZ) is v2  # in force at the day's end
    assert h.for_day(date(KNOWN, 10, 1), TZ) is v1  # before the first: the first


def history_of(versions):
    from contract.schedule import ScheduleHistory

    return ScheduleHistory(versions, Schedule())


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    from central.store import open_store

    if request.param == "sqlite":
        with open_store(f"sqlite:///{tmp_path}/hall.db") as s:
            yield s
        return
    if not pg_available():
        from tests.conftest import require_or_skip

        require_or_skip(f"PostgreSQL not reachable at {PG_URL}")
    with pg_schema() as name, open_store(PG_URL, name) as s:
        yield s


def test_the_store_numbers_each_different_body_once(store):
    now = datetime(KNOWN, 12, 1, 9, tzinfo=UTC)
    a, b = (
        current_body(ScheduleSection(), now.date()),
        current_body(ScheduleSection(grace_min=2), now.date()),
    )
    assert store.record_schedule(body_digest(a), a, now) == (1, True)
    assert store.record_schedule(body_digest(a), a, now) == (1, False)
    assert store.record_schedule(body_digest(b), b, now) == (2, True)
    assert store.record_schedule(body_digest(a), a, now) == (3, True)  # back to A: new number
    versions = store.schedules()
    assert [s.version for s in versions] == [1, 2, 3] and versions[2].body == a
    assert store.latest_schedule().version == 3
    assert versions[0].published_at == now
    latest = record_current(store, ScheduleSection(grace_min=2), TZ)
    assert latest.version == 4 and latest.hours.grace_min == 2
    assert history(store, ScheduleSection()).by_version(2).cfg.grace_min == 2


def test_hall_central_check_reports_the_version_and_a_pending_change(tmp_path):
    from central.checks import probe_schedule
    from central.config import load_central_config
    from central.store import open_store

    toml = tmp_path / "central.toml"
    toml.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/hall.db"\n', encoding="utf-8")
    cfg = load_central_config(toml)
    with open_store(cfg.store.url):
        pass
    [r] = probe_schedule(cfg, date(KNOWN, 11, 2))
    assert r.warn and "no version recorded" in r.detail
    with open_store(cfg.store.url) as s:
        record_current(s, cfg.schedule, TZ)
    [r] = probe_schedule(cfg, datetime.now(TZ).date().replace(month=11, day=2))
    assert "published" in r.detail
    toml.write_text(
        toml.read_text(encoding="utf-8") + "\n[schedule]\ngrace_min = 9\n", encoding="utf-8"
    )
    [r, *_] = probe_schedule(load_central_config(toml), datetime.now(TZ).date())
    assert r.warn and "has changed since" in r.detail
    got = probe_schedule(cfg, date(KNOWN, 12, 1))
    assert any(x.name == "calendar" and x.warn and str(UNKNOWN) in x.detail for x in got)


def test_year_days_keep_their_days_in_their_year():
    with pytest.raises(ValueError):
        build_published(
            1,
            datetime(KNOWN, 1, 1, tzinfo=UTC),
            {
                "hours": json.loads(json.dumps(current_body(ScheduleSection(), date(KNOWN, 1, 1))))[
                    "hours"
                ],
                "calendar": {
                    str(KNOWN): YearDays(
                        complete=True, source="x", days_off={date(1999, 1, 1): "x"}, workdays={}
                    ).model_dump(mode="json")
                },
            },
        )


def test_the_collector_warns_at_startup_when_next_years_days_are_missing(tmp_path, caplog):
    import logging

    from central.schedule_publish import SchedulePublisher
    from central.store import open_store

    with open_store(f"sqlite:///{tmp_path}/hall.db") as store, caplog.at_level(logging.WARNING):
        SchedulePublisher(store, ScheduleSection(), TZ, "hall", None, lambda: date(KNOWN, 11, 30))
        assert "no statutory holidays" not in caplog.text
        SchedulePublisher(store, ScheduleSection(), TZ, "hall", None, lambda: date(KNOWN, 12, 1))
    assert f"schedule: no statutory holidays or 调休 days for {UNKNOWN}" in caplog.text
