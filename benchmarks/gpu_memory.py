"""Peak CUDA memory of one training step of yolo11n per activation (run on a GPU machine).

python benchmarks/gpu_memory.py [batch] [imgsz]
"""

import copy
import sys

import torch

from yolo_leaky import load, swap_activations
from yolo_leaky.core.memory import output_sum


def peak_step_bytes(net, batch: int, imgsz: int, amp: bool) -> int:
    net = net.cuda().train()
    x = torch.randn(batch, 3, imgsz, imgsz, device="cuda")
    for _ in range(2):  # the second step is the measured one (allocator warm)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            out = net(x)
            loss = output_sum(out)
        loss.backward()
        net.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def main() -> None:
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    imgsz = int(sys.argv[2]) if len(sys.argv) > 2 else 640
    base = load("yolo11n.yaml").model
    print(
        f"{torch.cuda.get_device_name(0)}, yolo11n, batch {batch}, imgsz {imgsz}: "
        "peak CUDA memory of one step above the model"
    )
    for amp in (False, True):
        for act, inplace in [
            ("silu", False),
            ("leaky_relu:0.1", False),
            ("leaky_relu:0.1", True),
            ("relu", True),
            ("prelu", False),
        ]:
            net = copy.deepcopy(base)
            swap_activations(net, act, inplace=inplace)
            peak = peak_step_bytes(net, batch, imgsz, amp)
            name = f"{act}{' in-place' if inplace else ''}"
            print(f"  amp={amp!s:5} {name:26s} {peak / 2**30:6.3f} GiB", flush=True)
            del net
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
