"""Compile every kernel for sm_80 or sm_90 through the installed triton's own JIT, the way a launch does, with
no GPU: the check of the triton floor the package declares (3.0, what torch 2.4 pins).

`highway-bench compile-check` builds each kernel × config with `ASTSource(..., constexprs=, attrs=)`, a form
that triton 3.3 introduced. This script needs no such internals of the compiler: it calls each launcher
(dense, conv and stack, forward and backward, every variant) on CPU tensors of a GEMM-sized shape, with a
stand-in for triton's GPU driver that names the target arch, and makes every autotuner compile each config
it would time (`JITFunction.warmup`) instead of timing it. So it runs on any triton 3.x and compiles the
specializations a real launch makes. It prints what compiled, the largest register count and any spill
(compile-check's cuobjdump reader), and exits 1 on a failure or a bf16 spill.

    python scripts/compile_through_launchers.py --arch 90        # or 80; --dtype bf16 tf32 fp32 tf32x3; --only stack
"""
import argparse
import os
import sys

os.environ.pop("TRITON_INTERPRET", None)  # compile for a GPU, not the interpreter: read when triton is imported

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.runtime.autotuner import Autotuner  # noqa: E402

SM_COUNT = 132  # an H100's or H200's: decides how many programs split a weight-gradient reduction


class _TargetOnlyDriver:
    """What a JIT compile asks the driver: a device, a stream and the target. A launch would ask for more."""

    def __init__(self, arch: int):
        self.arch = arch

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return GPUTarget("cuda", self.arch, 32)

    def is_active(self):
        return True


def launches(dtype: torch.dtype):
    """(name, launch) for every launcher and variant, on shapes that reach every tile the autotuner may try."""
    from highway.kernels import highway_conv2d_bwd, highway_conv2d_fwd, highway_linear_bwd, highway_linear_fwd
    from highway.kernels.highway_linear import preactivation_dtype
    from highway.kernels.highway_stack import highway_stack_bwd, highway_stack_fwd, widest_stack

    def randn(*shape):
        return torch.randn(*shape, dtype=dtype)

    n = 1024  # dense: every tile of the GEMM configs fits
    x, w, b, z = randn(1024, n), randn(2 * n, n), randn(2 * n), torch.randn(1024, 2 * n).to(preactivation_dtype(dtype))
    yield "dense forward", lambda: highway_linear_fwd(x, w, b, "gelu", True)
    yield "dense backward", lambda: highway_linear_bwd(x, x, w, b, z, "gelu")
    yield "dense backward, recomputing", lambda: highway_linear_bwd(x, x, w, b, None, "gelu")
    c = 160  # conv: channels_last, as the dense-like tiles want it
    xc = randn(8, c, 32, 32).to(memory_format=torch.channels_last)
    wc, bc = randn(2 * c, c, 3, 3), randn(2 * c)
    yield "conv forward", lambda: highway_conv2d_fwd(xc, wc, bc, "gelu")
    yield "conv backward", lambda: highway_conv2d_bwd(xc, xc, wc, bc, "gelu")
    # every padded width of the depth-fused stack that the layers launch it at (IEEE fp32 past 64 takes the
    # per-layer kernels, whose launches are above)
    for width in (w for w in (16, 32, 64, 128) if w <= widest_stack(dtype)):
        xs, ws, bs = randn(128, width), randn(3, 2 * width, width), randn(3, 2 * width)
        inputs = randn(3, 128, width)  # each layer's saved input
        yield f"stack forward, width {width}", lambda: highway_stack_fwd(xs, ws, bs, "gelu", 1)
        yield f"stack forward saving every 2nd input, width {width}", lambda: highway_stack_fwd(xs, ws, bs, "gelu", 2)
        # a launch of one layer (a depth-1 stack, or a last chunk of one layer): compiled as any other depth
        yield f"stack forward, depth 1, width {width}", lambda: highway_stack_fwd(xs, ws[:1], bs[:1], "gelu", 1)
        yield (f"stack backward, depth 1, width {width}",
               lambda: highway_stack_bwd(xs, inputs[:1], ws[:1], bs[:1], "gelu", 1, "gemm"))
        # the recomputing backward: 4 layers saved every 2nd, so that no launch has a layer count of 1, which
        # triton specializes on (and compiles otherwise: a depth-1 stack gets its own launches above too)
        checkpoints, ws4, bs4 = randn(2, 128, width), randn(4, 2 * width, width), randn(4, 2 * width)
        for weight_grads in ("gemm", "atomic"):
            yield (f"stack backward ({weight_grads} dW), width {width}",
                   lambda weight_grads=weight_grads: highway_stack_bwd(xs, inputs, ws, bs, "gelu", 1, weight_grads))
            yield (f"stack backward ({weight_grads} dW), recomputing, width {width}",
                   lambda weight_grads=weight_grads: highway_stack_bwd(xs, checkpoints, ws4, bs4, "gelu", 2,
                                                                       weight_grads))


def compile_all(arch: int, dtypes, only=("",)) -> tuple[list, list]:
    """(compiled, failed): rows (launch, dtype, kernel, config, regs, spill bytes, tensor cores) and (launch,
    dtype, error)."""
    import highway.kernels.launch as launch
    from highway.bench.harness.cases import DTYPES, float32_precision
    from highway.bench.harness.compile_check import registers_and_spills, tensor_cores
    from highway.kernels.launch import SHARED_MEMORY_LIMITS

    triton.runtime.driver.set_active(_TargetOnlyDriver(arch))
    launch.max_shared_memory = lambda: SHARED_MEMORY_LIMITS[arch]
    launch.sm_count = lambda device_index: SM_COUNT
    compiled, failed, current = [], [], {}

    def compile_every_config(tuner, *args, **kwargs):  # stands in for Autotuner.run: no timing, no launch
        tuner.nargs = dict(zip(tuner.arg_names, args))
        launch_kwargs = {k: v for k, v in kwargs.items() if k not in ("grid", "warmup")}
        for config in tuner.prune_configs(kwargs):
            kernel = tuner.fn.warmup(*args, grid=(1,), **launch_kwargs, **config.kwargs,
                                     num_warps=config.num_warps, num_stages=config.num_stages)
            regs, spill = registers_and_spills(kernel.asm["cubin"], tuner.fn.__name__)
            compiled.append((current["name"], current["dtype"], tuner.fn.__name__, config, regs, spill,
                             tensor_cores(kernel.asm["ptx"], arch)))
        tuner.nargs = None

    Autotuner.run = compile_every_config
    for dtype_name in dtypes:
        with float32_precision(dtype_name):  # tf32: TF32 dots; fp32: IEEE, torch's default; tf32x3: the stack's 3xTF32
            for name, run in launches(DTYPES[dtype_name]):
                if not any(part in name for part in only):
                    continue
                current.update(name=name, dtype=dtype_name)
                try:
                    run()
                except Exception as e:  # a failure is a result: the list says which launch and why
                    failed.append((name, dtype_name, f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:200]}"))
    return compiled, failed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, choices=(80, 90), default=90)
    parser.add_argument("--dtype", nargs="+", choices=("bf16", "tf32", "fp32", "tf32x3"),
                        default=["bf16", "tf32", "fp32", "tf32x3"])
    parser.add_argument("--only", nargs="+", default=[""], help="only the launches whose name contains one of these")
    args = parser.parse_args(argv)
    compiled, failed = compile_all(args.arch, args.dtype, args.only)
    spills = [row for row in compiled if row[5] and row[1] == "bf16"]
    for name, dtype, kernel, config, regs, spill, cores in compiled:
        print(f"{name:52} {dtype:8} {kernel:36} {str(config.kwargs):60} w{config.num_warps} s{config.num_stages} "
              f"regs {regs:3} spill {spill} tensor cores {cores}")
    print(f"\ntriton {triton.__version__}, torch {torch.__version__}, sm_{args.arch}: {len(compiled)} compiles, "
          f"{len(failed)} launches failed, {len(spills)} bf16 configs spill")
    for name, dtype, error in failed:
        print(f"FAILED {name} ({dtype}): {error}")
    return 1 if failed or spills else 0


if __name__ == "__main__":
    sys.exit(main())
