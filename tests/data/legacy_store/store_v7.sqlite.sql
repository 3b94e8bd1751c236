-- A central store made by hall-central at commit 0c2ed9d (schema version 7, before the
-- schedule was stored): sqlite3 .dump of a store filled through its write methods.
-- tests/test_store_schema.py loads it and opens it with the current code.
PRAGMA user_version = 7;
BEGIN TRANSACTION;
CREATE TABLE devices (
        site TEXT NOT NULL,
        device TEXT NOT NULL,
        state TEXT,
        version TEXT,
        pending INTEGER,
        oldest_s REAL,
        dead_letter INTEGER,
        status TEXT,
        status_at TEXT,
        last_event_at TEXT,
        last_received_at TEXT,
        PRIMARY KEY (site, device)
    );
INSERT INTO "devices" VALUES('jiedong','pad-a03','online','0.1.0',3,1.5,0,'{"v": 1, "state": "online", "version": "0.1.0", "outbox": {"pending": 3, "oldest_s": 1.5, "dead_letter": 0}, "components": {}}','2026-11-26T01:00:00.000+00:00','2026-11-26T12:12:03.120+08:00','2026-12-04T15:00:12.657+00:00');
CREATE TABLE events (
        id TEXT PRIMARY KEY,
        device TEXT NOT NULL,
        site TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        at TEXT NOT NULL,
        clock TEXT NOT NULL,
        received_at TEXT NOT NULL,
        data TEXT NOT NULL CHECK (json_valid(data))
    );
INSERT INTO "events" VALUES('0193a5c2-0000-7000-8000-000000000001','pad-a03','jiedong',1,'rating.submitted','2026-11-26T09:12:03.120+08:00','synced','2026-12-04T15:00:12.657+00:00','{"window": "A03", "pad": 1, "staff_id": "S0012", "level": 2, "label": "不满意", "reasons": ["办事效率低"], "invite_id": 7}');
INSERT INTO "events" VALUES('0193a5c2-0000-7000-8000-000000000002','pad-a03','jiedong',2,'attendance.punch','2026-11-26T09:13:03.120+08:00','synced','2026-12-04T15:00:12.657+00:00','{"staff_id": "S0012", "slot": "morning_in", "status": "late", "minutes_off": 4, "distance": 0.41, "liveness": "off"}');
INSERT INTO "events" VALUES('0193a5c2-0000-7000-8000-000000000003','pad-a03','jiedong',3,'rating.submitted','1970-01-01T08:00:00.000+08:00','unsynced','2026-12-04T15:00:12.657+00:00','{"window": "A03", "pad": 1, "staff_id": "S0012", "level": 5, "label": "非常满意", "reasons": [], "invite_id": 7}');
INSERT INTO "events" VALUES('0193a5c2-0000-7000-8000-000000000004','pad-a03','jiedong',4,'window.login','2026-11-26T08:12:03.120+08:00','synced','2026-12-04T15:00:12.657+00:00','{"window": "A03", "pad": 1, "staff_id": "S0012"}');
INSERT INTO "events" VALUES('0193a5c2-0000-7000-8000-000000000005','pad-a03','jiedong',5,'device.test','2026-11-26T09:14:03.120+08:00','synced','2026-12-04T15:00:12.657+00:00','{"note": "ping"}');
INSERT INTO "events" VALUES('0193a5c2-0000-7000-8000-000000000006','kiosk-09','chengxi',6,'attendance.punch','2026-11-26T12:12:03.120+08:00','synced','2026-12-04T15:00:12.657+00:00','{"staff_id": "S0012", "slot": "morning_out", "status": "on_time", "minutes_off": 0, "distance": 0.41, "liveness": "off"}');
INSERT INTO "events" VALUES('0193a5c2-0000-7000-8000-000000000007','pad-a03','jiedong',7,'rating.submitted','9999-12-31T23:59:59-14:00','synced','2026-12-04T15:00:12.657+00:00','{"window": "A03", "pad": 1, "staff_id": "S0012", "level": 2, "label": "不满意", "reasons": ["办事效率低"], "invite_id": 7}');
CREATE TABLE hall_zone (since TEXT PRIMARY KEY, offset_min INTEGER NOT NULL);
INSERT INTO "hall_zone" VALUES('0000-01-01T00:00:00',480);
CREATE TABLE "leave" (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        staff_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('请假', '公出', '补卡')),
        starts TEXT NOT NULL CHECK (date(starts) = starts),
        starts_half TEXT NOT NULL CHECK (starts_half IN ('am', 'pm')),
        ends TEXT NOT NULL CHECK (date(ends) = ends),
        ends_half TEXT NOT NULL CHECK (ends_half IN ('am', 'pm')),
        approver TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        imported_by TEXT NOT NULL,
        imported_at TEXT NOT NULL,
        source TEXT NOT NULL,
        slot TEXT NOT NULL DEFAULT '' CHECK (slot IN ('', 'morning_in', 'morning_out', 'afternoon_in', 'afternoon_out')),
        slot_time TEXT NOT NULL DEFAULT '',
        UNIQUE (staff_id, kind, starts, starts_half, ends, ends_half, slot)
    );
INSERT INTO "leave" VALUES(1,'S0012','请假','2026-11-03','pm','2026-11-03','pm','王主任','','office','2026-12-04T15:00:12.659+00:00','leave.csv','','');
INSERT INTO "leave" VALUES(2,'S0012','补卡','2026-11-04','am','2026-11-04','am','王主任','忘打卡','office','2026-12-04T15:00:12.659+00:00','leave.csv','morning_in','08:29');
CREATE TABLE rejected (
        id TEXT UNIQUE,
        device TEXT,
        reason TEXT NOT NULL,
        payload TEXT,
        received_at TEXT NOT NULL
    );
INSERT INTO "rejected" VALUES('not-a-uuid','pad-a03','id: expected a UUID','{"id":"not-a-uuid"}','2026-12-04T15:00:12.657+00:00');
INSERT INTO "rejected" VALUES(NULL,'evil-01','batch: not JSON','\0garbage','2026-12-04T15:00:12.658+00:00');
CREATE TABLE rejected_counts (
        device TEXT NOT NULL,
        hour TEXT NOT NULL,
        reason TEXT NOT NULL,
        count INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        kept INTEGER NOT NULL,
        PRIMARY KEY (device, hour, reason)
    );
INSERT INTO "rejected_counts" VALUES('pad-a03','2026-12-04T23','id',1,20,1);
INSERT INTO "rejected_counts" VALUES('evil-01','2026-12-04T23','batch',1,9,1);
CREATE TABLE rosters (
        site TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        payload TEXT NOT NULL CHECK (json_valid(payload)),
        published_at TEXT NOT NULL
    );
INSERT INTO "rosters" VALUES('jiedong',3,'{"v":1,"version":3,"staff":[{"id":"S0012","name":"张敏","role":"staff","window":"A03"},{"id":"S0001","name":"李强","role":"chief","window":null,"starts":"2026-01-05"}]}','2026-12-04T15:00:12.659+00:00');
CREATE INDEX events_device_seq ON events (site, device, seq);
CREATE INDEX events_type_at ON events (type, at);
CREATE INDEX leave_dates ON leave (starts, ends);
CREATE VIEW punches AS SELECT
        id, site, device, seq, at, clock, received_at,
        json_extract(data, '$.staff_id') AS staff_id,
        json_extract(data, '$.slot') AS slot,
        json_extract(data, '$.status') AS status,
        json_extract(data, '$.minutes_off') AS minutes_off,
        json_extract(data, '$.distance') AS distance,
        json_extract(data, '$.liveness') AS liveness,
        strftime('%Y-%m-%dT%H:%M:%f', (CASE WHEN (clock = 'synced' AND julianday(at) <= julianday(received_at) + 600 / 86400.0 AND julianday(at) >= julianday('2024-01-01') - (SELECT offset_min FROM hall_zone WHERE since <= strftime('%Y-%m-%dT%H:%M:%S', '2024-01-01') ORDER BY since DESC LIMIT 1) / 1440.0) THEN at ELSE received_at END), (SELECT offset_min FROM hall_zone WHERE since <= strftime('%Y-%m-%dT%H:%M:%S', (CASE WHEN (clock = 'synced' AND julianday(at) <= julianday(received_at) + 600 / 86400.0 AND julianday(at) >= julianday('2024-01-01') - (SELECT offset_min FROM hall_zone WHERE since <= strftime('%Y-%m-%dT%H:%M:%S', '2024-01-01') ORDER BY since DESC LIMIT 1) / 1440.0) THEN at ELSE received_at END)) ORDER BY since DESC LIMIT 1) || ' minutes') || printf('%s%02d:%02d', CASE WHEN (SELECT offset_min FROM hall_zone WHERE since <= strftime('%Y-%m-%dT%H:%M:%S', (CASE WHEN (clock = 'synced' AND julianday(at) <= julianday(received_at) + 600 / 86400.0 AND julianday(at) >= julianday('2024-01-01') - (SELECT offset_min FROM hall_zone WHERE since <= strftime('%Y-%m-%dT%H:%M:%S', '2024-01-01') ORDER BY since DESC LIMIT 1) / 1440.0) THEN at ELSE received_at END)) ORDER BY since DESC LIMIT 1) < 0 THEN '-' ELSE '+' END, abs((SELECT offset_min FROM hall_zone WHERE since <= strftime('%Y-%m-%dT%H:%M:%S', (CASE WHEN (clock = 'synced' AND julianday(at) <= julianday(received_at) + 600 / 86400.0 AND julianday(at) >= julianday('2024-01-01') - (SELECT offset_min FROM hall_zone WHERE since <= strftime('%Y-%m-%dT%H:%M:%S', '2024-01-01') ORDER BY since DESC LIMIT 1) / 1440.0) THEN at ELSE received_at END)) ORDER BY since DESC LIMIT 1)) / 60, abs((SELECT offset_min FROM hall_zone WHERE since <= strftime('%Y-%m-%dT%H:%M:%S', (CASE WHEN (clock = 'synced' AND julianday(at) <= julianday(received_at) + 600 / 86400.0 AND julianday(at) >= julianday('2024-01-01') - (SELECT offset_min FROM hall_zone WHERE since <= strftime('%Y-%m-%dT%H:%M:%S', '2024-01-01') ORDER BY since DESC LIMIT 1) / 1440.0) THEN at ELSE received_at END)) ORDER BY since DESC LIMIT 1)) % 60) AS filed_at
      FROM events WHERE type = 'attendance.punch';
CREATE VIEW ratings AS SELECT
        id, site, device, seq, at, clock, received_at,
        json_extract(data, '$.window') AS window,
        json_extract(data, '$.pad') AS pad,
        json_extract(data, '$.staff_id') AS staff_id,
        json_extract(data, '$.level') AS level,
        json_extract(data, '$.label') AS label,
        json_extract(data, '$.reasons') AS reasons,
        json_extract(data, '$.invite_id') AS invite_id,
        strftime('%Y-%m-%dT%H:%M:%f', (CASE WHEN (clock = 'synced' AND julianday(at) <= julianday(received_at) + 600 / 86400.0 AND julianday(at) >= julianday('2024-01-01') - (SELECT offset_min FROM hall_zone WHERE since <= strftime('%Y-%m-%dT%H:%M:%S', '2024-01-01') ORDER BY since DESC LIMIT 1) / 1440.0) THEN at ELSE received_at END), (SELECT offset_min FROM hall_zone WHERE since <= strftime('%Y-%m-%dT%H:%M:%S', (CASE WHEN (clock = 'synced' AND julianday(at) <= julianday(received_at) + 600 / 86400.0 AND julianday(at) >= julianday('2024-01-01') - (SELECT offset_min FROM hall_zone WHERE since <= strftime('%Y-%m-%dT%H:%M:%S', '2024-01-01') ORDER BY since DESC LIMIT 1) / 1440.0) THEN at ELSE received_at END)) ORDER BY since DESC LIMIT 1) || ' minutes') || printf('%s%02d:%02d', CASE WHEN (SELECT offset_min FROM hall_zone WHERE since <= strftime('%Y-%m-%dT%H:%M:%S', (CASE WHEN (clock = 'synced' AND julianday(at) <= julianday(received_at) + 600 / 86400.0 AND julianday(at) >= julianday('2024-01-01') - (SELECT offset_min FROM hall_zone WHERE since <= strftime('%Y-%m-%dT%H:%M:%S', '2024-01-01') ORDER BY since DESC LIMIT 1) / 1440.0) THEN at ELSE received_at END)) ORDER BY since DESC LIMIT 1) < 0 THEN '-' ELSE '+' END, abs((SELECT offset_min FROM hall_zone WHERE since <= strftime('%Y-%m-%dT%H:%M:%S', (CASE WHEN (clock = 'synced' AND julianday(at) <= julianday(received_at) + 600 / 86400.0 AND julianday(at) >= julianday('2024-01-01') - (SELECT offset_min FROM hall_zone WHERE since <= strftime('%Y-%m-%dT%H:%M:%S', '2024-01-01') ORDER BY since DESC LIMIT 1) / 1440.0) THEN at ELSE received_at END)) ORDER BY since DESC LIMIT 1)) / 60, abs((SELECT offset_min FROM hall_zone WHERE since <= strftime('%Y-%m-%dT%H:%M:%S', (CASE WHEN (clock = 'synced' AND julianday(at) <= julianday(received_at) + 600 / 86400.0 AND julianday(at) >= julianday('2024-01-01') - (SELECT offset_min FROM hall_zone WHERE since <= strftime('%Y-%m-%dT%H:%M:%S', '2024-01-01') ORDER BY since DESC LIMIT 1) / 1440.0) THEN at ELSE received_at END)) ORDER BY since DESC LIMIT 1)) % 60) AS filed_at
      FROM events WHERE type = 'rating.submitted';
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('leave',3);
COMMIT;
