"""Peak memory of one training step of a depth-fused stack, without a GPU: the bytes of tensors the step
allocates and has not yet freed, at their highest, from the CPU profiler's allocation events. On a GPU the
same figure is `torch.cuda.max_memory_allocated` (what the throughput harness records there); on a CPU the
harness can only read the process's resident set, which the interpreter's numpy temporaries swamp.

    python scripts/stack_memory.py --depth 1000 --width 50 --batch 128 --dtype float32

Each configuration runs in a fresh process, because a second profile in one process misses some of its
allocations; and under Triton's interpreter: sizes, not speed.
"""
import argparse
import os
import subprocess
import sys

CONFIGS = [("torch", False, "gemm"), ("triton-stack", False, "gemm"), ("triton-stack", False, "atomic"),
           ("triton-stack", True, "gemm"), ("triton-stack", True, "atomic")]


def peak_mib(depth: int, width: int, batch: int, dtype: str, backend: str, recompute: bool, weight_grads: str):
    os.environ["TRITON_INTERPRET"] = "1"
    import torch
    from torch.profiler import ProfilerActivity, profile

    from highway import HighwayStack

    torch.manual_seed(0)
    stack = HighwayStack(width, depth, backend=backend, recompute=recompute, weight_grads=weight_grads,
                         dtype=getattr(torch, dtype))
    x = torch.randn(batch, width, dtype=getattr(torch, dtype))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        stack(x).float().square().sum().backward()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = top = 0
    for e in events:  # allocations count up, frees (negative) down
        live += e.nbytes()
        top = max(top, live)
    return top / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=1000)
    parser.add_argument("--width", type=int, default=50)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--one", nargs=3, metavar=("BACKEND", "RECOMPUTE", "WEIGHT_GRADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = (args.depth, args.width, args.batch, args.dtype)
    if args.one:
        backend, recompute, weight_grads = args.one
        print(peak_mib(*shape, backend, recompute == "1", weight_grads))
        return
    eager = None
    print(f"depth {args.depth}, width {args.width}, batch {args.batch}, {args.dtype}: peak MiB of a training step")
    for backend, recompute, weight_grads in CONFIGS:
        out = subprocess.run([sys.executable, __file__, "--depth", str(args.depth), "--width", str(args.width),
                              "--batch", str(args.batch), "--dtype", args.dtype,
                              "--one", backend, str(int(recompute)), weight_grads],
                             capture_output=True, text=True, check=True).stdout
        mib = float(out.strip().splitlines()[-1])
        eager = eager or mib
        name = backend + (" recompute" if recompute else "") + (f" {weight_grads}" if backend != "torch" else "")
        print(f"  {name:34} {mib:7.1f} MiB  {mib / eager:.2f} of eager's", flush=True)


if __name__ == "__main__":
    main()
