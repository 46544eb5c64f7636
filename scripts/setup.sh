#!/usr/bin/env bash
# Install yolo-leaky and what it needs. torch 2.14.1 / torchvision 0.29.1 are the versions this project is
# tested with (on the project's CI machine they install from local disk); pip skips them if already present.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
python -m pip install -q --disable-pip-version-check -e ".[dev]"
