#!/usr/bin/env bash
# Quick start, step 1: set up and run the main job end to end on this machine.
#
# A central collector (SQLite store), a window device with one HallPad v1 pad, and a pad
# simulator joined to the device by a pty pair; the simulator plays config/demo.pad (log-in,
# ratings with line noise and a lost ack, pause), `ping` proves the path, and the rows that
# reach the central store are printed. Uses the local Mosquitto (127.0.0.1:1883), site "demo".
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
bash scripts/setup.sh
bash scripts/services.sh
command -v socat >/dev/null || { echo "demo.sh: needs socat (apt-get install socat)" >&2; exit 1; }
bin="$repo/.venv/bin"

work=$(mktemp -d /tmp/hall-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

cat > "$work/central.toml" <<TOML
[mqtt]
url = "mqtt://127.0.0.1:1883"
[store]
url = "sqlite:///$work/hall.db"
TOML
cat > "$work/window.toml" <<TOML
[device]
id = "pad-a01"
site = "demo"
data_dir = "$work/device"
[mqtt]
url = "mqtt://127.0.0.1:1883"
[sync]
ack_timeout_s = 5
[[pad]]
port = "$work/pad-agent"
address = 1
window = "A01"
TOML
cat > "$work/roster.json" <<'JSON'
{"v": 1, "version": 1, "staff": [
  {"id": "S001", "name": "张三", "role": "staff", "window": "A01"},
  {"id": "S002", "name": "李四", "role": "chief", "window": null}]}
JSON

echo "== validating the configs"
"$bin/hall-agent" -c "$work/window.toml" check --only config
"$bin/hall-central" -c "$work/central.toml" roster publish "$work/roster.json" --site demo

echo "== starting the collector, the pty pair and the window agent (logs in $work)"
"$bin/hall-central" -c "$work/central.toml" -v run > "$work/central.log" 2>&1 & pids+=($!)
socat pty,raw,echo=0,link="$work/pad-agent" pty,raw,echo=0,link="$work/pad-sim" \
  > "$work/socat.log" 2>&1 & pids+=($!)
for _ in $(seq 1 50); do [ -e "$work/pad-sim" ] && [ -e "$work/pad-agent" ] && break; sleep 0.1; done
"$bin/hall-agent" -c "$work/window.toml" -v run > "$work/agent.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do [ -f "$work/device/roster.json" ] && break; sleep 0.1; done

echo "== the pad simulator plays config/demo.pad"
"$bin/hall-agent" simulate pad --port "$work/pad-sim" --address 1 --script config/demo.pad

echo "== ping: device.test events to the centre and back"
"$bin/hall-agent" -c "$work/window.toml" ping --count 3 --timeout 30

echo "== waiting for the outbox to drain"
for _ in $(seq 1 100); do
  pending=$("$bin/hall-agent" -c "$work/window.toml" outbox --json | "$bin/python" -c \
    'import json,sys; print(json.load(sys.stdin)["pending"])')
  [ "$pending" = 0 ] && break
  sleep 0.2
done
"$bin/hall-agent" -c "$work/window.toml" outbox

echo "== rows in the central store ($work/hall.db)"
"$bin/python" - "$work/hall.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for seq, kind, data in db.execute("SELECT seq, type, data FROM events ORDER BY device, seq"):
    print(f"  #{seq:<3} {kind:<18} {data}")
PY
echo "== devices"
"$bin/hall-central" -c "$work/central.toml" devices
echo "== ratings report"
# No --month: the current month in the hall's timezone (central.timezone), whatever the
# host's own timezone is.
"$bin/hall-central" -c "$work/central.toml" report ratings
