"""Depth-fused highway stack: every layer of a narrow stack (width up to 128) in one launch forward and one
backward, and, with a leading trial axis, every layer of every trial of a population.

A program owns BLOCK_M rows of one trial and keeps them on chip across all layers; what streams through
it is each layer's [W_H | W_T] (2·w·w values: 20 KB a layer at width 50 in fp32). Widths are padded to a
power of two inside the kernel (50 → 64, 71 → 128): the padded weight rows and columns load as zeros, so
padded columns never reach a real one, and they are zeroed after every layer besides.

Layout: weight (P, depth, 2N, N) with layer l's rows [W_H; W_T] as in `HighwayLinear`, bias (P, depth, 2N);
x and y (P, M, N). A single stack is P = 1 with zero trial strides.

Rounding matches the per-layer kernels: each layer's output is rounded to the input dtype before the next
layer reads it (as the per-layer kernel's store does), GEMMs take dtype operands and accumulate in fp32,
and the backward rounds dZ and each dx to the dtype as the per-layer backward's buffers do.
"""
import torch
import triton
import triton.language as tl

from highway.kernels.activations import ACTIVATION_CODES
from highway.kernels.highway_tiles import highway_epilogue, highway_gate_grads, tile_dot
from highway.kernels.launch import dot_options, fp32_dot_precision, fp32_dots_ieee, max_shared_memory, prune_configs, \
    trial_strides, tuned

MAX_STACK_WIDTH = 128  # past this, one layer's weights and a row tile's activations no longer fit on chip


def padded_width(width: int) -> int:
    """The power of two (at least 16, `tl.dot`'s smallest) a width is padded to inside the kernels."""
    return max(16, triton.next_power_of_2(width))


# The largest row tile and the warps by padded width: enough warps, and few enough rows, that the row tile,
# both pre-activation tiles, dx and a layer's weight tiles stay in registers (the backward holds the most;
# `highway-bench compile-check` finds no bf16 spill in any candidate below). TF32 at width 128 spills on 8 warps
# (triton 3.9): the backward 192 to 312 bytes, 53 to 100 local loads and stores a layer beside some 1,900 other
# instructions (`spills_in_loops`), the forward 80 or 88 on 2 stages (on 1, none); 16 warps cap a thread at 128
# registers and spill more (the backward on sm_90: 328 bytes, 88 a layer beside 1,100).
STACK_TILES = {16: (64, 4), 32: (64, 4), 64: (32, 8), 128: (16, 8)}
# The same for IEEE fp32 dots (torch's default "highest" matmul precision), which run on the FMA units and hold
# a whole row of both operands in registers: twice the warps, and at width 16 at most 32 rows (64 spilled 8
# bytes forward on sm_90). At width 128 even 16 warps spilled 2 KB a thread in the backward (8 warps: 9 KB), so
# past 64 IEEE fp32 takes the per-layer kernels (`why_the_stack_does_not_fit`).
STACK_FMA_TILES = {16: (32, 8), 32: (64, 8), 64: (32, 16)}
# The candidates the autotuner times (on M, the padded width and the trials): every row tile from tl.dot's
# smallest (16) to the width's largest, with the width's warps, in 1 to 4 pipeline stages forward and 1 to 3
# backward. A small row tile makes more programs, which a batch of 128 needs to fill more than a few SMs; a
# large one reads each layer's weights fewer times. The stages decide how much of each layer's weight load the
# chain of dependent layers waits for (read off the TTGIR and SASS for sm_80 and sm_90): 1 loads the weights
# when the layer needs them; 2 copies the next layer's (cp.async) once this layer's dots have read the buffer,
# and in the backward, whose dots run to the end of the layer, that is at the layer's end, so the next layer
# starts by waiting for the whole copy; 3 double-buffers, so the next layer's copy is in flight through this
# layer (the design note's prefetch); 4 keeps two layers' copies in flight, for weights that come from HBM (a
# timed step starts with a cold L2) rather than L2. Which wins is the GPU's to say.
_TILE_CONFIGS = [(m, w) for m in (16, 32, 64)
                 for w in sorted({w for tiles in (STACK_TILES, STACK_FMA_TILES) for _, w in tiles.values()})]
STACK_BWD_CONFIGS = [triton.Config({"BLOCK_M": m}, num_warps=w, num_stages=s) for m, w in _TILE_CONFIGS
                     for s in (1, 2, 3)]
STACK_FWD_CONFIGS = [triton.Config({"BLOCK_M": m}, num_warps=w, num_stages=s) for m, w in _TILE_CONFIGS
                     for s in (1, 2, 3, 4)]
INTERPRET_STACK_CONFIG = dict(BLOCK_M=64)  # under the interpreter every program costs Python time: few, large tiles


# The row tiles the backward takes with 3xTF32 dots (INPUT_PRECISION "tf32x3", `tile_dot`), by whether it adds dW
# up with atomics and by padded width: its split operands hold twice the registers of TF32's, and every other
# tile spilled 8 to 232 bytes on sm_80 or sm_90 with triton 3.9 (`highway-bench compile-check --dtype tf32x3`),
# and the 64-row one 16 bytes at width 16 with atomic dW on sm_90 with triton 3.6
# (`scripts/compile_through_launchers.py`); the forward takes STACK_TILES' at widths up to 64. At width 128 every
# config spilled (328 to 1,136 bytes), so there, as in IEEE fp32, the per-layer kernels take the stack.
STACK_X3_BACKWARD_ROWS = {False: {16: (16, 32, 64), 32: (16, 32, 64), 64: (16,)},
                          True: {16: (32,), 32: (16,), 64: (16,)}}


# The configs a backward that also recomputes the chunk below (RECOMPUTE_BELOW) leaves out, where its two loops
# in one kernel spilled in bf16 and neither alone did: (atomic dW, BLOCK_N, BLOCK_M, stages), None for any. With
# atomic dW at width 32 the 32-row tile, 8 bytes with triton 3.9 on sm_80 (`highway-bench compile-check`). Kept:
# width 128 on 1 stage, which spilled 8 and 16 bytes with triton 3.6 on sm_90 and sm_80 (it held the thread to
# 128 registers there, `scripts/compile_through_launchers.py`), and 2 stages did not: 2 stages at width 128 need
# more shared memory than sm_86 gives a block in bf16, or than any GPU does in fp32.
STACK_RECOMPUTE_BELOW_SKIPS = [(True, 32, 32, None)]


def stack_config_allowed(meta: dict, config) -> bool:
    """The width's row tiles and warps, for tensor-core or IEEE fp32 dots; in the backward with atomic dW, at
    most 2 stages: at 3 it spilled at width 64 in bf16 on sm_90; in the IEEE backward at least 2: at 1 the
    16-row tile spilled at width 64; with atomic dW and IEEE dots at most half the rows: the full tiles spilled
    256 to 4,160 bytes at widths 32 and 64; with 3xTF32 dots, widths up to 64 and the backward's rows in
    STACK_X3_BACKWARD_ROWS; recomputing the chunk below beside, not the configs in STACK_RECOMPUTE_BELOW_SKIPS
    (`highway-bench compile-check`). Shared memory decides the rest
    (`stack_shared_memory`)."""
    precision = meta.get("INPUT_PRECISION")
    ieee = precision == "ieee"
    tiles = STACK_FMA_TILES if ieee else STACK_TILES
    if meta["BLOCK_N"] not in tiles:
        return False
    largest, warps = tiles[meta["BLOCK_N"]]
    if meta["BLOCK_M"] > largest or config.num_warps != warps:
        return False
    if precision == "tf32x3":
        if meta["BLOCK_N"] > max(STACK_FMA_TILES):
            return False
        if "ATOMIC_WEIGHT_GRADS" in meta and meta["BLOCK_M"] not in \
                STACK_X3_BACKWARD_ROWS[bool(meta["ATOMIC_WEIGHT_GRADS"])][meta["BLOCK_N"]]:
            return False
    if meta.get("RECOMPUTE_BELOW"):
        here = (bool(meta.get("ATOMIC_WEIGHT_GRADS")), meta["BLOCK_N"], meta["BLOCK_M"], config.num_stages)
        if any(all(want is None or want == have for want, have in zip(skip, here))
               for skip in STACK_RECOMPUTE_BELOW_SKIPS):
            return False
    if ieee and "ATOMIC_WEIGHT_GRADS" in meta and config.num_stages < 2:
        return False
    if ieee and meta.get("ATOMIC_WEIGHT_GRADS", False) and meta["BLOCK_M"] > largest // 2:
        return False
    return config.num_stages < 3 or not meta.get("ATOMIC_WEIGHT_GRADS", False)


def stack_shared_memory(meta: dict, num_stages: int, element_bytes: int) -> int:
    """Bytes of shared memory a stack kernel's config holds, at most: the forward's, or the backward's when
    `meta` names ATOMIC_WEIGHT_GRADS. What the pipeliner copies ahead it keeps in `num_stages` − 1 buffers
    (read off the compiled kernels): a layer's W_H and W_T forward; backward also the saved input and W_H
    and W_T again for dx, and with atomic dW the saved input's (BLOCK_M × BLOCK_M) tile that dW reads. With
    1 stage the dots' operands pass through shared memory one layer's W_H and W_T at a time. Beside that,
    scratch for layout changes: at most (3·BLOCK_M·BLOCK_N + 3·BLOCK_M²) fp32 values in every config
    triton 3.6 and 3.9 compile for sm_80 and sm_90, and `highway-bench compile-check` fails a config that
    uses more than this bound. A GEMM's estimate (`gemm_shared_memory`) undercounts the backward by up to
    4.7x, and says that a third stage fits at width 128 (it needs 274 KB in bf16) and at width 64 in fp32 on
    sm_80 (172 KB there with triton 3.6)."""
    m, n = meta["BLOCK_M"], meta["BLOCK_N"]
    if num_stages == 1:
        copied = 2 * n * n
    elif "ATOMIC_WEIGHT_GRADS" not in meta:
        copied = (num_stages - 1) * 2 * n * n
    else:
        copied = (num_stages - 1) * (4 * n * n + m * n + (m * m if meta["ATOMIC_WEIGHT_GRADS"] else 0))
    return copied * element_bytes + 3 * (m * n + m * m) * 4


@triton.jit
def _row_tile(M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """This program's trial (grid axis 1), its rows (axis 0), the padded columns, and the rows × columns mask."""
    pid_p = tl.program_id(1).to(tl.int64)
    offs_m = (tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    offs_n = tl.arange(0, BLOCK_N)
    mask = (offs_m < M)[:, None] & (offs_n < N)[None, :]
    return pid_p, offs_m, offs_n, tl.arange(0, BLOCK_K), mask


@triton.jit
def _stack_weights(w_ptr, offs_n, offs_k, N, stride_wn, stride_wk):
    """Layer tiles W_Hᵀ and W_Tᵀ, (K × N) each (zeros past N), as the GEMM x·Wᵀ takes them."""
    mask = (offs_k < N)[:, None] & (offs_n < N)[None, :]
    ptrs = w_ptr + offs_n[None, :] * stride_wn + offs_k[:, None] * stride_wk
    wh = tl.load(ptrs, mask=mask, other=0.0)
    wt = tl.load(ptrs + N * stride_wn, mask=mask, other=0.0)
    return wh, wt


@triton.jit
def _stack_bias(b_ptr, offs_n, N):
    """A layer's b_H and b_T in fp32 (zeros past N).

    The loops load each layer's bias a layer ahead, right after the dots of the layer before. The bias is
    the dots' starting accumulator (Triton folds `dot + b` into the mma), and the pipeliner copies ahead only
    what feeds a dot's operands, so a bias loaded in its own layer held that layer's first mma for a round
    trip to L2: in the SASS for sm_80 and sm_90 the two loads sat between the layer's barrier and its first
    HMMA, forward and backward. Loaded after the dots, the round trip overlaps the gate math; loaded at the
    top of the layer, it stayed live through all of it, and the bf16 forward at 32x64, 2 stages, spilled on
    sm_90."""
    b_h = tl.load(b_ptr + offs_n, mask=offs_n < N, other=0.0).to(tl.float32)
    b_t = tl.load(b_ptr + N + offs_n, mask=offs_n < N, other=0.0).to(tl.float32)
    return b_h, b_t


@triton.jit
def _stack_preactivations(h_lo, wh, wt, b_h, b_t, DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr):
    """fp32 (z_H, z_T) of one layer for a row tile held on chip."""
    z_h = tile_dot(h_lo, wh, None, DOT_FP32, INPUT_PRECISION) + b_h[None, :]  # h_lo, the carried input, keeps its bits
    z_t = tile_dot(h_lo, wt, None, DOT_FP32, INPUT_PRECISION) + b_t[None, :]
    return z_h, z_t


@triton.jit
def _saved_input_fp32(h_lo, mask):
    """A layer's saved input in fp32 for the gate math, beside its use as the dots' operand.

    In fp32 that use would be the loaded value itself, and the pipeliner then leaves the load where it is: the
    layer's first dot waited on it for a round trip to memory every layer (read off the TTGIR for sm_80 and
    sm_90, every fp32 backward config of 2 or 3 stages). Through a select (the masked values are zeros
    already) the load has no use but the dot's, and it is copied ahead as the weights are; bf16 and fp16 have
    their conversion to fp32 in its place, and are left as they are."""
    if h_lo.dtype == tl.float32:
        return tl.where(mask, h_lo, 0.0)
    return h_lo.to(tl.float32)


@triton.jit
def _stack_forward(x_ptr, w_ptr, b_ptr, y_ptr, xs_ptr, M, N, DEPTH, stride_xp, stride_xm, stride_xk, stride_wp,
                   stride_wl, stride_wn, stride_wk, stride_bp, stride_bl, stride_xsp, ACTIVATION: tl.constexpr,
                   SAVE_INPUTS: tl.constexpr, SAVE_EVERY: tl.constexpr, STORE_Y: tl.constexpr,
                   DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """This program's rows through DEPTH layers (`_highway_stack_fwd_kernel`'s body): each layer's input saved
    (every SAVE_EVERY-th) when SAVE_INPUTS, the last layer's output stored when STORE_Y (its dtype is y_ptr's
    either way)."""
    pid_p, offs_m, offs_n, offs_k, mask = _row_tile(M, N, BLOCK_M, BLOCK_N, BLOCK_K)
    x_ptr += pid_p * stride_xp
    w_ptr += pid_p * stride_wp
    b_ptr += pid_p * stride_bp
    y_ptr += pid_p * M * N
    xs_ptr += pid_p * stride_xsp
    rows = offs_m[:, None] * N + offs_n[None, :]
    h_lo = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_n[None, :] * stride_xk, mask=mask, other=0.0)
    b_h, b_t = _stack_bias(b_ptr, offs_n, N)
    for layer in range(DEPTH):
        if SAVE_INPUTS:
            tl.store(xs_ptr + (layer // SAVE_EVERY) * M * N + rows, h_lo, mask=mask & (layer % SAVE_EVERY == 0))
        wh, wt = _stack_weights(w_ptr + layer * stride_wl, offs_n, offs_k, N, stride_wn, stride_wk)
        z_h, z_t = _stack_preactivations(h_lo, wh, wt, b_h, b_t, DOT_FP32, INPUT_PRECISION)
        b_h, b_t = _stack_bias(b_ptr + tl.minimum(layer + 1, DEPTH - 1) * stride_bl, offs_n, N)  # the next layer's
        y = highway_epilogue(z_h, z_t, h_lo.to(tl.float32), ACTIVATION)
        h_lo = tl.where(mask, y, 0.0).to(y_ptr.dtype.element_ty)  # the dtype the per-layer kernel stores
    if STORE_Y:
        tl.store(y_ptr + rows, h_lo, mask=mask)


# DEPTH is never specialized: triton makes an int argument of 1 a constant, and a launch of one layer (a
# depth-1 stack, or a last chunk of one layer) then compiled a loop-free body of its own, which spilled 88 to
# 304 bytes in IEEE fp32 at width 64 with triton 3.6 (sm_90), where any other depth spills none.
# The autotuners' keys name the constexprs that change the work (Triton keys on the listed arguments and the
# tensors' dtypes only), so that a forward that saves its inputs, or a backward that adds dW up itself, is
# not run with the config another variant was timed with.
@tuned(STACK_FWD_CONFIGS, key=["M", "BLOCK_N", "TRIALS", "ACTIVATION", "SAVE_INPUTS", "SAVE_EVERY"],
       interpret_config=INTERPRET_STACK_CONFIG, shared_memory=stack_shared_memory, allowed=stack_config_allowed)
@triton.jit(do_not_specialize=["DEPTH"])
def _highway_stack_fwd_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr, xs_ptr, M, N, DEPTH, TRIALS,
    stride_xp, stride_xm, stride_xk, stride_wp, stride_wl, stride_wn, stride_wk, stride_bp, stride_bl, stride_xsp,
    ACTIVATION: tl.constexpr, SAVE_INPUTS: tl.constexpr, SAVE_EVERY: tl.constexpr, DOT_FP32: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Fuses all DEPTH layers: per layer the dual GEMM against [W_H | W_T], bias, act, σ and the carry
    (`highway_epilogue`), with the row tile kept in registers from the first layer to the last.

    Saved for backward (SAVE_INPUTS): each layer's input, (P, DEPTH, M, N) in the input dtype: B·N values a
    layer (16 KiB at batch 128, width 64, bf16), from which the backward recomputes Z. Nothing else. With
    SAVE_EVERY = k > 1 only every k-th layer's input, (P, ⌈DEPTH/k⌉, M, N), from which the backward
    recomputes the others, k layers at a time.
    Grid: (row tiles, TRIALS); TRIALS is passed for the autotuner's key only. BLOCK_N = BLOCK_K = the width
    padded to a power of two; BLOCK_M and the pipeline stages are autotuned (STACK_FWD_CONFIGS).
    """
    _stack_forward(x_ptr, w_ptr, b_ptr, y_ptr, xs_ptr, M, N, DEPTH, stride_xp, stride_xm, stride_xk, stride_wp,
                   stride_wl, stride_wn, stride_wk, stride_bp, stride_bl, stride_xsp, ACTIVATION, SAVE_INPUTS,
                   SAVE_EVERY, True, DOT_FP32, INPUT_PRECISION, BLOCK_M, BLOCK_N, BLOCK_K)


@triton.jit
def _add_weight_grads(dw_ptr, db_ptr, x_ptr, dz_h, dz_t, offs_m, offs_n, M, N, DOT_FP32: tl.constexpr,
                      INPUT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    """Adds a row tile's share of one layer's dW = dZᵀ·x ((2N × N), fp32) and db = Σ dZ into dw and db.

    It forms dWᵀ, BLOCK_M input columns at a time (x from memory, where the layer's saved input lies): a
    (BLOCK_M × N) tile, the shape of every other dot in the layer. Triton gives a chain of dots one mma
    layout, chosen by one of them; a dW-shaped (N × N) dot chose 8 warps along the rows for sm_80, which
    replicated each (BLOCK_M × N) tile of the gate math over the warps (255 registers and spills)."""
    tl.atomic_add(db_ptr + offs_n, tl.sum(dz_h.to(tl.float32), axis=0), mask=offs_n < N, sem="relaxed")
    tl.atomic_add(db_ptr + N + offs_n, tl.sum(dz_t.to(tl.float32), axis=0), mask=offs_n < N, sem="relaxed")
    for k0 in tl.static_range(0, BLOCK_K, BLOCK_M):
        offs_k = k0 + tl.arange(0, BLOCK_M)
        x_t = tl.load(x_ptr + offs_k[:, None] + offs_m[None, :] * N, mask=(offs_k < N)[:, None] & (offs_m < M)[None, :],
                      other=0.0)
        ptrs = dw_ptr + offs_k[:, None] + offs_n[None, :] * N  # (k, n) holds dW[n, k]
        mask = (offs_k < N)[:, None] & (offs_n < N)[None, :]
        tl.atomic_add(ptrs, tile_dot(x_t, dz_h, None, DOT_FP32, INPUT_PRECISION), mask=mask, sem="relaxed")
        tl.atomic_add(ptrs + N * N, tile_dot(x_t, dz_t, None, DOT_FP32, INPUT_PRECISION), mask=mask, sem="relaxed")


@triton.jit
def _stack_backward(dy_ptr, xs_ptr, w_ptr, b_ptr, dx_ptr, dz_ptr, dw_ptr, db_ptr, M, N, DEPTH, stride_dyp, stride_dym,
                    stride_dyn, stride_wp, stride_wl, stride_wn, stride_wk, stride_bp, stride_bl, stride_xsp,
                    stride_dzp, stride_dwp, stride_dbp, ACTIVATION: tl.constexpr, ATOMIC_WEIGHT_GRADS: tl.constexpr,
                    DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr,
                    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """This program's rows back through DEPTH layers (`_highway_stack_bwd_kernel`'s body)."""
    pid_p, offs_m, offs_n, offs_k, mask = _row_tile(M, N, BLOCK_M, BLOCK_N, BLOCK_K)
    w_mask = (offs_n < N)[:, None] & (offs_k < N)[None, :]
    dy_ptr += pid_p * stride_dyp
    w_ptr += pid_p * stride_wp
    b_ptr += pid_p * stride_bp
    xs_ptr += pid_p * stride_xsp
    dz_ptr += pid_p * stride_dzp
    dw_ptr += pid_p * stride_dwp
    db_ptr += pid_p * stride_dbp
    dx_ptr += pid_p * M * N
    rows = offs_m[:, None] * N + offs_n[None, :]
    dz_rows = offs_m[:, None] * (2 * N) + offs_n[None, :]
    g = tl.load(dy_ptr + offs_m[:, None] * stride_dym + offs_n[None, :] * stride_dyn, mask=mask, other=0.0)
    b_h, b_t = _stack_bias(b_ptr + (DEPTH - 1) * stride_bl, offs_n, N)
    for i in range(DEPTH):
        layer = DEPTH - 1 - i
        h_lo = tl.load(xs_ptr + layer * M * N + rows, mask=mask, other=0.0)
        wh, wt = _stack_weights(w_ptr + layer * stride_wl, offs_n, offs_k, N, stride_wn, stride_wk)
        z_h, z_t = _stack_preactivations(h_lo, wh, wt, b_h, b_t, DOT_FP32, INPUT_PRECISION)
        b_h, b_t = _stack_bias(b_ptr + tl.maximum(layer - 1, 0) * stride_bl, offs_n, N)  # the layer below's
        dz_h, dz_t, carry = highway_gate_grads(z_h, z_t, _saved_input_fp32(h_lo, mask), g.to(tl.float32), ACTIVATION)
        dz_h = tl.where(mask, dz_h, 0.0).to(dz_ptr.dtype.element_ty)  # as the per-layer backward's dZ buffer
        dz_t = tl.where(mask, dz_t, 0.0).to(dz_ptr.dtype.element_ty)
        if not ATOMIC_WEIGHT_GRADS:
            tl.store(dz_ptr + layer * M * (2 * N) + dz_rows, dz_h, mask=mask)
            tl.store(dz_ptr + layer * M * (2 * N) + dz_rows + N, dz_t, mask=mask)
        # dx = dZ·W takes W as it lies, (N × K): loaded again (from L2) rather than kept from the recompute,
        # so that no weight tile stays live across the gate math (Ampere's mma takes operands from registers)
        w_rows = w_ptr + layer * stride_wl + offs_n[:, None] * stride_wn + offs_k[None, :] * stride_wk
        w_h = tl.load(w_rows, mask=w_mask, other=0.0)
        w_t = tl.load(w_rows + N * stride_wn, mask=w_mask, other=0.0)
        # the dots' copies: dz_h and dz_t go on, as they are, to db (a sum, not a dot) in _add_weight_grads
        dx = tile_dot(dz_h, w_h, carry, DOT_FP32, INPUT_PRECISION)
        dx = tile_dot(dz_t, w_t, dx, DOT_FP32, INPUT_PRECISION)
        if ATOMIC_WEIGHT_GRADS:
            _add_weight_grads(dw_ptr + layer * (2 * N) * N, db_ptr + layer * (2 * N), xs_ptr + layer * M * N, dz_h,
                              dz_t, offs_m, offs_n, M, N, DOT_FP32, INPUT_PRECISION, BLOCK_M, BLOCK_K)
        g = tl.where(mask, dx, 0.0).to(dx_ptr.dtype.element_ty)  # the dtype the per-layer backward stores dx in
    tl.store(dx_ptr + rows, g, mask=mask)


# Timing a config runs the kernel again: the atomics' targets are zeroed before each run, or the first
# backward would hand back its gradients added up once per timed run.
@tuned(STACK_BWD_CONFIGS, key=["M", "BLOCK_N", "TRIALS", "ACTIVATION", "ATOMIC_WEIGHT_GRADS", "RECOMPUTE_BELOW"],
       interpret_config=INTERPRET_STACK_CONFIG, shared_memory=stack_shared_memory, allowed=stack_config_allowed,
       reset_to_zero=["dw_ptr", "db_ptr"])
@triton.jit(do_not_specialize=["DEPTH", "R_DEPTH"])
def _highway_stack_bwd_kernel(
    dy_ptr, xs_ptr, w_ptr, b_ptr, dx_ptr, dz_ptr, dw_ptr, db_ptr, M, N, DEPTH, TRIALS,
    stride_dyp, stride_dym, stride_dyn, stride_wp, stride_wl, stride_wn, stride_wk, stride_bp, stride_bl,
    stride_xsp, stride_dzp, stride_dwp, stride_dbp, rx_ptr, rw_ptr, rb_ptr, rxs_ptr, R_DEPTH, stride_rxp,
    ACTIVATION: tl.constexpr, ATOMIC_WEIGHT_GRADS: tl.constexpr, RECOMPUTE_BELOW: tl.constexpr,
    DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """The layers in reverse, in one launch: per layer it recomputes Z from the saved input, fuses the gate
    backward (`highway_gate_grads`) and the carry, and forms dx = carry + dZ·W on chip, which feeds the
    layer below without leaving the chip. The weight gradients dW = dZᵀ·x and db = Σ dZ, without a launch
    per layer, one of two ways (the launcher's `weight_grads`):
    - "gemm" (ATOMIC_WEIGHT_GRADS off): each layer's dZ = [dz_H | dz_T] is written out, (P, DEPTH, M, 2N) in
      the input dtype; the launcher then forms every layer's dW with one batched GEMM and db with one sum.
    - "atomic": each program forms its rows' share of every layer's dW and db on chip right after that
      layer's dZ (`_add_weight_grads`) and adds it into fp32 dw (P, DEPTH, 2N, N) and db (P, DEPTH, 2N)
      with atomics: no dZ leaves the chip, at the cost of a GEMM and 2·N·N atomics a layer per program in
      the chain of dependent layers, and of a summation order that varies from run to run.
    (Per-program partial sums and one reduction, the third way, would write a (2N × N) fp32 tile a layer
    per program where "gemm" writes BLOCK_M × 2N values of dZ in the dtype: 4N / (BLOCK_M · its bytes) times
    the bytes, 2 to 16 times at widths 50 and 128 with the row tiles they take, before the same kind of
    reduction; it is left out for that.)
    xs, dZ, dw and db take a trial stride of their own, so that the launcher can run a long stack in chunks
    of layers (`STACK_BWD_CHUNK`). Grid and meta-parameters as the forward's, in 1 to 3 stages
    (STACK_BWD_CONFIGS, narrowed by `stack_config_allowed`).

    RECOMPUTE_BELOW (a stack that saved every k-th layer input, `recompute=True`): the grid gains a third axis
    of 2, and its second half recomputes the R_DEPTH layers of the chunk below from their saved input rx
    (weights rw, rb) into rxs, while the first half runs this chunk's backward: every chunk's recomputation
    but the top one's overlaps the backward of the chunk above on other SMs (the stack fills a few of them at
    batch 128), where a launch of its own put it in the chain of dependent launches. The two halves share
    nothing: rxs is the other of the launcher's two chunk buffers, and the launch boundary orders the next.
    """
    recompute = False
    if RECOMPUTE_BELOW:
        recompute = tl.program_id(2) == 1
    if recompute:
        _stack_forward(rx_ptr, rw_ptr, rb_ptr, rxs_ptr, rxs_ptr, M, N, R_DEPTH, stride_rxp, N, 1, stride_wp,
                       stride_wl, stride_wn, stride_wk, stride_bp, stride_bl, stride_xsp, ACTIVATION, True, 1, False,
                       DOT_FP32, INPUT_PRECISION, BLOCK_M, BLOCK_N, BLOCK_K)
    else:
        _stack_backward(dy_ptr, xs_ptr, w_ptr, b_ptr, dx_ptr, dz_ptr, dw_ptr, db_ptr, M, N, DEPTH, stride_dyp,
                        stride_dym, stride_dyn, stride_wp, stride_wl, stride_wn, stride_wk, stride_bp, stride_bl,
                        stride_xsp, stride_dzp, stride_dwp, stride_dbp, ACTIVATION, ATOMIC_WEIGHT_GRADS, DOT_FP32,
                        INPUT_PRECISION, BLOCK_M, BLOCK_N, BLOCK_K)


def stack_candidates(width: int, element_bytes: int, shared_limit: int, configs=STACK_FWD_CONFIGS,
                     constants: dict | None = None) -> list:
    """The `configs` (a kernel's) that its autotuner may try for a stack of `width`, launched with the
    constexprs `constants` (the backward's ATOMIC_WEIGHT_GRADS decides its stages), with full
    meta-parameters: what `highway-bench compile-check` compiles."""
    block = padded_width(width)
    launch = dict(BLOCK_N=block, BLOCK_K=block)
    kept = prune_configs(configs, {**(constants or {}), **launch}, element_bytes, stack_shared_memory, shared_limit,
                         stack_config_allowed)
    return [triton.Config({**launch, **c.kwargs}, num_warps=c.num_warps, num_stages=c.num_stages) for c in kept]


def widest_stack(dtype: torch.dtype) -> int:
    """The widest stack the depth-fused kernels hold on a GPU in `dtype` at the fp32 dot precision now
    (`highway.kernels.launch.fp32_dot_precision`): 64 with IEEE fp32 dots (`STACK_FMA_TILES`) and with
    3xTF32 (`STACK_X3_BACKWARD_ROWS`), else `MAX_STACK_WIDTH`."""
    return max(STACK_FMA_TILES) if fp32_dot_precision(dtype) in ("ieee", "tf32x3") else MAX_STACK_WIDTH


def why_the_stack_does_not_fit(width: int, dtype: torch.dtype, device: torch.device) -> str | None:
    """None when the depth-fused kernels hold a stack of `width` in `dtype` on `device`; else why not: wider
    than 128; fp32 past width 64 with IEEE or 3xTF32 dots; or, on a GPU with less shared memory than an A100
    or H100 (sm_86, sm_89), fp32 at width 128, whose smallest tile needs more than the GPU gives a block."""
    if width > MAX_STACK_WIDTH:
        return f"it holds widths up to {MAX_STACK_WIDTH}, got width {width}"
    if torch.device(device).type != "cuda":  # the interpreter has no shared memory to run out of
        return None
    block = padded_width(width)
    if width > widest_stack(dtype):
        if fp32_dot_precision(dtype) == "tf32x3":
            return (f"at width {width}, 3xTF32 dots (highway.kernels.set_fp32_dots('tf32x3')) need more registers "
                    f"than a GPU has: set_fp32_dots('tf32') runs them as TF32")
        return (f"at width {width}, IEEE fp32 dots (torch's default float32 matmul precision, 'highest') need more "
                f"registers than a GPU has: torch.set_float32_matmul_precision('high') runs them as TF32")
    element_bytes = dtype.itemsize
    need = stack_shared_memory(dict(BLOCK_M=16, BLOCK_N=block), 1, element_bytes)  # every variant's least
    limit = max_shared_memory()
    if need > limit:
        return (f"width {width} takes up to {need} bytes of shared memory at {element_bytes} bytes a value, this GPU "
                f"gives {limit}")
    return None


def _launch(kernel, rows: int, trials: int, args, constants: dict, width: int, dtype, halves: int = 1):
    block = padded_width(width)
    grid = lambda meta: (triton.cdiv(rows, meta["BLOCK_M"]), trials, halves)  # noqa: E731
    kernel[grid](*args, **constants, **dot_options(dtype, takes_tf32x3=True), BLOCK_N=block, BLOCK_K=block)


def highway_stack_fwd(x, weight, bias, activation: str, save_every: int):
    """All layers of a stack in one launch: x (M, N), weight (depth, 2N, N), bias (depth, 2N); or a
    population: x (P, M, N), weight (P, depth, 2N, N), bias (P, depth, 2N). Returns (y, saved): y like x,
    and what the backward needs (without P for one stack): with `save_every` = 1 each layer's input
    (P, depth, M, N), with k > 1 every k-th layer's input (P, ⌈depth/k⌉, M, N), with 0 nothing (None).
    Inputs are assumed checked (`highway.functional.highway_linear_stack`)."""
    *lead, M, N = x.shape
    trials = lead[0] if lead else 1
    depth = weight.shape[-3]
    y = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    xs = torch.empty((*lead, -(-depth // save_every), M, N), device=x.device, dtype=x.dtype) if save_every else None
    if M == 0 or trials == 0:
        return y, xs
    if depth == 0:
        return y.copy_(x), xs
    _launch_forward(x, weight, bias, y, xs, activation, max(save_every, 1))
    return y, xs


def _launch_forward(x, weight, bias, y, xs, activation: str, save_every: int):
    *lead, M, N = x.shape
    _check_int32_reach("weights", weight.shape[-3], weight.stride(-3))
    if xs is not None:
        _check_int32_reach("saved inputs", xs.shape[-3], M * N)
    trials = lead[0] if lead else 1
    bias = bias.contiguous()
    args = (x, weight, bias, y, y if xs is None else xs, M, N, weight.shape[-3], trials,
            *trial_strides(x, 2), *trial_strides(weight, 3),
            *trial_strides(bias, 2)[:2],  # bias is contiguous: its last stride is 1
            0 if xs is None else trial_strides(xs, 3)[0])
    _launch(_highway_stack_fwd_kernel, M, trials, args,
            dict(ACTIVATION=ACTIVATION_CODES[activation], SAVE_INPUTS=xs is not None, SAVE_EVERY=save_every), N,
            x.dtype)


# Layers whose dZ the backward holds at once: 2·B·N values a layer, so a chunk bounds the backward's scratch
# whatever the depth (at batch 128, width 64, bf16: 4 MiB, against 32 MiB for 1000 layers at once), for
# three launches per chunk (the kernel, the dW GEMM and the db sum) instead of three in all. With
# recomputation (`save_every` > 1) a chunk is the layers between two saved inputs.
STACK_BWD_CHUNK = 128
# With recomputation, every 32nd layer's input is saved. A training step's peak is then the weight gradient
# (which eager PyTorch ends with too) plus a chunk's scratch (dZ and two chunks' recomputed inputs, the one a
# launch runs back through and the one it recomputes beside it: 4·B·N values a layer): at batch 128, width 50,
# fp32 a chunk of 128 layers would hold 12.5 MiB, as much as two thirds of the gradient of 1000 layers, and one
# of 32 holds 3.1 MiB, for 3 launches per 32 layers (the backward with its recomputation, the GEMM, the sum).
STACK_RECOMPUTE_EVERY = 32


def saved_every(backward: bool, recompute: bool) -> int:
    """`highway_stack_fwd`'s save_every: each layer's input for a backward, every STACK_RECOMPUTE_EVERY-th
    one when it recomputes the rest, none without a backward."""
    return (STACK_RECOMPUTE_EVERY if recompute else 1) if backward else 0


def backward_chunk(depth: int, save_every: int, weight_grads: str, dtype: torch.dtype) -> int:
    """Layers one backward launch covers (`highway_stack_bwd`): those between two saved inputs when
    recomputing; all of them when atomics add dW straight into fp32 gradients; else `STACK_BWD_CHUNK`."""
    if save_every > 1:
        return min(depth, save_every)
    return depth if weight_grads == "atomic" and dtype == torch.float32 else min(depth, STACK_BWD_CHUNK)


INT32_OFFSETS = 2**31  # the stack kernels' per-layer offsets are int32: every one must stay below this


def values_per_row(depth: int, width: int, save_every: int, weight_grads: str, dtype: torch.dtype) -> int:
    """The values a row adds to the largest buffer the stack kernels index from its first layer in int32."""
    if not save_every:  # no backward: nothing saved
        return 0
    chunk = backward_chunk(depth, save_every, weight_grads, dtype)
    return max(-(-depth // save_every), chunk * (1 if weight_grads == "atomic" else 2)) * width


def most_stack_rows(depth: int, width: int, save_every: int, weight_grads: str, dtype: torch.dtype) -> int | None:
    """The most rows (of a trial) one stack call may take, or None for any number: the kernels reach a layer
    of the saved inputs, of a backward launch's inputs and of its dZ from the first layer's in int32, and
    those buffers hold ⌈depth / save_every⌉·rows·width, chunk·rows·width and chunk·rows·2·width values
    (nothing without a backward, `save_every` = 0). `highway_linear_stack` runs a larger batch in parts of
    this many rows, whose dW and db autograd adds up. (Made int64 three ways, those offsets spilled 8 to 288
    bytes in 6 to 10 of the kernels' configs for sm_80 and sm_90, where none spills now, `highway-bench
    compile-check`; in int32 they wrap, and write elsewhere, from 16,778 rows of 1000 layers of width 128.)"""
    per_row = values_per_row(depth, width, save_every, weight_grads, dtype)
    return (INT32_OFFSETS - 1) // per_row if per_row else None


def why_the_stack_cannot_index(width: int, depth: int, layer_stride: int) -> str | None:
    """None when the stack kernels' int32 offsets reach every layer's weights (`depth` layers `layer_stride`
    values apart); else why not. (A batch past them runs in parts: `most_stack_rows`.)"""
    if depth * layer_stride < INT32_OFFSETS:
        return None
    return (f"its weights hold {depth * layer_stride:,} values, past the 2**31 its kernels index in int32: at most "
            f"{(INT32_OFFSETS - 1) // layer_stride:,} layers a stack at width {width}")


def _check_int32_reach(what: str, layers: int, layer_values: int):
    """The kernels reach a layer of a buffer (one trial's) from its first in int32: a ValueError, not a write
    elsewhere, where the buffer reaches 2³¹ values. `highway_linear_stack` never gets here: it splits the
    batch (`most_stack_rows`), and takes the per-layer kernels for such weights."""
    if layers * layer_values >= INT32_OFFSETS:
        raise ValueError(f"the depth-fused stack's {what} would hold {layers * layer_values:,} values a trial, past "
                         f"the 2**31 its kernels index in int32: call highway_linear_stack, which splits the batch")


def highway_stack_bwd(dy, xs, weight, bias, activation: str, save_every: int = 1, weight_grads: str = "gemm"):
    """The backward of `highway_stack_fwd` from what it saved (`save_every` as it was called with), per
    chunk of layers from the top: with save_every > 1 a forward launch first recomputes the top chunk's layer
    inputs from its saved one, and each chunk's backward launch recomputes the chunk below's beside it
    (RECOMPUTE_BELOW), into the other of two chunk buffers (with IEEE fp32 dots, a forward launch before each
    chunk's backward recomputes its inputs); then its dx and weight gradients, as
    `weight_grads` (one of `highway.backends.STACK_WEIGHT_GRADS`) says: "gemm", a launch for dx and every
    layer's dZ, one batched GEMM for the chunk's dW and one sum for its db; "atomic", a launch that adds dW and
    db up itself, into the gradients when they are fp32 (the whole stack is then one chunk, unless
    recomputing) and into a zeroed fp32 chunk copied out after when they are not. Returns (dx, dweight,
    dbias) in the dtypes of dy, weight, bias."""
    *lead, M, N = dy.shape
    trials = lead[0] if lead else 1
    depth = weight.shape[-3]
    if M == 0 or trials == 0 or depth == 0:
        dx = torch.empty(dy.shape, device=dy.device, dtype=dy.dtype)
        return dx.copy_(dy) if depth == 0 else dx.zero_(), torch.zeros_like(weight), torch.zeros_like(bias)
    recompute = save_every > 1
    atomic = weight_grads == "atomic"
    fp32_grads = atomic and weight.dtype == torch.float32  # the atomics add straight into the gradients
    chunk = backward_chunk(depth, save_every, weight_grads, weight.dtype)
    new = lambda *shape, dtype=dy.dtype: torch.empty((*lead, *shape), device=dy.device, dtype=dtype)  # noqa: E731
    dz = None if atomic else new(chunk, M, 2 * N)
    grads = (new(depth, 2 * N, N, dtype=weight.dtype), new(depth, 2 * N, dtype=bias.dtype))
    if fp32_grads:
        for grad in grads:
            grad.zero_()
    elif atomic:  # dW and db of a chunk as views of one fp32 buffer: one zeroing launch a chunk, not two
        flat = new(chunk * 2 * N * (N + 1), dtype=torch.float32)
        scratch = (flat[..., : chunk * 2 * N * N].unflatten(-1, (chunk, 2 * N, N)),
                   flat[..., chunk * 2 * N * N:].unflatten(-1, (chunk, 2 * N)))
    bias = bias.contiguous()
    lows = list(reversed(range(0, depth, chunk)))
    # Each chunk but the top one is recomputed beside the backward of the chunk above (RECOMPUTE_BELOW), into
    # the other of two buffers; but with IEEE fp32 dots, whose FMA operands fill a thread's 128 registers at 16
    # warps, the two loops in one kernel spilled (8 bytes at 32x64, 2 stages, on sm_90 with triton 3.9, where
    # neither loop alone does), and every chunk is recomputed in a forward launch of its own before its backward.
    beside = recompute and not fp32_dots_ieee(dy.dtype)
    inputs = [new(chunk, M, N) for _ in range(2 if beside else 1)] if recompute else None
    recomputed_out = torch.empty_like(dy) if recompute else None  # the recomputing forward's y, not needed
    g = dy
    for i, low in enumerate(lows):
        layers = slice(low, min(low + chunk, depth))
        n = layers.stop - low
        w_c, b_c = weight[..., layers, :, :], bias[..., layers, :]
        xs_c = inputs[i % len(inputs)][..., :n, :, :] if recompute else xs[..., layers, :, :]
        if recompute and (i == 0 or not beside):
            _launch_forward(xs[..., low // save_every, :, :], w_c, b_c, recomputed_out, xs_c, activation, 1)
        below = lows[i + 1] if beside and i + 1 < len(lows) else None
        if fp32_grads:
            dz_c, dw_c, db_c = dy, grads[0][..., layers, :, :], grads[1][..., layers, :]  # dz: not written
        elif atomic:
            flat.zero_()
            dz_c, dw_c, db_c = dy, scratch[0][..., :n, :, :], scratch[1][..., :n, :]
        else:  # dw and db are not written by the kernel; the autotuner zeroes them, before the GEMM fills them
            dz_c, dw_c, db_c = dz[..., :n, :, :], grads[0], grads[1]
        _check_int32_reach("inputs of a backward launch", n, M * N)
        if not atomic:
            _check_int32_reach("dZ of a backward launch", n, M * 2 * N)
        if below is None:  # nothing to recompute beside this launch: the second half's arguments go unread
            rx, rw, rb, rxs = xs_c, w_c, b_c, xs_c
        else:
            rx, rw, rb = xs[..., below // save_every, :, :], weight[..., below:low, :, :], bias[..., below:low, :]
            rxs = inputs[(i + 1) % 2][..., :low - below, :, :]
        dx = torch.empty(dy.shape, device=dy.device, dtype=dy.dtype)
        args = (g, xs_c, w_c, b_c, dx, dz_c, dw_c, db_c, M, N, n, trials, *trial_strides(g, 2),
                *trial_strides(w_c, 3), *trial_strides(b_c, 2)[:2],  # bias is contiguous: its last stride is 1
                trial_strides(xs_c, 3)[0], trial_strides(dz_c, 3)[0] if not atomic else 0,
                trial_strides(dw_c, 3)[0], trial_strides(db_c, 2)[0],
                rx, rw, rb, rxs, 0 if below is None else low - below, trial_strides(rx, 2)[0])
        _launch(_highway_stack_bwd_kernel, M, trials, args,
                dict(ACTIVATION=ACTIVATION_CODES[activation], ATOMIC_WEIGHT_GRADS=atomic,
                     RECOMPUTE_BELOW=below is not None), N, dy.dtype, halves=1 if below is None else 2)
        if not atomic:
            torch.matmul(dz_c.transpose(-1, -2), xs_c, out=grads[0][..., layers, :, :])  # one batched GEMM
            torch.sum(dz_c, -2, out=grads[1][..., layers, :])  # accumulated in fp32 whatever the dtype, rounded once
        elif not fp32_grads:
            grads[0][..., layers, :, :].copy_(dw_c)
            grads[1][..., layers, :].copy_(db_c)
        g = dx
    return g, *grads
