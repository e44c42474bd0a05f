"""How far each backend's fp32 training step lands from float64, at TF32 and at IEEE precision: the relative
error (‖got − ref‖ / ‖ref‖) of the output, dx, dW and db of a small highway stack, for eager PyTorch, the
per-layer Triton kernels and the depth-fused stack (both ways to form its weight gradients). Made on the first
H200 run, where the stack's TF32 step failed the harness's gate, to tell the stack's error from Triton's TF32
dot's (reports/gallery/h200/probe-tf32.log).

    python scripts/stack-tf32-errors.py            # on a GPU
    DEV=cpu N=1 TRITON_INTERPRET=1 python scripts/stack-tf32-errors.py   # runs, but the CPU has no TF32
"""
import os

import torch

from highway.functional import highway_linear_stack

DEVICE = os.environ.get("DEV", "cuda")
SHAPES = [(1, 50), (4, 50), (4, 32), (4, 128)][:int(os.environ.get("N", 4))]  # (depth, width)
BACKENDS = [("torch", {}), ("triton", {}), ("triton-stack", {}), ("triton-stack-atomic", dict(weight_grads="atomic"))]


def step(x, w, b, dy, backend, dtype, precision, **kwargs):
    """Output, dx, dW and db of one forward and backward, in float64."""
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    xs, ws, bs = (t.detach().to(dtype).requires_grad_() for t in (x, w, b))
    y = highway_linear_stack(xs, ws, bs, "relu", backend.removesuffix("-atomic"), **kwargs)
    y.backward(dy.to(dtype))
    return [t.double() for t in (y.detach(), xs.grad, ws.grad, bs.grad)]


torch.manual_seed(0)
for depth, width in SHAPES:
    x, dy = torch.randn(128, width, device=DEVICE), torch.randn(128, width, device=DEVICE)
    w = torch.randn(depth, 2 * width, width, device=DEVICE) / width ** 0.5
    b = torch.zeros(depth, 2 * width, device=DEVICE)
    b[:, width:] = -2.0  # the transform gates' bias, as the builders set it
    reference = step(x, w, b, dy, "torch", torch.float64, "ieee")
    for precision in ("tf32", "ieee"):
        line = []
        for backend, kwargs in BACKENDS:
            try:
                got = step(x, w, b, dy, backend, torch.float32, precision, **kwargs)
                errors = [((g - r).norm() / r.norm()).item() for g, r in zip(got, reference)]
                line.append(f"{backend}: " + " ".join(f"{e:.1e}" for e in errors))
            except (ValueError, RuntimeError) as e:  # a width the stack cannot hold at IEEE precision
                line.append(f"{backend}: {type(e).__name__}: {str(e)[:80]}")
        print(f"d={depth} w={width} {precision}  [y dx dW db] rel err |", " | ".join(line), flush=True)
