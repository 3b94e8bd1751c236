#!/usr/bin/env bash
# Set up and run the whole test suite (the README's test command; .ci/run calls it).
# Extra arguments go to pytest, e.g. scripts/test.sh -k outbox -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
bash scripts/services.sh
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "test.sh: pytest collected no tests; that is a failure here" >&2
  exit 1
fi
exit "$rc"
