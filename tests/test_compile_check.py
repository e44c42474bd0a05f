"""`highway-bench compile-check`: every kernel compiled for sm_80 and sm_90 with the ptxas in the triton
wheel, no GPU needed. The full check runs here, so CI fails on a spill, a shared-memory overflow or a
compile error that Triton's interpreter cannot see. It takes about 15 minutes on 2 cores with a cold
Triton cache (~/.triton/cache), a few minutes with a warm one."""
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import triton
import triton.language as tl

from highway.bench.harness.compile_check import KernelSpec, Result, blocks_per_sm, judge, loads_a_dot_waits_for, \
    spills_in_loops, triton_too_old

ENV = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # compile for GPUs, not the interpreter
compiles = pytest.mark.skipif(triton_too_old() is not None, reason=str(triton_too_old()))


def run(args, timeout=1800):
    return subprocess.run([sys.executable, "-m", "highway.bench.cli", *args], env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def python_for_gpus(code: str, timeout=600, **kwargs) -> str:
    """The stdout of `code`, run in a python of its own that compiles for GPUs (no TRITON_INTERPRET), which
    must succeed."""
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=timeout,
                         **kwargs)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@compiles
def test_every_kernel_compiles_for_ampere_and_hopper_without_spills(tmp_path):
    result = run(["compile-check", "--arch", "80", "90", "--no-progress", "--out", str(tmp_path)])
    rows = list(csv.DictReader(open(tmp_path / "compile_check.csv")))
    problems = [f"{r['kernel']} sm_{r['arch']} {r['dtype']} {r['tile']}: {r['problem']}" for r in rows if r["problem"]]
    assert result.returncode == 0 and not problems, "\n".join(problems) + result.stderr[-2000:]
    assert {r["arch"] for r in rows} == {"80", "90"} and {r["dtype"] for r in rows} == {"bf16", "tf32", "fp32",
                                                                                         "tf32x3"}
    # 3xTF32 is the depth-fused stack's alone, on the tensor cores, to width 64
    x3 = [r for r in rows if r["dtype"] == "tf32x3"]
    assert all("stack" in r["kernel"] and r["tensor_cores"] != "no" and int(r["tile"].split("x")[1]) <= 64 for r in x3)
    kernels = {r["kernel"].split(" ")[0] for r in rows}
    assert len(kernels) == 10  # four dense, four conv and the two of the depth-fused stack
    bf16_gemm_64 = [r for r in rows if r["dtype"] == "bf16" and "gates_kernel" not in r["kernel"]
                    and min(map(int, r["tile"].split("x")[:2])) >= 64]
    assert bf16_gemm_64 and all(r["tensor_cores"] in ("wgmma", "mma") for r in bf16_gemm_64)
    assert any(r["tensor_cores"] == "wgmma" for r in bf16_gemm_64 if r["arch"] == "90")
    assert "compiles in" in result.stdout  # the time it took is printed
    # IEEE fp32 dots run on the FMA units: their configs are their own, with a short BLOCK_K
    ieee = [r for r in rows if r["dtype"] == "fp32" and "stack" not in r["kernel"]]
    assert ieee and all(int(r["tile"].split("x")[2]) <= 16 for r in ieee)
    assert not any(r["dtype"] == "fp32" and r["tensor_cores"] != "no" for r in rows)
    # every config the autotuner tries fits an SM at least once; the CSV says how many blocks of it do
    tried = [r for r in rows if r["autotuner_tries"] == "True"]
    assert tried and all(int(r["blocks_per_sm"]) >= 1 for r in tried)
    assert all(int(r["blocks_per_sm"]) == blocks_per_sm(int(r["regs"]), int(r["warps"]), int(r["shared_bytes"]),
                                                         int(r["arch"])) for r in rows)


@pytest.mark.parametrize("regs,warps,shared,arch,blocks", [
    (32, 4, 0, 90, 16),  # nothing binds but the SM's 64 warps: 16 blocks of 4
    (128, 4, 0, 80, 4),  # 128 registers a thread: 16 warps' worth of the register file
    (129, 4, 0, 80, 3),  # one more register rounds each warp up to 4,352 (17 units of 256): 15 warps
    (255, 8, 0, 90, 1),
    (64, 4, 100_000, 80, 1),  # 164 KiB of shared memory, 1 KiB reserved a block
    (64, 4, 100_000, 90, 2),  # 228 KiB
    (16, 1, 0, 90, 32),  # the SM's 32 blocks
])
def test_blocks_per_sm_follows_cudas_occupancy_rules(regs, warps, shared, arch, blocks):
    assert blocks_per_sm(regs, warps, shared, arch) == blocks


@compiles
def test_the_check_catches_a_spilling_tile():
    # Two 128×128 fp32 accumulators and gelu's epilogue on 8 warps: more registers than a thread has.
    code = (
        "import triton\n"
        "from highway.bench.harness.compile_check import check_one, kernel_specs\n"
        "spec = kernel_specs()[0]\n"
        "config = triton.Config({'BLOCK_M': 128, 'BLOCK_N': 128, 'BLOCK_K': 64, 'GROUP_M': 8}, num_warps=8, num_stages=3)\n"
        "r = check_one(spec, 0, 'bf16', 90, config)\n"
        "print('SPILL', r.spill_bytes, 'PROBLEM', r.problem)\n"
    )
    out = python_for_gpus(code)  # and where, read off the SASS: here gelu's epilogue, after the K loop
    where = r"outside its loops|\d+ local (loads and stores|load or store) in its loops"
    assert re.search(rf"PROBLEM spills \d+ bytes \(({where})", out), out


# nvdisasm's form: an address comment, a guard predicate or none, the opcode; a label line before its target.
SASS = """
        /*0000*/                   STL [R1], R3 ;
        /*0010*/              @P1 BRA `(.L_x_1) ;
.L_x_0:
        /*0020*/                   LDL R9, [R1] ;
        /*0030*/                   HMMA.16816.F32.BF16 R4, R8, R12, R4 ;
        /*0040*/                   STL.64 [R1+0x8], R4 ;
        /*0050*/              @!P0 BRA `(.L_x_0) ;
.L_x_1:
        /*0060*/                   LDL R2, [R1] ;
        /*0070*/                   EXIT ;
.L_x_2:
        /*0080*/                   BRA `(.L_x_2);
"""


def test_spills_count_where_a_backward_branch_repeats_them():
    """Local loads and stores between a backward branch and its target cost every iteration; a forward branch and
    the trap loop after EXIT (a branch to itself) are no loops; a kernel without loops pays every one each time."""
    assert spills_in_loops(SASS) == 2
    assert spills_in_loops(SASS.replace("@!P0 BRA `(.L_x_0)", "NOP")) == 4


def compile_through_launchers(*args) -> subprocess.CompletedProcess:
    """scripts/compile_through_launchers.py with `args`, in a python of its own that compiles for GPUs."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "compile_through_launchers.py"
    return subprocess.run([sys.executable, str(script), *args], env=ENV, capture_output=True, text=True, timeout=600)


def test_kernels_compile_through_their_launchers_on_any_triton():
    """scripts/compile_through_launchers.py, the check of the declared triton floor (3.0): a launcher's kernels
    compiled for sm_90 through triton's own JIT, every config its autotuner would time, with no GPU."""
    out = compile_through_launchers("--arch", "90", "--dtype", "bf16", "--only", "stack forward, width 64")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "8 compiles, 0 launches failed, 0 bf16 configs spill" in out.stdout  # BLOCK_M 16 and 32, 1 to 4 stages
    assert out.stdout.count("_highway_stack_fwd_kernel") == 8


def test_launchers_compile_fp32_at_the_precision_torch_is_set_to():
    """fp32 tensors: tf32 (torch's "high") launches TF32 dots on the tensor cores, fp32 ("highest", torch's
    default) IEEE dots on the FMA units, each through the launcher's own choice of configs."""
    out = compile_through_launchers("--arch", "90", "--dtype", "tf32", "fp32", "--only", "stack forward, width 16")
    assert out.returncode == 0 and "0 launches failed" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    rows = [line.split() for line in out.stdout.splitlines() if "_highway_stack_fwd_kernel" in line]
    cores = {dtype: {row[-1] for row in rows if row[4] == dtype} for dtype in ("tf32", "fp32")}
    assert cores["tf32"] and cores["tf32"] <= {"wgmma", "mma"} and cores["fp32"] == {"no"}, cores


def test_a_one_layer_stack_compiles_as_any_other_depth():
    """Triton makes an int argument of 1 a constant; DEPTH is kept from that, so a launch of one layer (a
    depth-1 stack, a last chunk of one layer) runs the kernel every other depth does, config by config. With
    DEPTH specialized, IEEE fp32 at width 64 took other registers here, and spilled 88 to 304 bytes on triton 3.6."""
    out = compile_through_launchers("--arch", "90", "--dtype", "fp32", "--only", "stack forward, width 64",
                                    "stack forward, depth 1, width 64")
    assert out.returncode == 0 and "0 launches failed" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    by_depth = {}
    for line in out.stdout.splitlines():
        if "_highway_stack_fwd_kernel" in line:
            launch, compiled = line.split("fp32", 1)
            by_depth.setdefault("depth 1" in launch, []).append(compiled.split())
    assert len(by_depth[True]) == 8 and by_depth[True] == by_depth[False], by_depth


@compiles
def test_the_stack_layer_loop_is_counted_in_its_sass():
    """scripts/stack_loop_sass.py finds the layer loop: the tensor cores' HMMA in bf16, the FMA units' FFMA and
    no HMMA in IEEE fp32, and three times TF32's HMMA in 3xTF32."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "stack_loop_sass.py"
    out = subprocess.run([sys.executable, str(script), "--width", "32", "--rows", "16", "--dtype", "bf16", "tf32",
                          "tf32x3", "fp32"], env=ENV, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    ops = {}
    for line in out.stdout.splitlines()[1:]:
        dtype, counts = line.split()[0], line.split("|")[1]
        ops[dtype] = {op: int(n) for op, n in (pair.split() for pair in counts.split(","))}
    assert ops["bf16"].get("HMMA", 0) > 0 and ops["fp32"].get("FFMA", 0) > 0 and "HMMA" not in ops["fp32"], ops
    assert ops["tf32x3"]["HMMA"] == 3 * ops["tf32"]["HMMA"], ops


def test_a_triton_older_than_the_check_is_named_before_any_work(monkeypatch):
    import triton
    import triton.compiler

    class ASTSourceBefore33:  # triton 3.0 to 3.2: constants and an AttrsDescriptor
        def __init__(self, fn, signature, constants=None, attrs=None):
            pass

    monkeypatch.setattr(triton.compiler, "ASTSource", ASTSourceBefore33)
    assert "needs triton 3.3 or later" in triton_too_old() and triton.__version__ in triton_too_old()


def test_the_check_names_its_dtypes_as_the_harness_does():
    """tf32, fp32 and tf32x3 are fp32 pointers with TF32, IEEE and 3xTF32 dots (3xTF32 the stack's alone: the
    dense kernels launch IEEE dots for it); bf16 pointers are bf16. (In a process of its own: the signature is
    read off the jitted kernel, which the interpreter replaces.)"""
    code = (
        "from highway.bench.harness.compile_check import DTYPES, _kernel, _signature, kernel_specs, launch_constants\n"
        "dense, stack = kernel_specs()[0], [s for s in kernel_specs() if 'stack' in s.name][0]\n"
        "print(DTYPES)\n"
        "for dtype in ('bf16', 'tf32', 'fp32', 'tf32x3'):\n"
        "    tile = dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=16, GROUP_M=8)\n"
        "    sig, _, _ = _signature(dense, _kernel(dense).fn, dtype, tile)\n"
        "    dots = [launch_constants(spec, dtype)['INPUT_PRECISION'] for spec in (dense, stack)]\n"
        "    print(dtype, *dots, sig['x_ptr'])\n"
    )
    lines = python_for_gpus(code, timeout=300).split("\n")[:5]
    assert lines == ["('bf16', 'tf32', 'fp32', 'tf32x3')", "bf16 tf32 tf32 *bf16", "tf32 tf32 tf32 *fp32",
                     "fp32 ieee ieee *fp32", "tf32x3 ieee tf32x3 *fp32"]


@pytest.mark.parametrize("result,spec,words", [
    (Result("k", 90, "bf16", "64x64x64", 4, 4, regs=255, spill_bytes=8, shared_bytes=1, shared_bound=1,
            shared_limit=2), None, "spills 8 bytes"),
    # where the spill sits is said, not excused: outside the loops a bf16 spill is still one
    (Result("k", 90, "bf16", "64x64x64", 4, 4, regs=255, spill_bytes=8, spills_in_loops=0, shared_bytes=1,
            shared_bound=1, shared_limit=2), None, "spills 8 bytes (outside its loops"),
    (Result("k", 90, "bf16", "64x64x64", 4, 4, regs=255, spill_bytes=8, spills_in_loops=3, shared_bytes=1,
            shared_bound=1, shared_limit=2), None, "spills 8 bytes (3 local loads and stores in its loops)"),
    (Result("k", 90, "tf32", "64x64x64", 4, 4, regs=255, spill_bytes=8, shared_bytes=1, shared_bound=1,
            shared_limit=2), None, ""),
    # IEEE fp32 has configs of its own, so a spill there is a problem, unless the kernel's spec allows it
    (Result("k", 90, "fp32", "64x64x8", 4, 4, regs=255, spill_bytes=8, shared_bytes=1, shared_bound=1,
            shared_limit=2), None, "spills 8 bytes"),
    (Result("k", 90, "fp32", "64x64x8", 4, 4, regs=255, spill_bytes=8, shared_bytes=1, shared_bound=1,
            shared_limit=2), KernelSpec("m", "_some_gemm_kernel", (), spills_allowed=("fp32",)), ""),
    (Result("k", 80, "tf32", "128x128x64", 8, 3, spill_bytes=0, shared_bytes=300000, shared_bound=100000,
            shared_limit=166912, autotuner_tries=True), None, "needs 300000 bytes of shared memory"),
    (Result("k", 80, "tf32", "128x128x64", 8, 3, spill_bytes=0, shared_bytes=300000, shared_bound=400000,
            shared_limit=166912, autotuner_tries=False), None, ""),
    # the autotuner prunes by the bound: a config that uses more may overflow and be tried all the same
    (Result("k", 80, "tf32", "32x64x64", 8, 3, spill_bytes=0, shared_bytes=90000, shared_bound=80000,
            shared_limit=166912), None, "uses 90000 bytes of shared memory, above the 80000"),
    (Result("k", 90, "bf16", "64x64x64", 4, 4, spill_bytes=0, tensor_cores="no"), None, "tensor cores"),
    (Result("k", 90, "bf16", "32x64x64", 4, 4, spill_bytes=0, tensor_cores="no"), None, ""),
    (Result("k", 90, "bf16", "32x64x64", 8, 2, spill_bytes=0, tensor_cores="mma", waits_on_loads="b_h b_t"), None,
     "waits every iteration on b_h b_t"),
    (Result("k", 90, "bf16", "32x64x64", 8, 1, spill_bytes=0, tensor_cores="mma", waits_on_loads="wh wt"), None, ""),
    (Result("k", 90, "tf32", "32x64x64", 8, 2, spill_bytes=0, tensor_cores="mma", waits_on_loads="h_lo"), None,
     "waits every iteration on h_lo"),
    (Result("k", 90, "tf32", "32x64x64", 8, 1, spill_bytes=0, tensor_cores="mma", waits_on_loads="h_lo"), None, ""),
    (Result("k", 90, "bf16", "16x64x64", 8, 2, spill_bytes=0, tensor_cores="mma", waits_on_loads="x_t"),
     KernelSpec("m", "_some_gemm_kernel", (), waits_allowed=("x_t",)), ""),
    (Result("k", 90, "bf16", "16x64x64", 8, 2, spill_bytes=0, tensor_cores="mma", waits_on_loads="b_h x_t"),
     KernelSpec("m", "_some_gemm_kernel", (), waits_allowed=("x_t",)), "waits every iteration on b_h,"),
])
def test_what_counts_as_a_problem(result, spec, words):
    spec = spec or KernelSpec("m", "_some_gemm_kernel", ())
    problem = judge(result, spec)
    assert (words in problem) if words else problem == ""


GPU_IMAGE_VERSIONS = "import numpy, triton; numpy.__version__, triton.__version__ = '2.5.2', '3.6.0'; "


@pytest.mark.parametrize("versions", ["", GPU_IMAGE_VERSIONS])
def test_the_interpreter_is_refused(versions):
    """With its own message, also where importing the kernels would refuse the interpreter (the GPU image's
    numpy and triton)."""
    code = versions + ("from highway.bench.cli import main; "
                       "raise SystemExit(main(['compile-check', '--kernel', 'linear_fwd']))")
    out = subprocess.run([sys.executable, "-c", code], env={**ENV, "TRITON_INTERPRET": "1"}, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2 and "without TRITON_INTERPRET=1" in out.stderr


@triton.jit
def _layers_kernel(x_ptr, w_ptr, b_ptr, y_ptr, DEPTH, BIAS_AHEAD: tl.constexpr, BLOCK: tl.constexpr):
    """A chain of layers h = h·W_l + b_l, as the depth-fused stack runs them: the bias loaded in its own
    layer (the dot waits for it), or a layer ahead (carried by the loop)."""
    offs = tl.arange(0, BLOCK)
    h = tl.load(x_ptr + offs[:, None] * BLOCK + offs[None, :])
    b = tl.load(b_ptr + offs).to(tl.float32)
    for layer in range(DEPTH):
        w = tl.load(w_ptr + layer * BLOCK * BLOCK + offs[:, None] * BLOCK + offs[None, :])
        if BIAS_AHEAD:
            z = tl.dot(h, w) + b[None, :]
            b = tl.load(b_ptr + tl.minimum(layer + 1, DEPTH - 1) * BLOCK + offs).to(tl.float32)
        else:
            bias = tl.load(b_ptr + layer * BLOCK + offs).to(tl.float32)
            z = tl.dot(h, w) + bias[None, :]
        h = z.to(tl.bfloat16)
    tl.store(y_ptr + offs[:, None] * BLOCK + offs[None, :], h)


@compiles
@pytest.mark.parametrize("arch", [80, 90])
@pytest.mark.parametrize("bias_ahead", [False, True])
def test_a_load_that_a_dot_waits_for_is_found_in_the_compiled_loop(bias_ahead, arch):
    """Compiled with 3 stages the pipeliner copies each layer's W ahead; a bias loaded in its own layer stays a
    plain load that the dot waits for, and one loaded a layer ahead does not."""
    code = (
        "import triton\n"
        "from triton.backends.compiler import GPUTarget\n"
        "from triton.compiler import ASTSource\n"
        "from highway.bench.harness.compile_check import loads_a_dot_waits_for\n"
        "from test_compile_check import _layers_kernel\n"
        "target = GPUTarget('cuda', %d, 32)\n"
        "options = triton.compiler.make_backend(target).parse_options({'num_warps': 4, 'num_stages': 3})\n"
        "signature = {'x_ptr': '*bf16', 'w_ptr': '*bf16', 'b_ptr': '*bf16', 'y_ptr': '*bf16', 'DEPTH': 'i32',\n"
        "             'BIAS_AHEAD': 'constexpr', 'BLOCK': 'constexpr'}\n"
        "source = ASTSource(_layers_kernel, signature, constexprs={'BIAS_AHEAD': %s, 'BLOCK': 64},\n"
        "                   attrs={(i,): [['tt.divisibility', 16]] for i in range(4)})\n"
        "compiled = triton.compile(source, target=target, options=options.__dict__)\n"
        "print('WAITS', loads_a_dot_waits_for(compiled.asm['ttgir']))\n"
    ) % (arch, bias_ahead)
    stdout = python_for_gpus(code, cwd=Path(__file__).parent)
    assert ("WAITS []" if bias_ahead else "WAITS ['bias']") in stdout, stdout


def test_loads_that_a_loop_carries_or_copies_ahead_do_not_count():
    ttgir = """
    %a = tt.load %p : tensor<16x!tt.ptr<f32>>
    %r:2 = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %a, %carried = %a) -> (tensor<16xf32>, tensor<16xf32>) {
      %w_12 = tt.load %wp : tensor<16x16x!tt.ptr<bf16>>
      %w_13 = ttg.local_alloc %w_12 : (tensor<16x16xbf16>) -> !ttg.memdesc<16x16xbf16>
      %w_14 = ttg.local_load %w_13 : !ttg.memdesc<16x16xbf16> -> tensor<16x16xbf16>
      %c_3 = ttg.async_copy_global_to_local %cp, %buf : tensor<16x16x!tt.ptr<bf16>> -> <16x16xbf16>
      %c_4 = ttg.local_load %buf token %c_3 : !ttg.memdesc<16x16xbf16> -> tensor<16x16xbf16>
      %next_7 = tt.load %bp : tensor<16x!tt.ptr<f32>>
      %z = tt.dot %c_4, %w_14, %carried : tensor<16x16xbf16> * tensor<16x16xbf16> -> tensor<16x16xf32> loc(#loc3)
      %u = tt.dot %c_4, %c_4, %acc : tensor<16x16xbf16> * tensor<16x16xbf16> -> tensor<16x16xf32>
      scf.yield %z, %next_7 : tensor<16x16xf32>, tensor<16xf32>
    } loc(#loc1)
    %after = tt.load %q : tensor<16x!tt.ptr<f32>>
    %v = tt.dot %after, %after, %after : tensor<16x16xbf16> * tensor<16x16xbf16> -> tensor<16x16xf32>
    """
    assert loads_a_dot_waits_for(ttgir) == ["w"]  # through local_alloc and local_load; not next, a, c or after
