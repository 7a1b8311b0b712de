#!/usr/bin/env bash
# Create (or complete) a virtual environment with torch, fairseq-fixed and fairseq-xattn.
#
#   scripts/install.sh [VENV_DIR] [EXTRAS]      default: .venv  test
#
# The order is the point (see setup.py): torch first, then fairseq-fixed without its dependencies
# and without build isolation (its metadata would pull torchaudio and a CUDA torch), then us.
# Set TORCH_SPEC to use another torch (e.g. TORCH_SPEC="torch==2.5.1" on a CUDA machine) and
# TORCH_PIP_ARGS for where pip takes it from (e.g. the CPU-only builds on a machine whose PyPI
# torch is the CUDA build: TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu");
# an already installed torch is kept.
set -euo pipefail
VENV=${1:-.venv}
EXTRAS=${2:-test}
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
read -r -a TORCH_PIP_ARGS <<< "${TORCH_PIP_ARGS:-}"
FAIRSEQ_SPEC=${FAIRSEQ_SPEC:-fairseq-fixed==0.12.3.1}
cd "$(dirname "$0")/.."

if [ ! -x "$VENV/bin/python" ]; then
  echo "[install] creating $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "[install] $TORCH_SPEC"
  "${PIP[@]}" install "${TORCH_PIP_ARGS[@]}" "$TORCH_SPEC"
fi

if ! "$VENV/bin/python" -c "import fairseq" 2>/dev/null; then
  echo "[install] $FAIRSEQ_SPEC (compiles its extensions; a few minutes the first time)"
  "${PIP[@]}" install "setuptools<81" wheel cython "numpy>=1.24"
  "${PIP[@]}" install --no-deps --no-build-isolation "$FAIRSEQ_SPEC"
fi

echo "[install] fairseq-xattn[$EXTRAS]"
"${PIP[@]}" install -e ".[$EXTRAS]"

# Nothing above may have replaced the CPU torch with another build.
"$VENV/bin/python" - <<'EOF'
import torch, fairseq, fairseq_xattn
print(f"[install] ok: torch {torch.__version__}, fairseq {fairseq.__version__}, "
      f"fairseq_xattn {fairseq_xattn.__version__}")
EOF
