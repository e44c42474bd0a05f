"""Peak compute and bandwidth of the GPUs we report against, for percent-of-peak columns.

Dense (no sparsity) vendor figures for the SXM parts unless the name says PCIe/NVL. fp32 is the
non-tensor-core rate, which is what IEEE fp32 GEMMs (torch's default "highest" precision) can reach; tf32
(fp32 tensors with TF32 dots, the harness's dtype of that name) is the tensor cores', and tf32x3 (our
kernels' 3xTF32 dots) a third of it. `measure_peaks` times a large GEMM and a large copy on the device
instead, for GPUs not in the table or to check it.
"""
import torch

PEAK_DTYPES = ("bf16", "tf32", "fp32")  # what `highway-bench peaks` and the campaign measure

# name fragment → (TFLOP/s by dtype, TB/s); matched in order against torch.cuda.get_device_name().
PEAKS = [
    ("H200", {"fp32": 67.0, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4}, 4.8),
    ("H100 PCIe", {"fp32": 51.2, "tf32": 378.0, "fp16": 756.0, "bf16": 756.0}, 2.0),
    ("H100 NVL", {"fp32": 60.0, "tf32": 417.5, "fp16": 835.0, "bf16": 835.0}, 3.9),
    ("H100", {"fp32": 67.0, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4}, 3.35),
    ("A100-SXM4-40GB", {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0}, 1.555),
    ("A100", {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0}, 2.039),
]


def peak_for(device_name: str, dtype: str):
    """(peak TFLOP/s, peak TB/s) for a device name and the harness's dtype name, or (None, None) when unknown
    (CPUs)."""
    for fragment, flops, bandwidth in PEAKS:
        if fragment in device_name:  # 3xTF32 does three TF32 products for each one it counts
            return (flops["tf32"] / 3 if dtype == "tf32x3" else flops[dtype]), bandwidth
    return None, None


def measure_peaks(dtype: str = "bf16", n: int = 8192, device="cuda"):
    """Measured (TFLOP/s of an n³ GEMM in the harness's `dtype`, at its precision; TB/s of a 1 GiB copy) on
    `device`: best of 20 after warm-up."""
    from highway.bench.harness.cases import DTYPES, float32_precision
    from highway.bench.harness.timing import cuda_time

    a = torch.randn(n, n, device=device, dtype=DTYPES[dtype])
    b = torch.randn(n, n, device=device, dtype=DTYPES[dtype])
    with float32_precision(dtype):
        gemm = cuda_time(lambda: a @ b, warmup=5, repeats=20, flush_l2=False)
    src = torch.empty(2**30, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    copy = cuda_time(lambda: dst.copy_(src), warmup=5, repeats=20, flush_l2=False)
    return 2 * n**3 / (min(gemm.samples) * 1e-3) / 1e12, 2 * src.numel() / (min(copy.samples) * 1e-3) / 1e12
