#!/usr/bin/env bash
# Build the rknpu2 target's toolchain: rknn-toolkit2 in a venv of its own. It pins torch <= 2.4 and numpy <= 1.26,
# which the main environment (torch 2.14.1) cannot take, so yolo-leaky calls it as a subprocess
# (yolo_leaky/targets/rknn_worker.py run with this venv's python). Idempotent: a venv that already imports the
# pinned toolkit is kept; otherwise it is built beside its final place and moved there only when complete.
# Where: $YOLO_LEAKY_RKNN_VENV, default ~/.cache/yolo-leaky/rknn-venv. Python: $RKNN_PYTHON, default python3.11
# (the toolkit ships cp38-cp312 wheels). Time on the project's 2-core machine: see docs/rknpu2.md.
set -euo pipefail
VERSION=2.5.0
VENV="${YOLO_LEAKY_RKNN_VENV:-$HOME/.cache/yolo-leaky/rknn-venv}"
PY="${RKNN_PYTHON:-python3.11}"
check() {
    "$1/bin/python" - "$VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
from rknn.api import RKNN  # noqa: F401
assert version("rknn-toolkit2") == sys.argv[1]
PY
}
if [ -x "$VENV/bin/python" ] && check "$VENV"; then
    echo "rknn-toolkit2 $VERSION venv ready: $VENV"
    exit 0
fi
TMP="$VENV.partial"
rm -rf "$TMP"
mkdir -p "$(dirname "$VENV")"
"$PY" -m venv "$TMP"
"$TMP/bin/python" -m pip install -q --disable-pip-version-check "rknn-toolkit2==$VERSION"
# a venv's scripts hold its absolute path: make it at the final path (venv --upgrade rewrites them), then check it
rm -rf "$VENV"
mv "$TMP" "$VENV"
"$PY" -m venv --upgrade "$VENV"
check "$VENV" || { echo "rknn-toolkit2 $VERSION does not import in $VENV" >&2; exit 1; }
echo "rknn-toolkit2 $VERSION venv ready: $VENV"
