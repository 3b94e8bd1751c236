#!/usr/bin/env bash
# Start the local services the integration tests use, if they are not running yet:
# Mosquitto on 127.0.0.1:1883 and PostgreSQL on 127.0.0.1:5432 (database `test`).
set -uo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

need_apt=()
command -v mosquitto >/dev/null || need_apt+=(mosquitto mosquitto-clients)
command -v psql >/dev/null || need_apt+=(postgresql)
command -v socat >/dev/null || need_apt+=(socat)
command -v faketime >/dev/null || need_apt+=(faketime)  # libfaketime: the fault suite steps a device clock
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    echo "services.sh: missing ${need_apt[*]}; install them (apt-get install ${need_apt[*]})" >&2
  fi
fi

if ! port_open 1883; then
  mosquitto -d -c /etc/mosquitto/mosquitto.conf || echo "services.sh: mosquitto did not start" >&2
fi
if ! port_open 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start \
    || echo "services.sh: postgresql did not start" >&2
fi
for _ in $(seq 1 50); do
  port_open 1883 && port_open 5432 && break
  sleep 0.2
done
port_open 1883 || echo "services.sh: nothing listens on 127.0.0.1:1883" >&2
port_open 5432 || echo "services.sh: nothing listens on 127.0.0.1:5432" >&2
exit 0
