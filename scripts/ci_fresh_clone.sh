#!/usr/bin/env bash
# CI: the README's Quick start as written, on a fresh machine's terms (docs/demo.md "CI").
#
# Clones this checkout's commit into an empty temporary directory and runs the Quick start's
# first command there, with no .venv beforehand and nothing of this checkout's environment:
#     bash scripts/demo.sh --duration 60
# It must exit 0, leave punches and ratings in the demo's central SQLite store, leave no
# process of its session behind, and install no dev extra (no pytest in the clone's .venv).
# The Quick start's apt packages are installed first when missing (as root; otherwise the
# missing ones are named and the script fails). The clone is removed at the end.
#   HALL_FRESH_TIMEOUT_S  limit for the whole demo run, install included (default 1800)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
timeout_s=${HALL_FRESH_TIMEOUT_S:-1800}
say() { echo "ci_fresh_clone: $*"; }
fail() { echo "ci_fresh_clone: FAILED: $*" >&2; exit 1; }

# The Quick start's system packages (README.md): Python with venv, then the demo's tools.
packages=(python3 python3-venv git mosquitto mosquitto-clients socat fonts-noto-cjk)  # not chromium: the demo opens no browser
missing=()
for pkg in "${packages[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] \
    || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || fail "missing packages ${missing[*]}; run: sudo apt-get install ${missing[*]}"
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hall-fresh.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
clone="$tmp/hall-agent"
commit=$(git -C "$repo" rev-parse HEAD)
# git clone copies the branches; CI may sit on a detached commit, so fetch HEAD explicitly.
git clone --quiet "$repo" "$clone"
git -C "$clone" fetch --quiet origin HEAD
git -C "$clone" checkout --quiet --detach FETCH_HEAD
[ "$(git -C "$clone" rev-parse HEAD)" = "$commit" ] || fail "the clone is not at $commit"
[ ! -e "$clone/.venv" ] || fail "the fresh clone already has a .venv"
git -C "$repo" diff --quiet HEAD || say "note: uncommitted changes in $repo are not in the clone"
say "fresh clone of $commit in $clone"

# A fresh login's environment: not this checkout's venv, no shared media cache; the demo's
# work directory (mkdtemp) lands under $tmp so it is found below and removed with the clone.
path=$PATH
[ -n "${VIRTUAL_ENV:-}" ] && path=$(tr ':' '\n' <<<"$PATH" | grep -vxF "$VIRTUAL_ENV/bin" | paste -sd:)
mkdir "$tmp/tmp"
started=$(date +%s)
# In its own session, as a terminal runs a command; afterwards no process may be left in it.
set +e
env -u VIRTUAL_ENV -u PYTHONPATH -u HALL_TEST_MEDIA PATH="$path" TMPDIR="$tmp/tmp" \
  python3 - "$clone" "$timeout_s" <<'PY'
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

clone, timeout_s = sys.argv[1], float(sys.argv[2])
demo = subprocess.Popen(
    ["bash", "scripts/demo.sh", "--duration", "60"],
    cwd=clone,
    stdin=subprocess.DEVNULL,
    start_new_session=True,
)


def stop_demo() -> None:
    """Ctrl-C to the demo alone first (demo.sh execs demo.py, which stops its agents before
    its broker), then its whole session if it has not stopped within a minute."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(demo.pid, signal.SIGINT)
    try:
        demo.wait(60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(demo.pid, signal.SIGKILL)
        demo.wait()


def on_signal(signum: int, _frame: object) -> None:
    # CI cancelled: the demo runs in a session of its own, so it would outlive this script.
    print(f"ci_fresh_clone: FAILED: signal {signum}; stopping the demo", file=sys.stderr)
    stop_demo()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
try:
    rc = demo.wait(timeout_s)
except subprocess.TimeoutExpired:
    print(f"ci_fresh_clone: FAILED: the demo ran over {timeout_s:.0f} s; Ctrl-C", file=sys.stderr)
    stop_demo()
    rc = 124


def left_in_session(sid: int) -> dict[int, str]:
    """Live (not zombie) processes of session ``sid``: pid -> command line (Linux /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            pid = int(entry.name)
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()  # state ppid pgrp session ...
            if int(fields[3]) == sid and fields[0] != "Z":
                found[pid] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (ValueError, OSError):
            continue
    return found


# The demo waits for every process it started before it exits; a grace period covers the
# kernel's reaping of children that were already told to stop.
deadline = time.monotonic() + 10
while left_in_session(demo.pid) and time.monotonic() < deadline:
    time.sleep(0.2)
left = left_in_session(demo.pid)
for pid, cmd in left.items():
    print(f"ci_fresh_clone: FAILED: left behind: {pid} {cmd}", file=sys.stderr)
    os.kill(pid, signal.SIGKILL)
if rc != 0:
    print(f"ci_fresh_clone: FAILED: bash scripts/demo.sh exited {rc}", file=sys.stderr)
sys.exit(1 if rc != 0 or left else 0)
PY
rc=$?
set -e
[ "$rc" = 0 ] || exit 1
say "the demo ran and stopped clean in $(($(date +%s) - started)) s (install included)"

dbs=("$tmp"/tmp/hall-demo.*/hall.db)
[ ${#dbs[@]} = 1 ] && [ -f "${dbs[0]}" ] || fail "expected one demo store, found: ${dbs[*]}"
python3 - "${dbs[0]}" <<'PY'
import sqlite3
import sys

con = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
counts = dict(con.execute("SELECT type, count(*) FROM events GROUP BY type"))
print(f"ci_fresh_clone: central store {sys.argv[1]}: {counts}")
for kind in ("attendance.punch", "rating.submitted"):
    if counts.get(kind, 0) < 2:
        sys.exit(f"ci_fresh_clone: FAILED: fewer than 2 {kind} events in the central store")
PY

# The Quick start must not depend on the dev extra: the clone's .venv is a kiosk install.
"$clone/.venv/bin/python" - <<'PY' || fail "pytest is installed in the fresh clone's .venv"
import importlib.util
import sys

sys.exit(importlib.util.find_spec("pytest") is not None)
PY
say "ok: fresh clone, Quick start's first command, punches and ratings stored, nothing left," \
  "no dev extra"
