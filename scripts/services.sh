#!/usr/bin/env bash
# Start the local services the integration tests use, if they are not running yet:
# Mosquitto on 127.0.0.1:1883 and PostgreSQL on 127.0.0.1:5432 (database `test`).
# Exits non-zero when a tool is missing or a service cannot be brought up: CI must stop here,
# not go on and skip the tests that need it (tests/conftest.py require_or_skip).
# HALL_SERVICES_MQTT_PORT / HALL_SERVICES_PG_PORT / HALL_SERVICES_WAIT_S override the ports
# and the wait (seconds), for the script's own test.
set -uo pipefail

MQTT_PORT=${HALL_SERVICES_MQTT_PORT:-1883}
PG_PORT=${HALL_SERVICES_PG_PORT:-5432}
WAIT_S=${HALL_SERVICES_WAIT_S:-10}
failed=0

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

need_apt=()
command -v mosquitto >/dev/null || need_apt+=(mosquitto mosquitto-clients)
command -v psql >/dev/null || need_apt+=(postgresql)
command -v socat >/dev/null || need_apt+=(socat)
# Headless browser tests of the hall board and the HTML report (tests/test_board.py,
# tests/test_report_formats.py) and CJK glyphs for their text.
command -v chromium >/dev/null || need_apt+=(chromium)
[ -n "$(fc-list :lang=zh 2>/dev/null)" ] || need_apt+=(fonts-noto-cjk)  # no pipe: grep -q would cut it short under pipefail
command -v faketime >/dev/null || need_apt+=(faketime)  # libfaketime: the fault suite steps a device clock
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" \
      || { echo "services.sh: could not install ${need_apt[*]}" >&2; failed=1; }
  else
    echo "services.sh: missing ${need_apt[*]}; install them (apt-get install ${need_apt[*]})" >&2
    failed=1
  fi
fi

if ! port_open "$MQTT_PORT"; then
  mosquitto -d -c /etc/mosquitto/mosquitto.conf || echo "services.sh: mosquitto did not start" >&2
fi
if ! port_open "$PG_PORT"; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql 2>/dev/null | head -n1)" main start \
    || echo "services.sh: postgresql did not start" >&2
fi
for _ in $(seq 1 $((WAIT_S * 5))); do
  port_open "$MQTT_PORT" && port_open "$PG_PORT" && break
  sleep 0.2
done
port_open "$MQTT_PORT" || { echo "services.sh: nothing listens on 127.0.0.1:$MQTT_PORT (Mosquitto)" >&2; failed=1; }
port_open "$PG_PORT" || { echo "services.sh: nothing listens on 127.0.0.1:$PG_PORT (PostgreSQL)" >&2; failed=1; }
exit "$failed"
