"""What one layer of the depth-fused stack costs a thread, read off its SASS with no GPU: compiles a stack kernel
config for sm_80 or sm_90 (compile-check's way), finds its layer loop (the widest backward branch) and counts the
instructions in it by opcode. A static count, not a profile: it says how much work a layer issues (the FMA dots'
FFMA and shared-memory loads against the tensor cores' HMMA, and what the 3xTF32 split adds), not how long the
chain of layers waits.

    python scripts/stack_loop_sass.py                     # the forward at width 64, 32 rows, each dtype, sm_90
    python scripts/stack_loop_sass.py --arch 80 --width 32 --rows 64 --kernel backward --dtype bf16 tf32x3
"""
import argparse
import collections
import os
import sys

os.environ.pop("TRITON_INTERPRET", None)  # compile for a GPU, not the interpreter: read when triton is imported

LABELS = {"forward": "_highway_stack_fwd_kernel", "backward": "_highway_stack_bwd_kernel",
          "backward-atomic": "_highway_stack_bwd_kernel (atomic dW)"}


def layer_loop_opcodes(sass: str) -> collections.Counter:
    """Opcodes of the widest loop (compile-check's `sass_loops`): the stack's layer loop."""
    from highway.bench.harness.compile_check import sass_loops

    instructions, loops = sass_loops(sass)
    if not loops:
        return collections.Counter()
    start, end = max(loops, key=lambda span: span[1] - span[0])
    return collections.Counter(op for address, op in instructions if start <= address <= end)


def count(kernel: str, dtype: str, arch: int, width: int, rows: int, warps: int, stages: int):
    import triton

    from highway.bench.harness import compile_check

    spec = next(s for s in compile_check.kernel_specs() if (s.label or s.name) == LABELS[kernel])
    config = triton.Config(dict(BLOCK_M=rows, BLOCK_N=width, BLOCK_K=width), num_warps=warps, num_stages=stages)
    compiled = compile_check.compile_config(spec, dtype, arch, config)
    regs, spill = compile_check.registers_and_spills(compiled.asm["cubin"], spec.name)
    return layer_loop_opcodes(compile_check.disassemble(compiled.asm["cubin"])), regs, spill


def main(argv=None) -> int:
    from highway.kernels.highway_stack import STACK_FMA_TILES, STACK_TILES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, choices=(80, 90), default=90)
    parser.add_argument("--kernel", choices=list(LABELS), default="forward")
    parser.add_argument("--dtype", nargs="+", choices=("bf16", "tf32", "tf32x3", "fp32"),
                        default=["bf16", "tf32", "tf32x3", "fp32"])
    parser.add_argument("--width", type=int, choices=(16, 32, 64, 128), default=64, help="padded width")
    parser.add_argument("--rows", type=int, choices=(16, 32, 64), default=32, help="BLOCK_M")
    parser.add_argument("--stages", type=int, default=2)
    args = parser.parse_args(argv)
    print(f"the {args.kernel} stack's layer loop, sm_{args.arch}, {args.rows}x{args.width}, {args.stages} stages: "
          "instructions a thread issues per layer (static)")
    for dtype in args.dtype:
        tiles = STACK_FMA_TILES if dtype == "fp32" else STACK_TILES  # fp32: IEEE dots, their own warps
        if args.width not in tiles:
            print(f"{dtype:7} no stack at width {args.width}")
            continue
        warps = tiles[args.width][1]
        ops, regs, spill = count(args.kernel, dtype, args.arch, args.width, args.rows, warps, args.stages)
        total = sum(ops.values())
        print(f"{dtype:7} {warps:2} warps, regs {regs:3}, spill {spill:4}: {total:5} a thread, "
              f"{total * warps * 32:7} a program | " + ", ".join(f"{op} {n}" for op, n in ops.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
