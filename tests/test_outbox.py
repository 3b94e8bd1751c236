"""The durable outbox: ordering, settling, dedupe, size cap, crash safety, bad files."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agent.outbox import Outbox, OutboxFullError

REPO = Path(__file__).resolve().parents[1]


def open_box(path: Path, **kw) -> Outbox:
    kw.setdefault("min_free_bytes", 0)
    return Outbox(path, device="test-01", site="jiedong", clock=lambda: "synced", **kw)


def test_append_assigns_increasing_seq_and_pending_is_in_order(outbox):
    events = [outbox.append("device.test", {"note": str(i)}).event for i in range(5)]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    pending = outbox.pending(10)
    assert [p.seq for p in pending] == [1, 2, 3, 4, 5]
    assert json.loads(pending[2].body) == events[2]
    assert [p.seq for p in outbox.pending(2, after_seq=2)] == [3, 4]


def test_seq_survives_reopen_even_when_everything_was_acked(tmp_path):
    box = open_box(tmp_path / "o.db")
    ids = [box.append("device.test", {}).event["id"] for _ in range(3)]
    assert box.ack(ids) == 3
    box.close()
    box = open_box(tmp_path / "o.db")
    assert box.append("device.test", {}).event["seq"] == 4
    box.close()


def test_ack_removes_only_named_events_and_ignores_unknown(outbox):
    a, b, c = (outbox.append("device.test", {}).event["id"] for _ in range(3))
    assert outbox.ack([b, "0193a5c2-0000-7000-8000-000000000000"]) == 1
    assert [p.id for p in outbox.pending(10)] == [a, c]
    assert outbox.ack([b]) == 0  # acked again (the centre re-acks duplicates): harmless


def test_reject_moves_to_dead_letter(outbox):
    a = outbox.append("rating.submitted", {"level": 9}).event["id"]
    assert outbox.reject(a, "schema: level must be 1-5")
    assert outbox.pending(10) == []
    (dead,) = outbox.dead_letters()
    assert dead["id"] == a and dead["reason"] == "schema: level must be 1-5"
    stats = outbox.stats()
    assert (stats.pending, stats.dead_letter) == (0, 1)
    assert not outbox.reject(a, "again")  # already moved: nothing to do


def test_dedupe_key_records_once_and_returns_the_original(outbox):
    first = outbox.append("rating.submitted", {"level": 5}, dedupe_key="pad:x:1:7")
    again = outbox.append("rating.submitted", {"level": 5}, dedupe_key="pad:x:1:7")
    assert not first.duplicate and again.duplicate
    assert again.event["id"] == first.event["id"]
    assert outbox.stats().pending == 1
    outbox.ack([first.event["id"]])
    # Still a duplicate after the centre acked it: the key outlives the event.
    third = outbox.append("rating.submitted", {"level": 5}, dedupe_key="pad:x:1:7")
    assert third.duplicate and third.event["id"] == first.event["id"]
    assert outbox.forget_dedupe("pad:x:1:") == 1
    assert not outbox.append("rating.submitted", {"level": 5}, dedupe_key="pad:x:1:7").duplicate


def test_append_many_is_one_transaction_with_consecutive_seq(outbox):
    results = outbox.append_many([("device.test", {"n": i}, None, None) for i in range(50)])
    assert [r.event["seq"] for r in results] == list(range(1, 51))


def test_listener_called_after_commit(outbox):
    seen = []
    outbox.add_listener(lambda: seen.append(outbox.stats().pending))
    outbox.append("device.test", {})
    assert seen == [1]


def test_stats_oldest_age(outbox):
    assert outbox.stats().oldest_s is None
    outbox.append("device.test", {})
    stats = outbox.stats()
    assert 0 <= stats.oldest_s < 5 and stats.bytes > 0 and stats.last_seq == 1


def test_unknown_event_type_is_refused_and_nothing_recorded(outbox):
    with pytest.raises(ValueError):
        outbox.append("bogus.type", {})
    assert outbox.stats().pending == 0 and outbox.stats().last_seq == 0


def test_below_free_space_floor_append_refuses(tmp_path):
    box = open_box(tmp_path / "o.db", min_free_bytes=2**62)
    with pytest.raises(OutboxFullError, match=r"MiB free on the disk .*sync.min_free_mb"):
        box.append("rating.submitted", {"level": 5})
    box.min_free_bytes = 0
    assert box.stats().pending == 0  # nothing half-recorded


def test_cap_drops_device_events_first_and_keeps_records(tmp_path):
    box = open_box(tmp_path / "o.db", max_bytes=256 * 1024)
    ratings, tests = [], []
    for i in range(3000):
        tests.append(box.append("device.test", {"note": "x" * 200}).event["id"])
        if i % 10 == 0:
            ratings.append(box.append("rating.submitted", {"level": 5, "n": i}).event["id"])
    kinds: dict[str, int] = {}
    bodies = []
    for p in box.pending(100_000):
        kinds[p.type] = kinds.get(p.type, 0) + 1
        bodies.append(json.loads(p.body))
    assert kinds["rating.submitted"] == len(ratings) == 300  # never dropped
    # The oldest device events went first: what is left of them is exactly the newest ones,
    # in order (the dropped ones are a prefix of the append order, and some were dropped).
    kept = [b["id"] for b in bodies if b["type"] == "device.test"]
    assert 0 < len(kept) < len(tests)
    assert kept == tests[len(tests) - len(kept) :]
    faults = [b for b in bodies if b["type"] == "device.fault"]
    assert len(faults) == 1 and faults[0]["data"]["component"] == "disk"
    assert "cap" in faults[0]["data"]["detail"]
    # seq stays strictly increasing in what is left
    seqs = [b["seq"] for b in bodies]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # Once acked back under the cap, recovery is recorded.
    box.ack([b["id"] for b in bodies if b["type"] != "device.fault"])
    box.append("device.test", {})
    types = [p.type for p in box.pending(100)]
    assert "device.recovered" in types
    box.close()


def test_garbage_file_is_moved_aside_not_overwritten(tmp_path):
    path = tmp_path / "outbox.db"
    path.write_bytes(b"this is not sqlite" * 100)
    box = open_box(path)
    assert box.moved_aside is not None
    assert box.moved_aside.read_bytes() == b"this is not sqlite" * 100
    (event,) = [json.loads(p.body) for p in box.pending(10)]
    assert event["type"] == "device.fault" and str(box.moved_aside) in event["data"]["detail"]
    # seq restarts above anything the old file can have used (it never repeats)
    assert event["seq"] > 10**12
    box.close()


def test_foreign_sqlite_database_is_moved_aside(tmp_path):
    path = tmp_path / "outbox.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (name TEXT)")
    conn.execute("INSERT INTO customers VALUES ('x')")
    conn.commit()
    conn.close()
    box = open_box(path)
    assert box.moved_aside is not None
    conn = sqlite3.connect(box.moved_aside)
    assert conn.execute("SELECT name FROM customers").fetchall() == [("x",)]
    conn.close()
    box.close()


def test_second_process_appending_gets_distinct_seq(tmp_path):
    """Two processes append at the same time (ping beside a running agent): every seq is
    distinct and each process sees its own seq strictly increasing. The child opens its
    outbox, says so, and both start on the same signal; each pauses 5 ms between appends
    (as real producers do): SQLite's lock is not fair, and a process appending back to back
    takes it again before the other's busy handler retries, so without the pause the
    appends would not interleave at all."""
    box = open_box(tmp_path / "o.db")
    code = textwrap.dedent(
        f"""
        import sys, threading
        from agent.outbox import Outbox
        box = Outbox({str(tmp_path / "o.db")!r}, device="test-01", site="jiedong",
                     clock=lambda: "synced", min_free_bytes=0)
        print("ready", flush=True)
        sys.stdin.readline()  # go
        for i in range(200):
            box.append("device.test", {{"from": "child", "i": i}})
            threading.Event().wait(0.005)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert child.stdout.readline().strip() == b"ready"
    child.stdin.write(b"go\n")
    child.stdin.flush()
    for i in range(200):
        box.append("device.test", {"from": "parent", "i": i})
        threading.Event().wait(0.005)
    assert child.wait(60) == 0
    events = [json.loads(p.body) for p in box.pending(1000)]
    seqs = [e["seq"] for e in events]
    assert len(seqs) == 400 and len(set(seqs)) == 400
    by = {
        who: [
            e["seq"]
            for e in sorted(events, key=lambda e: e["data"]["i"])
            if e["data"]["from"] == who
        ]
        for who in ("parent", "child")
    }
    for who, own in by.items():
        assert own == sorted(own), who  # in append order, strictly increasing
    # They did overlap: each process appended while the other was between its first and last.
    assert by["parent"][0] < by["child"][-1] and by["child"][0] < by["parent"][-1]
    box.close()


CRASH_CHILD = """
import sys
from agent.outbox import Outbox
box = Outbox(sys.argv[1], device="test-01", site="jiedong", clock=lambda: "synced",
             min_free_bytes=0)
i = 0
while True:
    if i % 7 == 0:
        ids = [r.event["id"] for r in box.append_many(
            [("rating.submitted", {"level": 5, "i": i}, None, None)] * 3)]
    else:
        ids = [box.append("attendance.punch", {"i": i}).event["id"]]
    for event_id in ids:
        sys.stdout.write(event_id + "\\n")
    sys.stdout.flush()
    i += 1
"""


@pytest.mark.slow
def test_sigkill_never_loses_an_event_whose_append_returned(tmp_path):
    db = tmp_path / "crash.db"
    for round_no in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", CRASH_CHILD, str(db)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        returned = []
        assert child.stdout is not None
        while len(returned) < 150 + 50 * round_no:
            line = child.stdout.readline()
            assert line, "child died early"
            returned.append(line.strip())
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        returned.extend(x.strip() for x in child.stdout.read().splitlines())  # printed in time
        box = open_box(db)
        stored = {p.id for p in box.pending(1_000_000)}
        seqs = [p.seq for p in box.pending(1_000_000)]
        box.close()
        missing = [i for i in returned if i not in stored]
        assert missing == [], f"round {round_no}: {len(missing)} returned events lost"
        assert seqs == sorted(set(seqs))


class OutboxMachine(RuleBasedStateMachine):
    """Any interleaving of append/ack/reject/reopen never loses or duplicates an event."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name) / "o.db"
        self.box = open_box(self.path)
        self.pending: dict[str, int] = {}  # id -> seq
        self.dead: set[str] = set()
        self.acked: set[str] = set()
        self.last_seq = 0

    def teardown(self) -> None:
        self.box.close()
        self.dir.cleanup()

    @rule(
        kind=st.sampled_from(["attendance.punch", "rating.submitted", "window.login"]),
        n=st.integers(1, 4),
    )
    def append(self, kind: str, n: int) -> None:
        results = self.box.append_many([(kind, {"n": i}, None, None) for i in range(n)])
        for r in results:
            assert r.event["seq"] > self.last_seq
            self.last_seq = r.event["seq"]
            self.pending[r.event["id"]] = r.event["seq"]

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def ack_some(self, data: st.DataObject) -> None:
        ids = data.draw(st.lists(st.sampled_from(sorted(self.pending)), unique=True))
        extra = data.draw(st.lists(st.sampled_from(sorted(self.acked) or ["x"]), max_size=2))
        removed = self.box.ack(ids + extra)
        assert removed == len(ids)
        for i in ids:
            del self.pending[i]
            self.acked.add(i)

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def reject_one(self, data: st.DataObject) -> None:
        event_id = data.draw(st.sampled_from(sorted(self.pending)))
        assert self.box.reject(event_id, "bad schema")
        del self.pending[event_id]
        self.dead.add(event_id)

    @rule()
    def reopen(self) -> None:
        self.box.close()
        self.box = open_box(self.path)

    @invariant()
    def matches_model(self) -> None:
        stored = self.box.pending(100_000)
        assert {p.id: p.seq for p in stored} == self.pending
        assert [p.seq for p in stored] == sorted(self.pending.values())
        assert {d["id"] for d in self.box.dead_letters(100_000)} == self.dead


OutboxMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_outbox_state_machine = OutboxMachine.TestCase


def test_locked_database_is_an_error_not_corruption(tmp_path):
    from agent.outbox import OutboxError

    path = tmp_path / "o.db"
    box = open_box(path)
    kept = box.append("rating.submitted", {"level": 5}).event["id"]
    box.close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(OutboxError, match="cannot open"):
            open_box(path, busy_timeout_s=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name) == []
    box = open_box(path)
    assert box.moved_aside is None and [p.id for p in box.pending(10)] == [kept]
    box.close()


def test_newer_schema_is_refused_and_left_in_place(tmp_path):
    from agent.outbox import OutboxError

    path = tmp_path / "o.db"
    box = open_box(path)
    box.append("rating.submitted", {"level": 5})
    box.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(OutboxError, match="newer hall-agent"):
        open_box(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1
    conn.close()
    assert [p.name for p in tmp_path.iterdir() if "corrupt" in p.name] == []


def test_cap_drops_only_what_is_needed(tmp_path):
    """Dropping scattered rows must bring the count down (rows, not pages, are counted)."""
    cap = 1024 * 1024
    box = open_box(tmp_path / "o.db", max_bytes=cap)
    first_fault = None
    for i in range(20_000):
        box.append("rating.submitted" if i % 10 == 0 else "device.test", {"note": "y" * 100})
        faulted = i % 50 == 0 and any(p.type == "device.fault" for p in box.pending(100_000))
        if first_fault is None and faulted:
            first_fault = i
        if first_fault is not None and i > first_fault + 300:
            break
    assert first_fault is not None
    kinds = [p.type for p in box.pending(1_000_000)]
    stats = box.stats()
    assert kinds.count("device.test") > 1000  # most device events survive a drop
    assert stats.bytes <= cap
    assert kinds.count("device.fault") == 1
    box.close()


def test_nan_is_refused_with_a_clear_error(outbox):
    with pytest.raises(ValueError, match=r"not valid JSON .*finite numbers"):
        outbox.append("attendance.punch", {"distance": float("nan")})
    assert outbox.stats().pending == 0


def test_dedupe_age_is_the_time_since_the_key_was_stored(outbox, monkeypatch):
    import time

    assert outbox.dedupe_age("pad:/dev/ttyUSB0:001:q0:000") is None
    before = time.time()
    outbox.append("device.test", {}, dedupe_key="pad:/dev/ttyUSB0:001:q0:000")
    after = time.time()
    monkeypatch.setattr(time, "time", lambda: after + 100.0)  # 100 s later
    age = outbox.dedupe_age("pad:/dev/ttyUSB0:001:q0:000")
    assert age is not None and 100.0 <= age <= 100.0 + (after - before)
    monkeypatch.undo()
    outbox.forget_dedupe("pad:/dev/ttyUSB0:001:")
    assert outbox.dedupe_age("pad:/dev/ttyUSB0:001:q0:000") is None
