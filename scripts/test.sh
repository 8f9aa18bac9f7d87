#!/usr/bin/env bash
# The test suite. Extra args go to pytest (e.g. -m "not real_model" for the fast subset).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
exec .venv/bin/python -m pytest -q "$@"
