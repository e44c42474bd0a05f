"""Analytic FLOP and byte counts for one benchmark configuration: the one place these formulas live.

Per layer, with M rows (batch for dense layers, batch·S² pixels for conv layers), width N (channels C),
kernel size k (1 for dense, so K = N·k² is the reduction length) and s bytes per element:

FLOPs count the GEMM/convolution multiply-adds as 2 each and nothing else (the epilogue's elementwise work
is O(M·N), a vanishing share at any width worth timing; torch.utils.flop_counter counts the same way):

| mode     | highway layer (GEMM of (M, K) by (K, 2N))   | plain layer (GEMM of (M, K) by (K, N)) |
|----------|---------------------------------------------|----------------------------------------|
| fwd      | 4·M·K·N                                     | 2·M·K·N                                |
| fwd+bwd  | 3× fwd: forward, dx and dW GEMMs            | 3× fwd                                 |
| train    | fwd+bwd (the optimizer's O(params) is not counted) | fwd+bwd                         |

Bytes are what a perfectly fused implementation must move: each layer's own inputs and outputs, read or
written once, intermediates excluded (so GB/s is comparable across backends, and a backend that spills
intermediates to memory shows a lower GB/s for the same work):

| mode     | per layer                                                                       |
|----------|---------------------------------------------------------------------------------|
| fwd      | x + W + b + y                                                                   |
| fwd+bwd  | fwd + dy + x + W + dx + dW + db   (the backward reads x and W again)            |
| train    | fwd+bwd + SGD with momentum: read W, dW, buffer; write W, buffer = 5·params      |

Weight bytes are the parameters' share of those bytes (fwd: W + b; fwd+bwd: 3× that; train: 8×): what a
stack that keeps its activations on chip (the depth-fused `triton-stack`) streams through memory and little
else, so weight GB/s against the device's peak bandwidth says how close it comes to the memory's limit.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Work:
    flops: float
    bytes: float
    weight_bytes: float


def layer_work(model: str, layer: str, width: int, batch: int, mode: str, element_bytes: int,
               spatial: int = 1, kernel_size: int = 3) -> Work:
    """FLOPs and bytes of one layer in one mode (see the module docstring for the formulas)."""
    k = kernel_size if layer == "conv" else 1
    pixels = spatial * spatial if layer == "conv" else 1
    m, n = batch * pixels, width
    out = 2 * n if model == "highway" else n
    params = out * n * k * k + out
    act = m * n  # x, y, dy and dx each have M·N elements
    fwd_flops = 2.0 * m * (n * k * k) * out
    fwd_bytes = 2 * act + params
    if mode == "fwd":
        return Work(fwd_flops, fwd_bytes * element_bytes, params * element_bytes)
    bwd_bytes = 3 * act + 2 * params
    if mode == "fwd+bwd":
        return Work(3 * fwd_flops, (fwd_bytes + bwd_bytes) * element_bytes, 3 * params * element_bytes)
    if mode == "train":
        return Work(3 * fwd_flops, (fwd_bytes + bwd_bytes + 5 * params) * element_bytes, 8 * params * element_bytes)
    raise ValueError(f"unknown mode {mode!r}")


def stack_work(model, layer, depth, width, batch, mode, element_bytes, spatial=1, kernel_size=3) -> Work:
    w = layer_work(model, layer, width, batch, mode, element_bytes, spatial, kernel_size)
    return Work(depth * w.flops, depth * w.bytes, depth * w.weight_bytes)
