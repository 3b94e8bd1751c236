#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv. Idempotent: an existing venv
# is reused and pip runs only when pyproject.toml or this script changed since the last run.
#   scripts/setup.sh            a window device and the collector (no vision stack)
#   scripts/setup.sh --central  the collector only: no pyserial, no sqlite-utils, no OpenCV
#   scripts/setup.sh --kiosk    + the vision stack (OpenCV, dlib, face_recognition)
#   scripts/setup.sh --dev      + test and lint tools (implies --kiosk: the tests use it)
set -euo pipefail
cd "$(dirname "$0")/.."

kiosk=0; dev=0; central_only=0
for arg in "$@"; do
  case "$arg" in
    --kiosk) kiosk=1 ;;
    --dev) dev=1; kiosk=1 ;;
    --central) central_only=1 ;;
    *) echo "setup.sh: unknown option $arg (expected --central, --kiosk or --dev)" >&2; exit 2 ;;
  esac
done

py=$(command -v python3.11 || command -v python3 || true)
if [ -z "$py" ]; then
  echo "setup.sh: Python 3.11 not found; on Debian 12: apt-get install python3 python3-venv" >&2
  exit 1
fi
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "setup.sh: $py is $("$py" --version); hall-agent needs Python 3.11 or newer" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv || {
    echo "setup.sh: venv creation failed; on Debian 12: apt-get install python3-venv" >&2; exit 1; }
fi

extras="central postgres"
[ "$central_only" = 1 ] || extras="$extras device"
[ "$kiosk" = 1 ] && extras="$extras kiosk"
[ "$dev" = 1 ] && extras="$extras dev"
# The stamp names what was installed for this pyproject.toml and this script; a later call
# that asks for no more than that (e.g. demo.sh after test.sh) installs nothing.
hash=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
stamp=".venv/.hall-setup-$hash"
if [ -f "$stamp" ]; then
  missing=0
  for e in $extras; do grep -qx "$e" "$stamp" || missing=1; done
  [ "$missing" = 0 ] && exit 0
  for e in $(cat "$stamp"); do case " $extras " in *" $e "*) ;; *) extras="$extras $e" ;; esac; done
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[${extras// /,}]"
case " $extras " in
  *" kiosk "*)
    # face_recognition declares `dlib`, which would build from source for many minutes;
    # dlib-bin (from the kiosk extra) provides the same module, so install it without deps.
    .venv/bin/python -m pip install -q --no-deps "face_recognition==1.3.0"
    # The sface recognizer's pinned ONNX files (drivers/face_models.py), checked by sha256.
    .venv/bin/python -m drivers.face_models install ;;
esac
rm -f .venv/.hall-setup-*
printf '%s\n' $extras > "$stamp"
echo "setup.sh: .venv ready (extras: $extras)"
