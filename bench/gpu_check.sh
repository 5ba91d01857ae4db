#!/usr/bin/env bash
# One call on a GPU machine, from a bare checkout: install what the checks need from the registry,
# run every CUDA check (bench/gpu_check.py) and write one Markdown report, docs/GPU_CHECK.md.
#
#   bash bench/gpu_check.sh                 # about 3-5 min of install (torch's CUDA wheels), then < 5 min
#   GPU_CHECK_CUML=0 bash bench/gpu_check.sh   # without installing RAPIDS cuML (saves ~1-2 min)
#
# Exits 2 with a message, before installing anything, when the machine has no NVIDIA GPU; 1 when a
# check failed (the report says which); 0 when all passed. Commit docs/GPU_CHECK.md afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q "^GPU"; then
    echo "gpu_check: no NVIDIA GPU here (nvidia-smi is missing or lists none). This script checks the CUDA" >&2
    echo "paths and needs a GPU machine; on the CPU run 'make test' (the CUDA tests skip there, saying why)." >&2
    exit 2
fi
nvidia-smi -L

VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
start=$(date +%s)
if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
fi
# the project's pinned set (torch 2.14.1 from the registry is the CUDA build on Linux x86_64)
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q -e ".[dev]"

skip_cuml=()
if [ "${GPU_CHECK_CUML:-1}" != "0" ]; then
    # RAPIDS cuML for the CUDA major version torch was built with (cuml-cu12 / cuml-cu13), optional:
    # a failed or slow install is reported and the other checks go on
    cuda_major=$("$PY" -c 'import torch; print((torch.version.cuda or "0").split(".")[0])')
    if ! timeout 240 "$PY" -m pip install -q "cuml-cu${cuda_major}==26.10.0"; then
        echo "gpu_check: installing cuml-cu${cuda_major}==26.10.0 failed or took over 4 min; going on without cuML" >&2
        skip_cuml=(--skip-cuml)
    fi
fi
echo "gpu_check: install took $(( $(date +%s) - start )) s"

# the checks themselves have their own time limits (about 5 min in all)
exec "$PY" bench/gpu_check.py --report docs/GPU_CHECK.md "${skip_cuml[@]}"
