#!/usr/bin/env bash
# Quick start, step 1: the demo hall on this machine, no hardware (docs/demo.md).
#
# Its own Mosquitto (config/mosquitto.conf, accounts by scripts/hall-broker.sh), the
# collector on SQLite with the hall board, a kiosk agent on a sample video with two sample
# staff enrolled from pinned photos and its kiosk page, a window agent with two simulated
# pads rating now and then, and a live view of the events reaching the centre. Ctrl-C stops
# everything it started and prints this month's reports. No PostgreSQL, no root (once the
# apt packages mosquitto, mosquitto-clients and socat are there; fonts-noto-cjk for the pages).
#
#   bash scripts/demo.sh [--duration SECONDS] [--workdir DIR] [--kiosk-port 8080] [--board-port 8090]
set -euo pipefail
cd "$(dirname "$0")/.."
# The tools first: a missing one should not cost the few minutes of the install below.
for tool in mosquitto mosquitto_ctrl socat; do
  command -v "$tool" >/dev/null || {
    echo "demo.sh: needs $tool (sudo apt-get install mosquitto mosquitto-clients socat)" >&2
    exit 1
  }
done
# The kiosk page and the hall board are Chinese; without a CJK font a browser draws boxes.
# (Not `fc-list | grep -q`: with pipefail, grep's early exit can fail the pipe by SIGPIPE.)
if [ -z "$(fc-list :lang=zh 2>/dev/null)" ]; then
  echo "demo.sh: warning: no Chinese font found (fc-list :lang=zh); the kiosk page and the" \
    "hall board will show boxes instead of Chinese text (sudo apt-get install fonts-noto-cjk)" >&2
fi
if ! .venv/bin/python -c 'import cv2, dlib, face_recognition_models, agent' 2>/dev/null; then
  bash scripts/setup.sh --kiosk
fi
exec .venv/bin/python scripts/demo.py "$@"
