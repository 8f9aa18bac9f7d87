#!/usr/bin/env bash
# The test suite, including the strict docs build, every tutorial (small size) and the headless-Chromium
# check of report.html. Extra args go to pytest (e.g. -m "not real_model" for the fast subset).
set -euo pipefail
RC_EXTRAS=${RC_EXTRAS:-test,docs}
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
exec .venv/bin/python -m pytest -q "$@"
