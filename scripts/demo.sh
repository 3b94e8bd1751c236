#!/usr/bin/env bash
# Quick start, step 1: set up and run the main job on this machine. Until the end-to-end demo
# exists this validates the example configs and probes this machine (disk, clock, broker).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
for f in config/window.toml config/kiosk.toml; do
  echo "== hall-agent -c $f check"
  .venv/bin/hall-agent -c "$f" check --only config,disk,clock,broker
done
