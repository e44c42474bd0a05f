"""Launch policy for every kernel: the interpreter flag, autotuning or a fixed config, the grid, `tl.dot`'s
options, and how a long reduction is split. Every special case for Triton's CPU interpreter lives here.

`@triton.autotune` needs a GPU driver to benchmark candidates and crashes under `TRITON_INTERPRET=1` on a
machine without one ("0 active drivers"). The interpreter is only for correctness, so there we launch the
plain `@triton.jit` function with a fixed config that is small enough to be quick in numpy and large
enough to exercise masking on the shapes the tests use.

Triton decides interpreter or compiler when a function is decorated, so the flag is read once, at import.
"""
import functools
import os

import torch
import triton

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def interpreter_problem(triton_version: str, numpy_version: str) -> str | None:
    """Why Triton's interpreter would fail with these versions, or None.

    - Triton 3.0 and 3.1's interpreter loses every store under numpy 2: a kernel's outputs stay as they were
      allocated, and nothing fails (seen here with torch 2.4.1; 3.2 under numpy 2, and 3.0 under numpy 1.26,
      are right).
    - Triton 3.2 to 3.6's interpreter turns a loop bound that is a kernel argument into a Python int with
      `int()` of a one-element array, which numpy 2.4 refuses ("only 0-dimensional arrays can be converted to
      Python scalars"), so every GEMM here fails (seen with triton 3.6.0, the GPU image's, under numpy 2.4.6;
      3.7 squeezes the array first, and 3.6 under numpy 2.3 is right).
    """
    from torch.torch_version import TorchVersion  # compares any version string, as torch.__version__ compares

    triton_, numpy_ = TorchVersion(triton_version), TorchVersion(numpy_version)
    if triton_ < "3.2" and numpy_ >= "2.0":
        return (f"Triton {triton_version}'s interpreter (TRITON_INTERPRET=1) loses every store under numpy "
                f"{numpy_version}, so every kernel would return garbage: install numpy<2 or triton>=3.2")
    if triton_ < "3.7" and numpy_ >= "2.4":
        return (f"Triton {triton_version}'s interpreter (TRITON_INTERPRET=1) fails under numpy {numpy_version} "
                "in every loop whose bound is a kernel argument (\"only 0-dimensional arrays can be converted to "
                "Python scalars\"), so every kernel here would fail: install numpy<2.4 or triton>=3.7")
    return None


if INTERPRET:
    import numpy

    _problem = interpreter_problem(triton.__version__, numpy.__version__)
    if _problem:
        raise RuntimeError(_problem)

# Under the interpreter every program costs Python time, so its tiles are as large as the tests' shapes
# allow while still spanning several tiles on the larger ones (masking is exercised at N = 50, 71, 128).
INTERPRET_TILES = dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=64, GROUP_M=8)
# Conv layers in the tests have 8–48 channels: channel tiles of 16 still mask and still span several tiles.
INTERPRET_CONV_TILES = {**INTERPRET_TILES, "BLOCK_N": 16, "BLOCK_K": 16}


# Every autotuner `tuned` made, for `launched_configs`.
AUTOTUNED = []


def launched_configs(fn) -> str:
    """Run `fn()`, and say which config each of our autotuned kernels launched with during it, as
    "kernel BLOCK_M=32 BLOCK_N=64 BLOCK_K=64 w16 s2; ...": what a timed row ran, to read its time against
    compile-check's registers and spills for that config. "" where none launched (the interpreter's fixed
    configs are no choice). A kernel launched with several configs in one call names its last."""
    for tuner in AUTOTUNED:
        tuner.best_config = None  # an Autotuner sets it at each launch
    fn()
    chosen = []
    for tuner in AUTOTUNED:
        config = tuner.best_config
        if config is not None:
            meta = " ".join(f"{k}={v}" for k, v in sorted(config.kwargs.items()))
            chosen.append(f"{tuner.fn.__name__} {meta} w{config.num_warps} s{config.num_stages}")
    return "; ".join(sorted(chosen))


def tuned(configs, key, interpret_config, b_tiles: int = 1, shared_memory=None, allowed=None, fma_block_k=None,
          **autotune_kwargs):
    """Decorate a `@triton.jit` kernel: autotuned on `key` and INPUT_PRECISION on a GPU, `interpret_config`
    under the interpreter.

    The autotuner never tries a config that needs more shared memory than the GPU gives a block:
    `shared_memory(meta, num_stages, element_bytes)` bounds a config's use from above. By default it is a
    pipelined GEMM's (`gemm_shared_memory`), whose k-steps load `b_tiles` (BLOCK_K × BLOCK_N) operand tiles
    beside the (BLOCK_M × BLOCK_K) one (2 for the dual GEMMs against W_H and W_T); a kernel of another shape
    gives its own (the depth-fused stack's). `allowed(meta, config)`, given, narrows the candidates further by
    the launch's own meta-parameters (the stack's width and variant). With `fma_block_k`, IEEE fp32 launches
    (INPUT_PRECISION "ieee", torch's default "highest" matmul precision) get configs of their own, the same
    tiles with that BLOCK_K (`fma_configs`), and the others keep `configs`. Launch the result as
    `kernel[grid](*args)`; it supplies the meta-parameters in both modes.
    """
    estimate = shared_memory or functools.partial(gemm_shared_memory, b_tiles=b_tiles)
    if fma_block_k:
        configs = [*configs, *fma_configs(configs, fma_block_k)]
        narrow = allowed
        allowed = lambda meta, c: precision_allows(meta, c) and (narrow is None or narrow(meta, c))  # noqa: E731

    def wrap(jitted):
        if INTERPRET:
            return _FixedConfig(jitted, interpret_config)

        def prune(configs, named_args, **kwargs):
            element = next(a.element_size() for a in named_args.values() if hasattr(a, "element_size"))
            return prune_configs(configs, kwargs, element, estimate, max_shared_memory(), allowed)

        # A config timed with tensor-core dots says nothing of FMA ones: the precision is part of the key.
        tuner = triton.autotune(configs=configs, key=[*key, "INPUT_PRECISION"],
                                prune_configs_by={"early_config_prune": prune}, **autotune_kwargs)(jitted)
        # For `highway-bench compile-check`, which prunes as the autotuner does and fails a config that uses
        # more shared memory than this bound.
        tuner.shared_memory, tuner.allowed = estimate, allowed
        AUTOTUNED.append(tuner)
        return tuner

    return wrap


def prune_configs(configs, launch_meta: dict, element_bytes: int, shared_memory, limit: int, allowed=None) -> list:
    """The configs an autotuner may try for a launch with meta-parameters `launch_meta`: those `allowed`
    whose `shared_memory(meta, num_stages, element_bytes)` fits `limit` bytes, or else the allowed one that
    needs the least."""
    meta = lambda c: {**launch_meta, **c.kwargs}  # noqa: E731
    need = lambda c: shared_memory(meta(c), c.num_stages, element_bytes)  # noqa: E731
    candidates = [c for c in configs if allowed is None or allowed(meta(c), c)] or list(configs)
    return [c for c in candidates if need(c) <= limit] or [min(candidates, key=need)]


@functools.cache
def smallest_fp32_dot_k() -> int:
    """The least K that Triton's NVIDIA backend takes for an fp32 `tl.dot`, as the backend itself says: 8 in
    triton 3.9, 16 in 3.6 (the GPU image's), which refuses a BLOCK_K of 8 with "K >= 16"; 16, every dot's
    least, where the backend has no such query (triton 3.0)."""
    try:
        import triton.language as tl
        from triton.backends.compiler import GPUTarget
        from triton.backends.nvidia.compiler import min_dot_size
        tile = tl.block_type(tl.float32, [16, 16])
        return int(min_dot_size(GPUTarget("cuda", 80, 32))(tile, tile)[2])
    except Exception:  # any older form of the query: the bound every triton accepts
        return 16


def fma_configs(configs, block_k: int) -> list:
    """`configs` for IEEE fp32 dots, with BLOCK_K `block_k`, or the least this triton takes
    (`smallest_fp32_dot_k`). Those run on the FMA units, and Triton's FMA dot holds a whole BLOCK_K of both
    operands in registers beside the accumulators: at the tensor-core tiles' BLOCK_K of 32 and 64 every dense
    tile spilled, up to 1,320 bytes; at 16 the single GEMMs spill none, and at 8 neither do the dual GEMMs and
    the conv kernels (`highway-bench compile-check --dtype fp32`). Where this triton's least K is above
    `block_k`, twice the warps hold the longer operands: at BLOCK_K 16 on their own warps the conv forward
    spilled up to 232 bytes with triton 3.6."""
    least = smallest_fp32_dot_k()
    warps = 2 if least > block_k else 1
    block_k = max(block_k, least)
    fma = [triton.Config({**c.kwargs, "BLOCK_K": min(c.kwargs["BLOCK_K"], block_k)}, num_warps=warps * c.num_warps,
                         num_stages=c.num_stages) for c in configs]
    for c in fma:
        c.fma_dots = True  # what `precision_allows` reads
    return fma


def precision_allows(meta: dict, config) -> bool:
    """Whether a launch at `meta`'s INPUT_PRECISION may try `config`: FMA configs for IEEE fp32, the others
    for tensor-core dots (bf16, fp16, TF32)."""
    return getattr(config, "fma_dots", False) == (meta.get("INPUT_PRECISION") == "ieee")


# Shared memory a block may use (opt-in maximum), by compute capability: what the compiler's tiles must fit.
SHARED_MEMORY_LIMITS = {80: 166912, 86: 101376, 87: 166912, 89: 101376, 90: 232448}


def gemm_shared_memory(meta: dict, num_stages: int, element_bytes: int, b_tiles: int) -> int:
    """Bytes of shared memory a tiled GEMM holds, at most: in the loop, the software pipeline's `num_stages`
    copies of one (BLOCK_M × BLOCK_K) tile and `b_tiles` (BLOCK_K × BLOCK_N) tiles (Triton allocates exactly
    this on Hopper and one stage fewer on Ampere); after it, where the fp32 accumulator changes layout for its
    stores or atomics through shared memory, a (BLOCK_M × BLOCK_N) fp32 tile in the same space (64 KB for the
    dW kernels' 128 × 128, above their pipeline's 48 KB)."""
    a = meta["BLOCK_M"] * meta["BLOCK_K"]
    b = b_tiles * meta["BLOCK_K"] * meta["BLOCK_N"]
    return max(num_stages * (a + b) * element_bytes, meta["BLOCK_M"] * meta["BLOCK_N"] * 4)


@functools.lru_cache(maxsize=None)
def _device_shared_memory(device_index: int) -> int:
    props = triton.runtime.driver.active.utils.get_device_properties(device_index)
    return int(props["max_shared_mem"])


def max_shared_memory() -> int:
    """The current GPU's opt-in shared memory per block, in bytes."""
    return _device_shared_memory(torch.cuda.current_device())


class _FixedConfig:
    def __init__(self, jitted, config: dict):
        self.fn = jitted
        self.config = dict(config)

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            meta = {**self.config, **kwargs}
            g = grid(meta) if callable(grid) else grid
            return self.fn[g](*args, **meta)

        return launch


def configs(*rows, names=("BLOCK_M", "BLOCK_N", "BLOCK_K")):
    """`triton.Config`s from compact rows `(bm, bn, bk, num_warps, num_stages)`; GROUP_M fixed at 8."""
    return [
        triton.Config({**dict(zip(names, row[: len(names)])), "GROUP_M": 8}, num_warps=row[-2], num_stages=row[-1])
        for row in rows
    ]


def tile_grid(rows: int, cols: int, trials: int | None = None):
    """The grid of (BLOCK_M × BLOCK_N) output tiles over a rows × cols output, for any config: 1-D, or with
    `trials` a second axis over a population's trials."""
    if trials is None:
        return lambda META: (triton.cdiv(rows, META["BLOCK_M"]) * triton.cdiv(cols, META["BLOCK_N"]),)
    return lambda META: (triton.cdiv(rows, META["BLOCK_M"]) * triton.cdiv(cols, META["BLOCK_N"]), trials)


def trial_strides(t: torch.Tensor, dims: int) -> tuple:
    """A tensor's strides behind a leading trial stride, as the kernels with a trial axis take them: 0 when
    `t` has `dims` axes (one layer or stack, no trial axis), else its own first stride."""
    return (0, *t.stride()) if t.dim() == dims else tuple(t.stride())


# How our kernels run fp32 dots (`set_fp32_dots`): "auto" follows torch's float32 matmul precision.
FP32_DOTS = ("auto", "ieee", "tf32", "tf32x3")
_fp32_dots = "auto"


def set_fp32_dots(mode: str) -> str:
    """Set how our kernels run the dots of fp32 tensors, for every launch after; returns the setting before.

    - "auto" (the default): as torch.matmul does, by `torch.get_float32_matmul_precision()`: "highest" (torch's
      default) is IEEE fp32, on the FMA units; "high" and "medium" are TF32, on the tensor cores.
    - "ieee" or "tf32": that one, whatever torch's precision.
    - "tf32x3": in the depth-fused stack, three TF32 tensor-core dots for each, about fp32's accuracy at
      tensor-core speed (`highway.kernels.highway_tiles.tile_dot`), at widths up to 64; the per-layer kernels
      run IEEE dots for it (`dot_options`). Torch has no such precision, so it is asked for here.
    bf16 and fp16 tensors are unaffected. Under Triton's interpreter "auto" and "tf32" run IEEE dots, as ever,
    and "tf32x3" runs its three dots."""
    global _fp32_dots
    if mode not in FP32_DOTS:
        raise ValueError(f"unknown fp32 dot mode {mode!r}; expected one of {list(FP32_DOTS)}")
    before, _fp32_dots = _fp32_dots, mode
    return before


def get_fp32_dots() -> str:
    """The setting `set_fp32_dots` made ("auto" unless changed)."""
    return _fp32_dots


def fp32_dot_precision(dtype: torch.dtype) -> str:
    """The input precision a GPU runs `dtype`'s dots at: "ieee", "tf32" or "tf32x3" for fp32, by
    `set_fp32_dots`; "tf32", which tl.dot ignores, for bf16 and fp16."""
    if dtype != torch.float32:
        return "tf32"
    if _fp32_dots != "auto":
        return _fp32_dots
    return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def fp32_dots_ieee(dtype: torch.dtype) -> bool:
    """Whether a GPU runs `dtype`'s dots in IEEE fp32, on the FMA units (`fp32_dot_precision`)."""
    return fp32_dot_precision(dtype) == "ieee"


def dot_options(dtype: torch.dtype, takes_tf32x3: bool = False) -> dict:
    """Meta-parameters for `tl.dot` in our kernels (`highway_tiles.tile_dot`).

    DOT_FP32: under the interpreter, `tl.dot` on bf16 tiles returns garbage (triton 3.9, CPU), so bf16 tiles
    are cast to fp32 before the dot there; on a GPU bf16 goes to the tensor cores as it is.
    INPUT_PRECISION: `fp32_dot_precision`. "tf32x3" only for a kernel that `takes_tf32x3` (the depth-fused
    stack's): the per-layer kernels' tensor-core tiles spill with 3xTF32's split operands (up to 7 KB a thread
    on sm_80, `highway-bench compile-check --dtype tf32x3`), and run IEEE dots for it instead, as accurate.
    Under the interpreter, which has no TF32, "ieee" but for "tf32x3", whose split it runs (its dots then
    compute the split's parts exactly).
    """
    precision = fp32_dot_precision(dtype)
    if precision == "tf32x3" and not takes_tf32x3:
        precision = "ieee"
    if INTERPRET and precision != "tf32x3":
        precision = "ieee"
    return dict(DOT_FP32=INTERPRET and dtype == torch.bfloat16, INPUT_PRECISION=precision)


@functools.lru_cache(maxsize=None)
def sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def reduction_splits(tiles: int, rows: int, block_rows: int, device: torch.device, split: int | None) -> int:
    """How many programs share one long reduction (dW over rows): enough to fill the GPU's SMs about twice,
    each with at least four blocks of rows; 1 under the interpreter; `split` when the caller fixes it."""
    if split is not None:
        return split
    if INTERPRET:
        return 1
    want = max(1, (2 * sm_count(device.index or 0)) // tiles)
    return max(1, min(want, triton.cdiv(rows, 4 * block_rows)))


def uses_atomics(split: int | None) -> bool:
    """Whether the splits of a reduction meet through fp32 atomics: any split on a GPU by default (the
    interpreter runs one split), or whenever the caller asks for more than one."""
    return (not INTERPRET) if split is None else split > 1
