"""Compile every kernel for real GPUs on a machine without one, and say what the GPU compiler made of it.

`triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32))` runs the whole pipeline down to a
cubin with the ptxas that ships in the triton wheel; `cuobjdump -res-usage` (shipped beside it) reads the
registers and the stack frame from the cubin, and the PTX says whether the GEMM tiles reach the tensor
cores (`wgmma` on sm_90, `mma` on both). Each kernel is compiled for every autotune config, in bf16, in
fp32 with TF32 dots (tf32), in fp32 with IEEE dots (fp32: torch's default matmul precision, on the FMA
units, with configs of its own), and, the depth-fused stack's, in fp32 with 3xTF32 dots (tf32x3; the names are
the throughput harness's), specialized as a contiguous launch of a GEMM-sized layer specializes it (16-aligned
pointers, sizes and strides; unit strides folded to constants).

A config fails the check when it does not compile, when bf16, fp16, fp32 (IEEE) or tf32x3 code spills registers
to local memory (unless the kernel's spec allows it, `spills_allowed`), when it needs more shared memory than the arch
gives a block and the autotuner would still try it, when it uses more shared memory than the bound the autotuner
prunes by (the kernel's `shared_memory`, `highway.kernels.launch.tuned`), when a bf16 GEMM tile of 64 or more
misses the tensor cores, or when a pipelined config (2 stages or more) leaves a load in a loop that a dot of the
same iteration waits for (`loads_a_dot_waits_for`), in any dtype. tf32 spills are reported and allowed,
as is a wait a kernel's spec explains (`waits_allowed`). Where a config spills, its SASS says where: the local
loads and stores inside its loops (`spills_in_loops`) cost every iteration, those outside once a program.
The Triton interpreter, which the tests run, sees none of this.
"""
import csv
import os
import re
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field

from highway.bench.schema import DTYPE_BYTES

ARCHS = (80, 90)
# tf32: fp32 with TF32 dots; fp32: IEEE dots, torch's default "highest"; tf32x3: our 3xTF32 dots
DTYPES = ("bf16", "tf32", "fp32", "tf32x3")
# The heaviest epilogue (gelu: erf and exp) stands for every activation: if it fits, the others fit.
CHECK_ACTIVATION = "gelu"
TENSOR_CORE_OPS = {80: ("mma.sync",), 90: ("wgmma", "mma.sync")}  # the best first
# What one SM holds (CUDA's occupancy rules, compute capability 8.0 and 9.0): 64 Ki registers, handed out a warp
# at a time in units of 256; 64 warps; 32 blocks; and shared memory, of which each block also costs 1 KiB that
# the runtime reserves (164 KiB on sm_80, 228 KiB on sm_90).
SM_LIMITS = {80: dict(registers=65536, warps=64, blocks=32, shared=167936),
             90: dict(registers=65536, warps=64, blocks=32, shared=233472)}


STACK_MODULE = "highway.kernels.highway_stack"  # the only kernels that take 3xTF32 dots (`dot_options`)


@dataclass(frozen=True)
class KernelSpec:
    """How a real launch specializes one kernel: which of its arguments are unit strides, the constexprs
    beside the config's tile sizes, and the pointers whose dtype is not the layer's."""
    module: str
    name: str
    unit_strides: tuple
    constants: dict = field(default_factory=dict)
    fp32_pointers: tuple = ()  # always fp32 (atomics targets)
    fp16_as_fp32_pointers: tuple = ()  # fp32 when the layer is fp16 (saved pre-activations)
    label: str = ""
    # Loads that a dot of this kernel may wait on at 2 stages or more (`loads_a_dot_waits_for`), each for a reason
    # given where the spec is declared.
    waits_allowed: tuple = ()
    # Dtypes beside tf32 whose spills this kernel is allowed, for a reason given where the spec is
    # declared.
    spills_allowed: tuple = ()
    # For kernels whose candidates depend on the launch (the depth-fused stack's on its width): every config
    # the autotuner may try, as (dtype, arch, the kernel's autotune configs, its constexprs) -> [triton.Config]
    # with full meta-parameters; None: the autotuner's own configs.
    configs: object = None


def kernel_specs() -> list[KernelSpec]:
    dense, conv = "highway.kernels.highway_linear", "highway.kernels.highway_conv2d"
    stack = STACK_MODULE
    dense_strides = ("stride_xk", "stride_wk", "stride_dyn")
    conv_strides = ("stride_xc", "stride_wi", "stride_yc", "stride_dyc", "stride_dxc")  # channels_last x, y; W by tap
    return [
        KernelSpec(dense, "_highway_linear_fwd_kernel", dense_strides, dict(STORE_PREACT=True),
                   fp16_as_fp32_pointers=("z_ptr",)),
        KernelSpec(dense, "_highway_linear_bwd_gates_kernel", dense_strides, dict(RECOMPUTE=False),
                   fp16_as_fp32_pointers=("z_ptr",)),
        # The gate kernels that recompute z (dense) or always do (conv) hold both accumulators, the gate math and
        # in IEEE fp32 the FMA dots' operands: 8 to 48 bytes spill there at BLOCK_K 8, reported and allowed as
        # TF32's are (more warps for IEEE tiles is the next thing to try, on a GPU that can time it).
        KernelSpec(dense, "_highway_linear_bwd_gates_kernel", dense_strides, dict(RECOMPUTE=True),
                   label="_highway_linear_bwd_gates_kernel (recompute)", spills_allowed=("fp32",)),
        KernelSpec(dense, "_highway_linear_bwd_dx_kernel", dense_strides),
        KernelSpec(dense, "_highway_linear_bwd_dw_kernel", dense_strides, dict(USE_ATOMIC=True),
                   fp32_pointers=("dw_ptr", "db_ptr")),
        KernelSpec(conv, "_highway_conv2d_fwd_kernel", conv_strides, dict(KS=3)),
        KernelSpec(conv, "_highway_conv2d_bwd_gates_kernel", conv_strides, dict(KS=3), spills_allowed=("fp32",)),
        KernelSpec(conv, "_highway_conv2d_bwd_dx_kernel", conv_strides, dict(KS=3)),
        KernelSpec(conv, "_highway_conv2d_bwd_dw_kernel", conv_strides, dict(KS=3, USE_ATOMIC=True),
                   fp32_pointers=("dw_ptr", "db_ptr")),
        KernelSpec(stack, "_highway_stack_fwd_kernel", ("stride_xk", "stride_wk"), dict(SAVE_INPUTS=True, SAVE_EVERY=1),
                   configs=_stack_configs),
        KernelSpec(stack, "_highway_stack_fwd_kernel", ("stride_xk", "stride_wk"),
                   dict(SAVE_INPUTS=True, SAVE_EVERY=128), configs=_stack_configs,
                   label="_highway_stack_fwd_kernel (checkpoints)"),
        KernelSpec(stack, "_highway_stack_bwd_kernel", ("stride_dyn", "stride_wk"),
                   dict(ATOMIC_WEIGHT_GRADS=False, RECOMPUTE_BELOW=False), configs=_stack_configs),
        # recompute=True: the second half of the grid recomputes the chunk below (its own forward loop)
        KernelSpec(stack, "_highway_stack_bwd_kernel", ("stride_dyn", "stride_wk"),
                   dict(ATOMIC_WEIGHT_GRADS=False, RECOMPUTE_BELOW=True), configs=_stack_configs,
                   label="_highway_stack_bwd_kernel (recompute below)"),
        # x_t, the saved input read again for dW, is a (BLOCK_M × BLOCK_M) tile: at BLOCK_M 16 on 8 warps two bf16
        # bytes a thread, below the 4 that an asynchronous copy moves, so no stage count copies it ahead there.
        # In IEEE fp32 its two dW dots (x_tᵀ·dZ on the FMA units) spilled 256 to 4,160 bytes at the width's full
        # row tile; at half of it (`stack_config_allowed`) 8 or 16 bytes spill at widths 32 and 64 on 8 and 16
        # warps. Atomic dW is an option, to be timed against the default, whose backward does not spill.
        KernelSpec(stack, "_highway_stack_bwd_kernel", ("stride_dyn", "stride_wk"),
                   dict(ATOMIC_WEIGHT_GRADS=True, RECOMPUTE_BELOW=False), fp32_pointers=("dw_ptr", "db_ptr"),
                   configs=_stack_configs, label="_highway_stack_bwd_kernel (atomic dW)", waits_allowed=("x_t",),
                   spills_allowed=("fp32",)),
        KernelSpec(stack, "_highway_stack_bwd_kernel", ("stride_dyn", "stride_wk"),
                   dict(ATOMIC_WEIGHT_GRADS=True, RECOMPUTE_BELOW=True), fp32_pointers=("dw_ptr", "db_ptr"),
                   configs=_stack_configs, label="_highway_stack_bwd_kernel (atomic dW, recompute below)",
                   waits_allowed=("x_t",), spills_allowed=("fp32",)),
    ]


def _stack_configs(dtype: str, arch: int, configs: list, constants: dict) -> list:
    """Every one of a depth-fused stack kernel's `configs` that its autotuner may try, launched with the
    constexprs `constants`, at every padded width it takes (16 to 128), for this arch's shared memory."""
    from highway.kernels.highway_stack import MAX_STACK_WIDTH, STACK_FMA_TILES, stack_candidates
    from highway.kernels.launch import SHARED_MEMORY_LIMITS

    element = DTYPE_BYTES[dtype]
    widths = [w for w in (16, 32, 64, 128) if w <= MAX_STACK_WIDTH]
    if constants.get("INPUT_PRECISION") == "ieee" and constants.get("RECOMPUTE_BELOW"):
        return []  # IEEE fp32 recomputes in launches of its own (`highway_stack_bwd`)
    if constants.get("INPUT_PRECISION") in ("ieee", "tf32x3"):  # wider stacks take the per-layer kernels there
        widths = [w for w in widths if w in STACK_FMA_TILES]
    return [c for w in widths for c in stack_candidates(w, element, SHARED_MEMORY_LIMITS[arch], configs, constants)]


def launch_constants(spec: KernelSpec, dtype: str) -> dict:
    """The constexprs a launch in `dtype` passes beside the config's, as the launchers choose them
    (`dot_options`) at the precision the harness's dtype names: on a GPU bf16 tiles go to tl.dot as they are;
    fp32 dots run in IEEE fp32 on the FMA units (torch's default "highest") or, as tf32, on the tensor cores."""
    from highway.bench.harness.cases import DTYPES, float32_precision
    from highway.kernels.activations import ACTIVATION_CODES
    from highway.kernels.launch import dot_options

    with float32_precision(dtype):
        dots = dot_options(DTYPES[dtype], takes_tf32x3=spec.module == STACK_MODULE)
    return {"ACTIVATION": ACTIVATION_CODES[CHECK_ACTIVATION], **dots, **spec.constants}


@dataclass
class Result:
    kernel: str
    arch: int
    dtype: str
    tile: str
    warps: int
    stages: int
    regs: int = -1
    spill_bytes: int = -1
    spills_in_loops: int = -1  # local loads and stores of spilled registers in its loops (`spills_in_loops`)
    shared_bytes: int = -1
    shared_bound: int = 0  # the kernel's upper bound on it, by which its autotuner prunes
    shared_limit: int = 0
    autotuner_tries: bool = True
    tensor_cores: str = ""
    waits_on_loads: str = ""  # loads a dot waits for in the same loop iteration (`loads_a_dot_waits_for`)
    blocks_per_sm: int = -1  # resident at once (`blocks_per_sm`); × warps / 64 is the occupancy
    triton: str = ""  # the version that compiled it: spills and shared memory change with it
    seconds: float = 0.0
    problem: str = ""


def _tools_dir() -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")


def _kernel(spec: KernelSpec):
    import importlib

    return getattr(importlib.import_module(spec.module), spec.name)


def _signature(spec: KernelSpec, jitted, dtype: str, config_kwargs: dict):
    element_type = "fp32" if dtype.startswith("tf32") else dtype  # TF32 is INPUT_PRECISION's, not the pointers'
    signature, constants, attrs = {}, {}, {}
    launch = launch_constants(spec, dtype)
    for i, (name, param) in enumerate(zip(jitted.arg_names, jitted.params)):
        if param.is_constexpr:
            signature[name] = "constexpr"
            constants[name] = {**launch, **config_kwargs}[name]
        elif name in spec.unit_strides:
            signature[name], constants[name] = "constexpr", 1
        elif name.endswith("_ptr"):
            kind = "fp32" if name in spec.fp32_pointers or (dtype == "fp16" and name in spec.fp16_as_fp32_pointers) \
                else element_type
            signature[name] = f"*{kind}"
            attrs[(i,)] = [["tt.divisibility", 16]]
        else:  # sizes and the other strides of a GEMM-sized layer: multiples of 16
            signature[name] = "i32"
            if not getattr(param, "do_not_specialize", False):  # a launch never tells the kernel (the stack's DEPTH)
                attrs[(i,)] = [["tt.divisibility", 16]]
    return signature, constants, attrs


def blocks_per_sm(regs: int, warps: int, shared_bytes: int, arch: int) -> int:
    """How many blocks of a kernel one SM runs at once, the fewest that its registers, its warps and its shared
    memory allow: the occupancy a launch reaches when its grid fills the GPU. A latency-bound kernel (the
    depth-fused stack walks a dependent chain a layer at a time) hides its waits only with other blocks'."""
    sm = SM_LIMITS[arch]
    per_warp = -(-regs * 32 // 256) * 256
    by_registers = (sm["registers"] // per_warp) // warps if per_warp else sm["blocks"]
    by_shared = sm["shared"] // (shared_bytes + 1024)
    return max(0, min(by_registers, sm["warps"] // warps, by_shared, sm["blocks"]))


def tensor_cores(ptx: str, arch: int) -> str:
    """The best tensor-core instruction a kernel's PTX uses ("wgmma", "mma"), or "no": IEEE fp32 dots use none."""
    return next((op.split(".")[0] for op in TENSOR_CORE_OPS[arch] if op in ptx), "no")


# One SASS instruction of `nvdisasm -c`: its address and its opcode, past any guard predicate.
SASS_INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)[^;]*;")


def _read_cubin(tool: str, flag: str, cubin: bytes) -> str:
    """What one of the CUDA tools shipped beside ptxas in the triton wheel prints for a cubin."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        return subprocess.run([os.path.join(_tools_dir(), tool), flag, f.name], capture_output=True, text=True,
                              check=True, timeout=120).stdout


def disassemble(cubin: bytes) -> str:
    """The SASS of a cubin, from nvdisasm."""
    return _read_cubin("nvdisasm", "-c", cubin)


def sass_loops(sass: str) -> tuple[list[tuple[int, str]], list[tuple[int, int]]]:
    """A kernel's SASS as (address, opcode) and its loops as (first, last) addresses: each backward branch, from
    its target to itself. Triton's loops (a GEMM's K loop, the depth-fused stack's layer loop) compile to one."""
    matches = [(int(m.group(1), 16), m.group(2), m.group(0)) for m in SASS_INSTRUCTION.finditer(sass)]
    labels = {m.group(1): int(m.group(2), 16) for m in re.finditer(r"\.(L_x_\d+):\s*\n\s*/\*([0-9a-f]+)\*/", sass)}
    loops = []
    for address, op, text in matches:
        target = re.search(r"`\(\.(L_x_\d+)\)", text)
        if op == "BRA" and target and labels.get(target.group(1), address + 1) < address:
            loops.append((labels[target.group(1)], address))
    return [(address, op) for address, op, _ in matches], loops


def spills_in_loops(sass: str) -> int:
    """The local-memory loads and stores (LDL, STL: spilled registers) inside a kernel's loops, or anywhere in a
    kernel without one: what a spill costs every iteration. A spill outside the loops is paid once a program."""
    instructions, loops = sass_loops(sass)
    return sum(op in ("LDL", "STL") and (not loops or any(a <= address <= b for a, b in loops))
               for address, op in instructions)


def registers_and_spills(cubin: bytes, name: str) -> tuple[int, int]:
    """(registers, stack + local bytes) of `name` in a cubin, from cuobjdump -res-usage."""
    out = _read_cubin("cuobjdump", "-res-usage", cubin)
    match = re.search(rf"Function {re.escape(name)}:\s*\n\s*REG:(\d+) STACK:(\d+) SHARED:\d+ LOCAL:(\d+)", out)
    if not match:
        raise RuntimeError(f"cuobjdump did not report {name}: {out[-300:]}")
    regs, stack, local = map(int, match.groups())
    return regs, stack + local


# Ops that run a GEMM tile in Triton's GPU IR, as Ampere, Hopper and Blackwell lower `tl.dot`.
DOT_OPS = ("tt.dot", "ttng.warp_group_dot", "ttng.tc_gen5_mma")


def loads_a_dot_waits_for(ttgir: str) -> list[str]:
    """The names of the values that a loop of the kernel loads with a plain `tt.load` and feeds, through any
    chain of ops, to a dot in the same iteration: loads that stall a dot for a round trip to memory every
    iteration. With 2 stages or more the pipeliner turns loads of dot operands into asynchronous copies
    issued iterations ahead, so what is left is a load it does not touch (a bias that initializes the
    accumulator was one). A value that the loop carries to the next iteration is not counted: it was loaded
    an iteration ahead. Read off the TTGIR text, where a value's name keeps its Python variable's."""
    lines = ttgir.splitlines()
    found = set()
    for start, head in enumerate(lines):
        if " scf.for " not in head:
            continue
        depth, tainted = head.count("{") - head.count("}"), {}
        for line in lines[start + 1:]:
            depth += line.count("{") - line.count("}")
            if depth <= 0:
                break
            code = line.split(" loc(")[0]
            definition = re.match(r"\s*(%[\w.$-]+)(?::\d+)?\s*=\s*([\w.]+)", code)
            used = code.split("=", 1)[1] if definition else code
            sources = set().union(*(tainted.get(u.split("#")[0], ()) for u in re.findall(r"%[\w.$-]+(?:#\d+)?", used)))
            if definition:
                name, op = definition.groups()
                if op == "tt.load":
                    sources = sources | {re.sub(r"_\d+$", "", name[1:])}
                if sources:
                    tainted[name] = sources
            if any(f" {op} " in f" {code.strip()} " for op in DOT_OPS):
                found |= sources
    return sorted(found)


def triton_too_old() -> str | None:
    """Why this triton cannot run the check, or None: it builds kernels through `ASTSource(..., constexprs=,
    attrs=)`, the form triton 3.3 introduced (3.0 to 3.2 took constants and an AttrsDescriptor)."""
    import inspect

    import triton
    from triton.compiler import ASTSource

    if "constexprs" in inspect.signature(ASTSource).parameters:
        return None
    return (f"compile-check needs triton 3.3 or later (it builds kernels through triton's ASTSource, whose form "
            f"changed in 3.3); this is triton {triton.__version__}: run it where a newer triton is installed, "
            f"or, from a checkout, scripts/compile_through_launchers.py, which compiles through any triton 3.x")


def compile_config(spec: KernelSpec, dtype: str, arch: int, config):
    """`spec`'s kernel compiled for sm_`arch` in `dtype` with `config` (a triton.Config with full
    meta-parameters), the constexprs a launch passes beside it: triton's CompiledKernel (asm, metadata)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    jitted = _kernel(spec).fn  # the autotuner wraps the @triton.jit kernel
    signature, constants, attrs = _signature(spec, jitted, dtype, config.kwargs)
    target = GPUTarget("cuda", arch, 32)
    options = triton.compiler.make_backend(target).parse_options({"num_warps": config.num_warps,
                                                                  "num_stages": config.num_stages})
    return triton.compile(ASTSource(fn=jitted, signature=signature, constexprs=constants, attrs=attrs),
                          target=target, options=options.__dict__)


def check_one(spec: KernelSpec, config_index: int, dtype: str, arch: int, config=None) -> Result:
    """Compile one kernel × config (its autotune config `config_index`, or `config`) × dtype × arch and
    judge it."""
    import triton

    from highway.kernels.launch import SHARED_MEMORY_LIMITS

    tuner = _kernel(spec)
    config = config or tuner.configs[config_index]
    meta = config.kwargs
    element = DTYPE_BYTES[dtype]
    limit = SHARED_MEMORY_LIMITS[arch]
    bound = tuner.shared_memory({**spec.constants, **meta}, config.num_stages, element)
    result = Result(spec.label or spec.name, arch, dtype, f"{meta['BLOCK_M']}x{meta['BLOCK_N']}x{meta['BLOCK_K']}",
                    config.num_warps, config.num_stages, shared_bound=bound, shared_limit=limit,
                    autotuner_tries=bound <= limit, triton=triton.__version__)
    start = time.perf_counter()
    try:
        compiled = compile_config(spec, dtype, arch, config)
        result.regs, result.spill_bytes = registers_and_spills(compiled.asm["cubin"], spec.name)
        result.spills_in_loops = spills_in_loops(disassemble(compiled.asm["cubin"])) if result.spill_bytes else 0
        result.shared_bytes = int(compiled.metadata.shared)
        result.tensor_cores = tensor_cores(compiled.asm["ptx"], arch)
        result.waits_on_loads = " ".join(loads_a_dot_waits_for(compiled.asm["ttgir"]))
        result.blocks_per_sm = blocks_per_sm(result.regs, config.num_warps, result.shared_bytes, arch)
    except Exception as e:  # a compile failure is a result: the table says which config and why
        result.problem = f"compile failed: {type(e).__name__}: {str(e).strip().splitlines()[-1][:160]}"
    result.seconds = time.perf_counter() - start
    if not result.problem:
        result.problem = judge(result, spec)
    return result


def judge(r: Result, spec: KernelSpec) -> str:
    problems = []
    if r.spill_bytes > 0 and r.dtype != "tf32" and r.dtype not in spec.spills_allowed:
        if r.spills_in_loops < 0:  # not read off the SASS
            where = ""
        elif r.spills_in_loops == 0:
            where = " (outside its loops: once a program)"
        else:
            accesses = "1 local load or store" if r.spills_in_loops == 1 else \
                f"{r.spills_in_loops} local loads and stores"
            where = f" ({accesses} in its loops)"
        problems.append(f"spills {r.spill_bytes} bytes{where}")
    if r.autotuner_tries and r.shared_bytes > r.shared_limit:
        problems.append(f"needs {r.shared_bytes} bytes of shared memory, the arch gives {r.shared_limit}")
    if r.shared_bytes > r.shared_bound:
        problems.append(f"uses {r.shared_bytes} bytes of shared memory, above the {r.shared_bound} its autotuner "
                        f"prunes by")
    gemm = not (spec.name.endswith("bwd_gates_kernel") and not spec.constants.get("RECOMPUTE", True))
    tile = min(int(v) for v in r.tile.split("x")[:2])
    if gemm and r.dtype == "bf16" and tile >= 64 and r.tensor_cores == "no":
        problems.append("misses the tensor cores")
    waits = [name for name in r.waits_on_loads.split() if name not in spec.waits_allowed]
    if r.stages >= 2 and waits:
        problems.append(f"a dot waits every iteration on {' '.join(waits)}, loaded in the loop")
    return "; ".join(problems)


def plan(archs=ARCHS, dtypes=DTYPES, kernels=None) -> list[tuple]:
    """(spec, config index, dtype, arch) for everything to compile."""
    jobs = []
    for spec in kernel_specs():
        if kernels and not any(k in (spec.label or spec.name) for k in kernels):
            continue
        tuner = _kernel(spec)
        for arch in archs:
            for dtype in dtypes:
                constants = launch_constants(spec, dtype)
                if dtype == "tf32x3" and constants["INPUT_PRECISION"] != "tf32x3":
                    continue  # it launches IEEE dots for tf32x3: the fp32 rows are its
                if spec.configs is not None:
                    configs = spec.configs(dtype, arch, tuner.configs, constants)
                else:  # those for this precision: IEEE fp32 has its own (`highway.kernels.launch.fma_configs`)
                    configs = [c for c in tuner.configs if tuner.allowed is None or tuner.allowed(constants, c)]
                jobs.extend((spec, None, dtype, arch, config) for config in configs)
    return jobs


def _run(job):
    return check_one(*job)


def compile_check(archs=ARCHS, dtypes=DTYPES, kernels=None, jobs: int | None = None, progress=None) -> list[Result]:
    """Every (kernel, config, dtype, arch) compiled, in `jobs` processes; results in plan order."""
    # Read here, not from highway.kernels: their import refuses an interpreter that would fail, and under the
    # interpreter this command's own refusal is the one to give.
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise ValueError("compile-check compiles for real GPUs: run it without TRITON_INTERPRET=1")
    too_old = triton_too_old()
    if too_old:
        raise ValueError(too_old)
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # triton's default; set, so it stops warning
    unknown = [a for a in archs if a not in TENSOR_CORE_OPS]
    if unknown:
        raise ValueError(f"unknown arch {unknown}; expected some of {sorted(TENSOR_CORE_OPS)}")
    work = plan(archs, dtypes, kernels)
    if not work:
        raise ValueError(f"no kernel matches {kernels}")
    workers = max(1, min(jobs or os.cpu_count() or 1, len(work)))
    with ProcessPoolExecutor(workers) as pool:
        results = list(progress(pool.map(_run, work), total=len(work)) if progress else pool.map(_run, work))
    return results


def write_csv(results: list[Result], path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(results[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in results)


def table(results: list[Result]) -> str:
    head = f"{'kernel':46} {'sm':>3} {'dtype':9} {'tile':>10} {'w':>2} {'s':>2} {'regs':>4} {'spill':>5} {'loop':>4} " \
           f"{'shared':>7} {'bound':>7} {'tries':>5} {'tc':>3} {'blk/SM':>6} {'occ':>4} {'dots wait on':>12}  problem"
    lines = [head, "-" * len(head)]
    for r in results:
        occupancy = f"{100 * r.blocks_per_sm * r.warps // 64}%" if r.blocks_per_sm >= 0 else "-"
        lines.append(f"{r.kernel[:46]:46} {r.arch:>3} {r.dtype:9} {r.tile:>10} {r.warps:>2} {r.stages:>2} "
                     f"{r.regs:>4} {r.spill_bytes:>5} {r.spills_in_loops:>4} {r.shared_bytes:>7} {r.shared_bound:>7} "
                     f"{'yes' if r.autotuner_tries else 'no':>5} "
                     f"{r.tensor_cores:>3} {r.blocks_per_sm:>6} {occupancy:>4} {r.waits_on_loads:>12}  {r.problem}")
    return "\n".join(lines)
