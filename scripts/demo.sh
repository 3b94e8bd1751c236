#!/usr/bin/env bash
# Quick start, step 1: the demo hall on this machine, no hardware (docs/demo.md).
#
# Its own Mosquitto (config/mosquitto.conf, accounts by scripts/hall-broker.sh), the
# collector on SQLite with the hall board, a kiosk agent on a sample video with two sample
# staff enrolled from pinned photos and its kiosk page, a window agent with two simulated
# pads rating now and then, and a live view of the events reaching the centre. Ctrl-C stops
# everything it started and prints this month's reports. No PostgreSQL, no root (once the
# apt packages mosquitto, mosquitto-clients and socat are there).
#
#   bash scripts/demo.sh [--duration SECONDS] [--workdir DIR] [--kiosk-port 8080] [--board-port 8090]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! .venv/bin/python -c 'import cv2, dlib, face_recognition_models, agent' 2>/dev/null; then
  bash scripts/setup.sh --kiosk
fi
for tool in mosquitto mosquitto_ctrl socat; do
  command -v "$tool" >/dev/null || {
    echo "demo.sh: needs $tool (sudo apt-get install mosquitto mosquitto-clients socat)" >&2
    exit 1
  }
done
exec .venv/bin/python scripts/demo.py "$@"
