#!/usr/bin/env bash
# Install yolo-leaky and what it needs. torch 2.14.1 / torchvision 0.29.1 are the versions this project is
# tested with (on the project's CI machine they install from local disk); pip skips them if already present.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
python -m pip install -q --disable-pip-version-check -e ".[dev]"
# The rknpu2 target's toolchain: rknn-toolkit2 pins torch <= 2.4, so it gets a venv of its own (skipped when present;
# the first build downloads ~5.6 GB, torch 2.4 with its CUDA wheels, in about 10 min; docs/rknpu2.md)
bash scripts/setup_rknn.sh
