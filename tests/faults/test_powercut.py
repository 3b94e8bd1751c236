"""A power cut on a window device, as near as a test machine gets to one.

A real ``hall-agent run`` with two pads over socat ptys rates as fast as the pads' stop-and-wait
allows, so its outbox (SQLite, WAL, ``synchronous=FULL``: agent/outbox.py) is written all the
time: appends for the pads, deletes for the centre's acks. Each of ``CYCLES`` cycles, at random
instants:

1. **torn snapshots**: ``SNAPSHOTS`` copies of ``outbox.db`` + ``-wal`` + ``-shm`` taken while
   the agent writes. Each must pass ``PRAGMA integrity_check``, open as an outbox
   (``agent.outbox.Outbox``, not moved aside as corrupt) and hold every rating a pad saw
   acked before the copy began, unless the centre had stored it already;
2. **the cut**: SIGKILL of the agent mid-write, then ``echo 1 > /proc/sys/vm/drop_caches``
   (root, where the machine allows it) so that the restarted agent reads the outbox back from
   the disk, not from the page cache. The files as the agent left them (copied aside) pass
   the same checks, and every event that was in the outbox just before the kill and is gone
   from it afterwards (the centre's ack deleted it) is in the central store;
3. the agent starts again on the same files: it acks the pads again and never moves the
   outbox aside.

At the end, once drained: the history check (tests/faults/history.py: every rating a pad saw
acked stored exactly once, every seq the outbox recorded stored once, no tag twice) and no
event id stored twice; so the resends after each restart (the agent's of its outbox, the
pads' of their unacked frames) were deduplicated by id and by the pads' dedupe keys.

What this does not test. SIGKILL leaves every ``write(2)`` the agent made in the kernel's page
cache, and the kernel goes on to write it out; ``drop_caches`` only discards clean pages (the
ones already on the disk), so the restart reads back what the outbox fsynced, while dirty
pages stay in memory and are never lost. So this checks crash consistency of what reached the
kernel, not the torn or reordered sector writes, lost volatile disk caches or lying fsyncs of
a real power loss; that takes a block-level write log replayed at every flush (dm-log-writes)
or real power pulls, neither of which a CI runner offers. The snapshots add what a copy can:
the WAL's last frame may be copied half-written, as an unfinished write at the moment of a cut
would leave it, and SQLite must ignore it by its checksums. They are taken inside a read
transaction: it keeps the checkpointer from copying WAL frames into ``outbox.db`` during the
copy, because a plain ``cp`` of two files at two instants makes states no crash can
(a main file older than the WAL it is paired with) and would test ``cp``, not the outbox.

Where ``drop_caches`` cannot be written (no root, a container) the cycles still run, with
the snapshots; the test says so in a warning and in its ``drop_caches`` property, never by
skipping.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import signal
import sqlite3
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.hall import Device, Hall
from tests.faults.history import check_history

CYCLES = 8
SNAPSHOTS = 3  # torn copies per cycle
SEED = 20261204
DROP_CACHES = Path("/proc/sys/vm/drop_caches")
SIDE_FILES = ("", "-wal", "-shm")
WAL_HEADER, WAL_FRAME = 32, 24 + 4096  # the outbox's page size is SQLite's default, 4096


def drop_caches() -> str | None:
    """Drop the clean page cache (all of it: it is machine-wide); None if done, else why not.

    No ``sync`` first: that would write the dead agent's unsynced pages out, and the point is
    that only what the outbox fsynced must be needed."""
    try:
        DROP_CACHES.write_text("1\n")
    except OSError as exc:
        return f"{DROP_CACHES}: {exc.strerror or exc}"
    return None


def copy_outbox(data_dir: Path, dest: Path) -> Path:
    """Copy outbox.db, -wal and -shm (those that exist) into ``dest``; returns the copy."""
    dest.mkdir(parents=True)
    for suffix in SIDE_FILES:
        src = data_dir / f"outbox.db{suffix}"
        with contextlib.suppress(FileNotFoundError):  # the WAL may be gone (clean close)
            shutil.copyfile(src, dest / src.name)
    return dest / "outbox.db"


def snapshot_live(data_dir: Path, dest: Path) -> Path:
    """A copy while the agent writes, inside a read transaction (see the module docstring)."""
    src = data_dir / "outbox.db"
    with contextlib.closing(sqlite3.connect(f"file:{src}?mode=ro", uri=True)) as conn:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM outbox").fetchone()  # the read lock is taken here
        try:
            return copy_outbox(data_dir, dest)
        finally:
            conn.execute("COMMIT")


def image_rows(db: Path) -> tuple[str, set[str], dict[str, set[int]]]:
    """(integrity_check, ids in outbox and dead letters, rating tags per window) of a copy.

    The copy is opened read-write: that replays its WAL, as the agent's next start would."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        check = "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
        if check != "ok":
            return check, set(), {}
        ids = {r[0] for r in conn.execute("SELECT id FROM outbox UNION SELECT id FROM dead_letter")}
        tags: dict[str, set[int]] = {}
        for etype, body in conn.execute("SELECT type, body FROM outbox"):
            if etype == "rating.submitted":
                data = json.loads(body)["data"]
                tags.setdefault(data["window"], set()).add(data.get("invite_id"))
    return check, ids, tags


def opens_as_outbox(db: Path) -> Path | None:
    """Open the copy the way the agent does; the path it was moved aside to, or None."""
    from agent.outbox import Outbox

    box = Outbox(db, device="win-01", site="jiedong", min_free_bytes=0)
    try:
        return box.moved_aside
    finally:
        box.close()


def stored(hall: Hall) -> tuple[set[str], dict[str, set[int]]]:
    """Event ids of win-01 in the central store, and its rating tags per window."""
    with contextlib.closing(hall.open_store()) as store:
        rows = store.query("SELECT id, type, data FROM events WHERE device = 'win-01'")
    ids, tags = set(), {}
    for event_id, etype, data in rows:
        ids.add(str(event_id))
        if etype == "rating.submitted":
            d = data if isinstance(data, dict) else json.loads(data)
            tags.setdefault(d["window"], set()).add(d.get("invite_id"))
    return ids, tags


def acked_tags(dev: Device) -> dict[str, set[int]]:
    return {pad.window: set(pad.acked) for pad in dev.pads}


def check_image(
    what: str,
    db: Path,
    acked_before: dict[str, set[int]],
    stored_tags: Callable[[], dict[str, set[int]]],
    problems: list[str],
) -> tuple[set[str], dict[str, set[int]]]:
    """The checks every image gets (snapshot or crash); returns its event ids and rating tags.

    The agent's own open comes first, on the copy as it was taken: it runs its quick_check
    and replays the WAL; the rows are read after."""
    moved = opens_as_outbox(db)
    if moved is not None:
        problems.append(f"{what}: the outbox was moved aside as unreadable to {moved.name}")
        return set(), {}
    check, ids, tags = image_rows(db)
    if check != "ok":
        problems.append(f"{what}: integrity_check: {check}")
        return set(), {}
    # Read after the copy: what left the outbox before it was stored before it (the collector
    # acks only what it stored), and the store only grows. Each pad numbers its own tags.
    in_store = stored_tags()
    for window, acked in acked_before.items():
        missing = acked - tags.get(window, set()) - in_store.get(window, set())
        if missing:
            problems.append(
                f"{what}: {window} ratings acked to the pad are gone: {sorted(missing)}"
            )
    return ids, tags


def wal_torn(db: Path) -> bool:
    """The copied WAL ends inside a frame: a write was under way at the instant of the copy."""
    wal = db.with_name(db.name + "-wal")
    size = wal.stat().st_size if wal.exists() else 0
    return size > WAL_HEADER and (size - WAL_HEADER) % WAL_FRAME != 0


@pytest.mark.slow
def test_power_cut_during_outbox_writes(tmp_path, record_property):
    rng = random.Random(SEED)
    hall = Hall(tmp_path / "hall", seed=SEED, sync={"ack_timeout_s": 5}).start()
    problems: list[str] = []
    drops: list[str | None] = []
    torn = snapshots = resent_stored = pad_resends = 0
    t_start = time.monotonic()

    def tags_in() -> dict[str, set[int]]:
        return stored(hall)[1]

    try:
        dev = hall.add_window("win-01", ("A01", "A02"))
        assert hall.wait_connected(dev, 30)
        hall.rate_everywhere(0.02)
        time.sleep(2)
        for cycle in range(CYCLES):
            # 1. torn snapshots at random instants while the agent writes
            for n in range(SNAPSHOTS):
                time.sleep(rng.uniform(0.05, 0.6))
                before = acked_tags(dev)
                db = snapshot_live(dev.data_dir, tmp_path / f"snap-{cycle}-{n}")
                snapshots += 1
                torn += wal_torn(db)
                check_image(f"cycle {cycle} snapshot {n}", db, before, tags_in, problems)

            # 2. the cut: what the outbox held just before, the kill, the caches
            time.sleep(rng.uniform(0.05, 1.0))
            outbox_before = {r[0] for r in dev.outbox_query("SELECT id FROM outbox")}
            before = acked_tags(dev)
            dev.agent.signal(signal.SIGKILL)
            assert dev.agent.wait(5) is not None
            dev.agent.reap_group()
            hall.faults += 1
            drops.append(drop_caches())
            db = copy_outbox(dev.data_dir, tmp_path / f"crash-{cycle}")
            ids, tags = check_image(f"cycle {cycle} crash", db, before, tags_in, problems)
            in_store, _ = stored(hall)
            # The two resends the restart makes, counted so that a run shows they happened:
            # events the centre stored whose ack died with the agent (resent, dedupe by id),
            # and ratings committed but not yet acked to their pad (the pad resends the frame,
            # the outbox's dedupe key answers with the first event).
            resent_stored += len(ids & in_store)
            pad_resends += sum(len(t - before.get(w, set())) for w, t in tags.items())
            # Gone from the outbox between the sample and the kill: only the centre's ack
            # deletes (a reject moves to dead_letter, which `ids` includes).
            unstored = outbox_before - ids - in_store
            if ids and unstored:
                problems.append(f"cycle {cycle}: acked by the centre, not stored: {unstored}")

            # 3. the agent starts again on the same files and records again
            acked_at_kill = sum(len(p.acked) for p in dev.pads)
            dev.agent.start()
            deadline = time.monotonic() + 30
            while sum(len(p.acked) for p in dev.pads) <= acked_at_kill:
                if time.monotonic() > deadline or not dev.agent.alive():
                    problems.append(f"cycle {cycle}: the restarted agent acked nothing in 30 s")
                    break
                time.sleep(0.05)
        aside = sorted(p.name for p in dev.data_dir.glob("outbox.db.corrupt-*"))
        if aside:
            problems.append(f"the agent moved its outbox aside: {aside}")
        hall.stop_rating()
        assert hall.wait_drained(60) is not None, "not drained 60 s after the last cut"
        time.sleep(0.5)
        history = check_history(hall)
        with contextlib.closing(hall.open_store()) as store:
            twice = store.query("SELECT id FROM events GROUP BY id HAVING count(*) > 1")
    finally:
        hall.close()

    dropped = sum(d is None for d in drops)
    record_property("cycles", CYCLES)
    record_property("snapshots", snapshots)
    record_property("snapshots_with_torn_wal_tail", torn)
    record_property("resent_already_stored", resent_stored)
    record_property("committed_not_acked_to_pad", pad_resends)
    record_property("drop_caches", f"{dropped}/{len(drops)}" if dropped else drops[0])
    record_property("history", history.as_dict())
    record_property("seconds", round(time.monotonic() - t_start, 1))
    print(
        f"power cut: {CYCLES} cuts, drop_caches {dropped}/{len(drops)}, {snapshots} snapshots "
        f"({torn} with a torn WAL tail), at the cuts {resent_stored} events stored but not acked "
        f"and {pad_resends} ratings committed but not acked to the pad, {history}, "
        f"{time.monotonic() - t_start:.0f} s"
    )
    if dropped < len(drops):
        # Recorded, not skipped: the cuts and snapshots ran, the cache was not dropped.
        warnings.warn(
            f"page cache not dropped ({drops[0]}): the restarts may have read the outbox from "
            "memory; only the snapshots and SIGKILL were tested",
            stacklevel=1,
        )
    assert not problems, "\n".join(problems[:30])
    assert not twice, f"event ids stored twice: {twice[:10]}"
    assert history.lost == 0 and history.duplicated == 0 and history.ok, str(history)
    assert history.acked > 0 and history.stored >= history.acked, str(history)


def test_the_image_checks_see_a_torn_or_emptied_outbox(tmp_path):
    """The checks can fail: a copy with a page of garbage is moved aside by the agent's open
    (or fails integrity_check), and a rating acked to its pad that is neither in the copy nor
    in the store is reported as gone."""
    from agent.outbox import Outbox

    data = tmp_path / "data"
    box = Outbox(data / "outbox.db", device="win-01", site="jiedong", min_free_bytes=0)
    for tag in range(1, 201):
        box.append("rating.submitted", {"window": "A01", "pad": 1, "level": 5, "invite_id": tag})
    box.close()

    problems: list[str] = []
    good = copy_outbox(data, tmp_path / "good")
    ids, tags = check_image("good", good, {"A01": {1, 2, 200}}, dict, problems)
    assert not problems and len(ids) == 200 and tags["A01"] == set(range(1, 201))
    check_image("store", copy_outbox(data, tmp_path / "s"), {"A01": {201}}, dict, problems)
    assert problems == ["store: A01 ratings acked to the pad are gone: [201]"]
    check_image(
        "stored",
        copy_outbox(data, tmp_path / "t"),
        {"A01": {201}},
        lambda: {"A01": {201}},
        problems,
    )
    assert len(problems) == 1  # stored centrally: not gone

    problems.clear()
    torn = copy_outbox(data, tmp_path / "torn")
    with contextlib.closing(sqlite3.connect(torn)) as conn:
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'outbox'").fetchone()
    with open(torn, "r+b") as f:
        f.seek(4096 * (root[0] - 1))  # the outbox table's root page, header and cells
        f.write(b"\xa5" * 4096)
    check_image("torn", torn, {"A01": {1}}, dict, problems)
    assert len(problems) == 1 and problems[0].startswith("torn: "), problems
