"""How close a backend must come to the float64 reference, per dtype: written once, used by the tests and
by the benchmark harness's correctness gate.

An element passes when |actual − expected| ≤ atol·scale + rtol·|expected|, with scale = max(1, max|expected|):
gradients summed over a batch grow with it, and a fixed atol would grow stricter as they do. fp32 assumes
IEEE fp32 GEMMs (torch's default "highest" matmul precision, which our kernels follow); "tf32" is fp32
tensors with TF32 GEMMs (its "high", on a GPU), whose every product rounds its inputs to fp16's 10-bit
mantissa, and so is held to fp16's tolerance.
"""
import torch

TOLERANCES = {
    torch.float64: dict(rtol=1e-7, atol=1e-7),
    torch.float32: dict(rtol=1e-4, atol=1e-5),
    torch.float16: dict(rtol=1e-2, atol=2e-3),
    torch.bfloat16: dict(rtol=5e-2, atol=1.5e-2),
}
TOLERANCES["tf32"] = TOLERANCES[torch.float16]


def max_violation(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | str) -> float:
    """Largest |actual − expected| / allowed over all elements: ≤ 1 passes. NaN/inf must match in place."""
    tol = TOLERANCES[dtype]
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    if a.shape != e.shape:
        raise AssertionError(f"shape {tuple(a.shape)} != expected {tuple(e.shape)}")
    same_nonfinite = (a.isnan() == e.isnan()).all() and (a[e.isinf()] == e[e.isinf()]).all()
    if not same_nonfinite:
        return float("inf")
    finite = e.isfinite()
    if not finite.any():
        return 0.0
    a, e = a[finite], e[finite]
    scale = max(1.0, e.abs().max().item())
    allowed = tol["atol"] * scale + tol["rtol"] * e.abs()
    return ((a - e).abs() / allowed).max().item()


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | str, name: str = "tensor"):
    violation = max_violation(actual, expected, dtype)
    if not violation <= 1.0:
        err = (actual.detach().double().cpu() - expected.detach().double().cpu()).abs()
        raise AssertionError(
            f"{name} ({dtype}) differs from the float64 reference: {violation:.3g}x the tolerance "
            f"{TOLERANCES[dtype]}; max abs error {err.nan_to_num(float('inf')).max().item():.3g}"
        )
