#!/usr/bin/env bash
# The main job on the embedded default model (SmolLM2-135M-Instruct, offline). Extra args go to `reward-circuits run`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
exec .venv/bin/reward-circuits run "$@"
