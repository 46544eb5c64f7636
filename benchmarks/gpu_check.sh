#!/usr/bin/env bash
# The GPU paths, in one prepared run for a lent GPU machine (torch present, no ultralytics).
# Here, first: download the wheels into .whl/ and copy COCO8 into .gpu_data/ (docs/methodology.md, "GPU").
# There:   bash benchmarks/gpu_check.sh   (writes to $OUT, or ./runs/gpu when $OUT is unset)
set -uo pipefail
OUT="${OUT:-$PWD/runs/gpu}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 YOLO_OFFLINE=1 YOLO_AUTOINSTALL=False
export YOLO_CONFIG_DIR="$(mktemp -d)" YOLO_LEAKY_COCO8="$PWD/.gpu_data/coco8"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, ultralytics, onnxruntime; print('torch', torch.__version__, 'ultralytics', ultralytics.__version__, 'ort', onnxruntime.__version__, 'cuda', torch.cuda.is_available())"
  echo "== peak training memory per activation"
  python3 benchmarks/gpu_memory.py 4 640
  echo "== compare on the GPU (training with AMP, peak CUDA memory, torch-cuda-fp16 timing)"
  python3 -m yolo_leaky.cli compare epochs=3 imgsz=320 seeds=[0] bench_imgsz=640 bench_seconds=15 \
      project="$OUT" name=gpu
  echo "compare exit code: $?"
} 2>&1 | tee "$OUT/gpu_check.log"
cp "$OUT/gpu/report.md" "$OUT/report.md" 2>/dev/null
rm -rf "$OUT/gpu"   # keep what comes back small: the log and the report
