"""Fused dense highway layer: y = act(x W_Hᵀ + b_H)·T + x·(1 − T), T = σ(x W_Tᵀ + b_T).

`weight` is `(2N, N)` in `nn.Linear` convention: rows `[0, N)` are W_H, rows `[N, 2N)` are W_T, and
`bias[:N] = b_H`, `bias[N:] = b_T`. Four kernels, in the order a training step runs them:

1. `_highway_linear_fwd_kernel`: one GEMM against [W_H | W_T] with bias, activation, sigmoid and carry in
   the epilogue.
2. `_highway_linear_bwd_gates_kernel`: the gate math of the backward (paper, appendix A) into
   dZ = [dz_H | dz_T] and the carry term (1 − T)·dy, which it writes into dx's buffer.
3. `_highway_linear_bwd_dx_kernel`: dx = dZ·W, added onto the carry term in the GEMM epilogue.
4. `_highway_linear_bwd_dw_kernel`: dW = dZᵀ·x and db = Σ_m dZ in one pass over dZ.

The backward is kernels 2–4: three launches, and no elementwise PyTorch op between them.

Tile code that a depth-fused kernel (a whole narrow stack in one launch) needs is in plain `@triton.jit`
helpers (`highway_preactivations` here; the epilogue and gate math in `highway_tiles.py`), separate
from the kernels, and the launchers are separate from the custom ops and their autograd (`highway.ops`).
"""
import torch
import triton
import triton.language as tl

from highway.kernels.activations import ACTIVATION_CODES
from highway.kernels.grad_buffer import WeightGradBuffer
from highway.kernels.highway_tiles import highway_epilogue, highway_gate_grads, split_range, tile_coords, tile_dot, \
    write_partial
from highway.kernels.launch import INTERPRET_TILES, configs, dot_options, reduction_splits, \
    tile_grid, trial_strides, tuned

# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages), sized by `highway-bench compile-check` for sm_80 and
# sm_90 so that bf16 code never spills: at most 64 fp32 accumulator registers a thread. The forward and the
# gate kernel keep two accumulators (H and T) and a heavy epilogue, so their tiles take twice the warps of
# a plain GEMM's (2·BM·BN / (32·warps) <= 64); the small ones serve the paper's widths (50, 71).
_GEMM2_CONFIGS = configs(
    (128, 64, 64, 8, 3), (64, 128, 64, 8, 3), (64, 64, 64, 4, 4), (64, 64, 32, 4, 5),
    (32, 64, 64, 4, 4), (32, 32, 64, 2, 4), (16, 32, 64, 2, 4),
)
# BLOCK_K for IEEE fp32 dots, which run on the FMA units and hold a whole BLOCK_K of both operands in registers
# (`highway.kernels.launch.fma_configs`): at 16 the dual GEMMs' gate kernel still spilled (up to 64 bytes).
_FMA_BLOCK_K2, _FMA_BLOCK_K = 8, 16
_GEMM_CONFIGS = configs(
    (128, 128, 64, 8, 3), (128, 128, 32, 8, 4), (128, 64, 64, 4, 4), (64, 128, 64, 4, 4),
    (64, 64, 64, 4, 4), (32, 64, 64, 4, 4), (16, 32, 64, 2, 4),
)


@triton.jit
def highway_preactivations(
    x_ptr, w_ptr, b_ptr, offs_m, offs_n, M, N,
    stride_xm, stride_xk, stride_wn, stride_wk,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr,
):
    """fp32 tiles z_H = x W_Hᵀ + b_H and z_T = x W_Tᵀ + b_T for rows `offs_m` (int64) and gate columns `offs_n`.

    Each x tile is loaded once and multiplied by the matching column tiles of W_H and W_T.
    """
    offs_k = tl.arange(0, BLOCK_K)
    m_mask = offs_m < M
    n_mask = offs_n < N
    x_ptrs = x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :] * stride_xk
    wh_ptrs = w_ptr + offs_n[None, :] * stride_wn + offs_k[:, None] * stride_wk
    wt_ptrs = wh_ptrs + N * stride_wn
    acc_h = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_t = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, N, BLOCK_K):
        k_mask = (k0 + offs_k) < N
        x_tile = tl.load(x_ptrs, mask=m_mask[:, None] & k_mask[None, :], other=0.0)
        wh = tl.load(wh_ptrs, mask=k_mask[:, None] & n_mask[None, :], other=0.0)
        wt = tl.load(wt_ptrs, mask=k_mask[:, None] & n_mask[None, :], other=0.0)
        acc_h = tile_dot(x_tile, wh, acc_h, DOT_FP32, INPUT_PRECISION)
        acc_t = tile_dot(x_tile, wt, acc_t, DOT_FP32, INPUT_PRECISION)
        x_ptrs += BLOCK_K * stride_xk
        wh_ptrs += BLOCK_K * stride_wk
        wt_ptrs += BLOCK_K * stride_wk
    b_h = tl.load(b_ptr + offs_n, mask=n_mask, other=0.0).to(tl.float32)
    b_t = tl.load(b_ptr + N + offs_n, mask=n_mask, other=0.0).to(tl.float32)
    return acc_h + b_h[None, :], acc_t + b_t[None, :]


@tuned(_GEMM2_CONFIGS, key=["M", "N"], interpret_config=INTERPRET_TILES,
       fma_block_k=_FMA_BLOCK_K2, b_tiles=2)
@triton.jit
def _highway_linear_fwd_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr, z_ptr, M, N,
    stride_xp, stride_xm, stride_xk, stride_wp, stride_wn, stride_wk, stride_bp,
    ACTIVATION: tl.constexpr, STORE_PREACT: tl.constexpr,
    DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    """Fuses: x·[W_H | W_T]ᵀ (x read once for both), + bias, act, σ, and the carry y = H·T + x·(1 − T).

    The (M, 2N) pre-activations stay in registers. Saved for backward, only when autograd needs it
    (STORE_PREACT): Z = [z_H | z_T], (M, 2N), in x's dtype for fp32 and bf16 and in fp32 for fp16 (see
    `preactivation_dtype`). The backward needs H, T and act'(z_H); Z rebuilds all three exactly (H or T
    alone cannot give gelu' or a precise σ' for nearly closed gates), costs the same bytes as storing H
    and T, and spares the backward a second GEMM. With `recompute` the launcher skips even that and the
    backward re-runs this GEMM instead: x alone is kept (for very deep stacks).

    Grid axis 1 is the trial axis of a population: trial p's x, weight and bias start at p times their
    trial strides (0 for a single layer), its y and Z at p times their (contiguous) trial sizes.
    """
    pid_m, pid_n = tile_coords(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    pid_p = tl.program_id(1).to(tl.int64)
    x_ptr += pid_p * stride_xp
    w_ptr += pid_p * stride_wp
    b_ptr += pid_p * stride_bp
    y_ptr += pid_p * M * N
    z_ptr += pid_p * M * (2 * N)
    offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    z_h, z_t = highway_preactivations(
        x_ptr, w_ptr, b_ptr, offs_m, offs_n, M, N, stride_xm, stride_xk, stride_wn, stride_wk,
        BLOCK_M, BLOCK_N, BLOCK_K, DOT_FP32, INPUT_PRECISION,
    )
    mask = (offs_m < M)[:, None] & (offs_n < N)[None, :]
    x_carry = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_n[None, :] * stride_xk, mask=mask, other=0.0)
    y = highway_epilogue(z_h, z_t, x_carry.to(tl.float32), ACTIVATION)
    tl.store(y_ptr + offs_m[:, None] * N + offs_n[None, :], y.to(y_ptr.dtype.element_ty), mask=mask)
    if STORE_PREACT:
        z_ptrs = z_ptr + offs_m[:, None] * (2 * N) + offs_n[None, :]
        tl.store(z_ptrs, z_h.to(z_ptr.dtype.element_ty), mask=mask)
        tl.store(z_ptrs + N, z_t.to(z_ptr.dtype.element_ty), mask=mask)


@tuned(_GEMM2_CONFIGS, key=["M", "N"], interpret_config=INTERPRET_TILES,
       fma_block_k=_FMA_BLOCK_K2, b_tiles=2)
@triton.jit
def _highway_linear_bwd_gates_kernel(
    dy_ptr, x_ptr, w_ptr, b_ptr, z_ptr, dz_ptr, dx_ptr, M, N,
    stride_dyp, stride_dym, stride_dyn, stride_xp, stride_xm, stride_xk, stride_wp, stride_wn, stride_wk, stride_bp,
    ACTIVATION: tl.constexpr, RECOMPUTE: tl.constexpr,
    DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    """Fuses the gate backward: dz_H = T·dy·act'(z_H), dz_T = (H − x)·dy·T(1 − T), carry = (1 − T)·dy.

    Reads Z (or, with RECOMPUTE, rebuilds it with the forward's GEMM tile), x and dy; writes dZ (M, 2N) for
    the two weight-path GEMMs, and the carry term into dx, which `_highway_linear_bwd_dx_kernel` then
    completes. H, T and act' live only in registers. Grid axis 1 is the trial axis, as in the forward.
    """
    pid_m, pid_n = tile_coords(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    pid_p = tl.program_id(1).to(tl.int64)
    dy_ptr += pid_p * stride_dyp
    x_ptr += pid_p * stride_xp
    w_ptr += pid_p * stride_wp
    b_ptr += pid_p * stride_bp
    z_ptr += pid_p * M * (2 * N)
    dz_ptr += pid_p * M * (2 * N)
    dx_ptr += pid_p * M * N
    offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (offs_m < M)[:, None] & (offs_n < N)[None, :]
    zz = offs_m[:, None] * (2 * N) + offs_n[None, :]
    if RECOMPUTE:
        z_h, z_t = highway_preactivations(
            x_ptr, w_ptr, b_ptr, offs_m, offs_n, M, N, stride_xm, stride_xk, stride_wn, stride_wk,
            BLOCK_M, BLOCK_N, BLOCK_K, DOT_FP32, INPUT_PRECISION,
        )
    else:
        z_h = tl.load(z_ptr + zz, mask=mask, other=0.0).to(tl.float32)
        z_t = tl.load(z_ptr + zz + N, mask=mask, other=0.0).to(tl.float32)
    x_carry = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_n[None, :] * stride_xk, mask=mask, other=0.0)
    dy = tl.load(dy_ptr + offs_m[:, None] * stride_dym + offs_n[None, :] * stride_dyn, mask=mask, other=0.0)
    dz_h, dz_t, carry = highway_gate_grads(z_h, z_t, x_carry.to(tl.float32), dy.to(tl.float32), ACTIVATION)
    tl.store(dz_ptr + zz, dz_h.to(dz_ptr.dtype.element_ty), mask=mask)
    tl.store(dz_ptr + zz + N, dz_t.to(dz_ptr.dtype.element_ty), mask=mask)
    tl.store(dx_ptr + offs_m[:, None] * N + offs_n[None, :], carry.to(dx_ptr.dtype.element_ty), mask=mask)


@tuned(_GEMM_CONFIGS, key=["M", "N"], interpret_config=INTERPRET_TILES,
       fma_block_k=_FMA_BLOCK_K, restore_value=["dx_ptr"])
@triton.jit
def _highway_linear_bwd_dx_kernel(
    dz_ptr, w_ptr, dx_ptr, M, N, stride_wp, stride_wn, stride_wk,
    DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    """Fuses dx = dZ·W (K = 2N: the H and T paths in one reduction) with the carry term (1 − T)·dy, which
    `_highway_linear_bwd_gates_kernel` left in dx and this epilogue adds in fp32 before the one store.
    Grid axis 1 is the trial axis."""
    pid_m, pid_n = tile_coords(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    pid_p = tl.program_id(1).to(tl.int64)
    dz_ptr += pid_p * M * (2 * N)
    w_ptr += pid_p * stride_wp
    dx_ptr += pid_p * M * N
    offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_j = tl.arange(0, BLOCK_K)
    m_mask = offs_m < M
    n_mask = offs_n < N
    dz_ptrs = dz_ptr + offs_m[:, None] * (2 * N) + offs_j[None, :]
    w_ptrs = w_ptr + offs_j[:, None] * stride_wn + offs_n[None, :] * stride_wk
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for j0 in range(0, 2 * N, BLOCK_K):
        j_mask = (j0 + offs_j) < 2 * N
        dz = tl.load(dz_ptrs, mask=m_mask[:, None] & j_mask[None, :], other=0.0)
        w = tl.load(w_ptrs, mask=j_mask[:, None] & n_mask[None, :], other=0.0)
        acc = tile_dot(dz, w, acc, DOT_FP32, INPUT_PRECISION)
        dz_ptrs += BLOCK_K
        w_ptrs += BLOCK_K * stride_wn
    mask = m_mask[:, None] & n_mask[None, :]
    dx_ptrs = dx_ptr + offs_m[:, None] * N + offs_n[None, :]
    carry = tl.load(dx_ptrs, mask=mask, other=0.0).to(tl.float32)
    tl.store(dx_ptrs, (acc + carry).to(dx_ptr.dtype.element_ty), mask=mask)


@tuned(_GEMM_CONFIGS, key=["M", "N"], interpret_config=INTERPRET_TILES,
       fma_block_k=_FMA_BLOCK_K, reset_to_zero=["dw_ptr", "db_ptr"])
@triton.jit
def _highway_linear_bwd_dw_kernel(
    dz_ptr, x_ptr, dw_ptr, db_ptr, M, N, stride_xp, stride_xm, stride_xk,
    USE_ATOMIC: tl.constexpr, DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    """Fuses dW = dZᵀ·x (a (2N, N) output reduced over M) with db = Σ_m dZ from the same dZ tiles.

    Grid axis 1 splits M so that narrow layers (few output tiles, long reduction) still fill the GPU;
    split partial sums meet in fp32 through `tl.atomic_add` (USE_ATOMIC), which makes dW's last bits depend
    on the order the splits finish. Programs in the first column of tiles also produce db. Grid axis 2 is
    the trial axis: trial p's dW and db are the p-th (2N, N) and (2N,) blocks of contiguous buffers.
    """
    pid_j, pid_n = tile_coords(tl.program_id(0), 2 * N, N, BLOCK_M, BLOCK_N, GROUP_M)
    pid_p = tl.program_id(2).to(tl.int64)
    dz_ptr += pid_p * M * (2 * N)
    x_ptr += pid_p * stride_xp
    dw_ptr += pid_p * (2 * N) * N
    db_ptr += pid_p * (2 * N)
    m_start, m_end = split_range(M, BLOCK_K, 1)
    offs_j = pid_j * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    j_mask = offs_j < 2 * N
    n_mask = offs_n < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    db = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for m0 in range(m_start, m_end, BLOCK_K):
        offs_r = (m0 + tl.arange(0, BLOCK_K)).to(tl.int64)
        r_mask = offs_r < m_end
        dz_t = tl.load(dz_ptr + offs_r[None, :] * (2 * N) + offs_j[:, None], mask=j_mask[:, None] & r_mask[None, :],
                       other=0.0)
        x_tile = tl.load(x_ptr + offs_r[:, None] * stride_xm + offs_n[None, :] * stride_xk,
                         mask=r_mask[:, None] & n_mask[None, :], other=0.0)
        db += tl.sum(dz_t.to(tl.float32), axis=1)
        acc = tile_dot(dz_t, x_tile, acc, DOT_FP32, INPUT_PRECISION)
    dw_ptrs = dw_ptr + offs_j[:, None] * N + offs_n[None, :]
    mask = j_mask[:, None] & n_mask[None, :]
    write_partial(dw_ptrs, acc, mask, USE_ATOMIC)
    if pid_n == 0:
        write_partial(db_ptr + offs_j, db, j_mask, USE_ATOMIC)


def preactivation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype Z is saved in for backward. fp16 tops out at 65504, and a pre-activation past it (which the
    fp32 accumulator holds, and which a nearly closed gate keeps out of y) would come back as inf and turn
    the backward's inf·0 into NaN. So fp16 layers save Z in fp32: 8N bytes a row instead of 4N, which with x
    makes 10N saved bytes a row instead of 6N. bf16 has fp32's range and keeps its own dtype."""
    return torch.float32 if dtype == torch.float16 else dtype


def highway_linear_fwd(x, weight, bias, activation: str, store_preactivations: bool):
    """Launch the fused forward on `x` (M, N) with weight (2N, N) and bias (2N,), or on a population: x
    (P, M, N), weight (P, 2N, N), bias (P, 2N), one launch for all trials. Returns `(y, Z)` shaped like x
    (Z with 2N columns); Z is None unless stored.

    Inputs are assumed checked (see `highway.functional`); any strides of x and weight are accepted.
    """
    *lead, M, N = x.shape
    trials = lead[0] if lead else 1
    y = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    z = (torch.empty((*lead, M, 2 * N), device=x.device, dtype=preactivation_dtype(x.dtype))
         if store_preactivations else None)
    if M == 0 or trials == 0:
        return y, z
    bias = bias.contiguous()
    _highway_linear_fwd_kernel[tile_grid(M, N, trials)](
        x, weight, bias, y, y if z is None else z, M, N,
        *trial_strides(x, 2), *trial_strides(weight, 2), trial_strides(bias, 1)[0],
        ACTIVATION=ACTIVATION_CODES[activation], STORE_PREACT=store_preactivations, **dot_options(x.dtype),
    )
    return y, z


def highway_linear_bwd(dy, x, weight, bias, z, activation: str, split: int | None = None):
    """Launch the fused backward, for one layer or a population (shapes as `highway_linear_fwd`'s). `z` is
    the forward's Z, or None to recompute it here.

    Returns `(dx, dweight, dbias)` in the dtypes of x, weight and bias. `split` splits the dW reduction
    over M into that many programs joined by fp32 atomics; None picks 1 under the interpreter and enough
    to fill the GPU's SMs otherwise.
    """
    *lead, M, N = x.shape
    trials = lead[0] if lead else 1
    dx = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    if M == 0 or trials == 0:
        return dx, torch.zeros_like(weight), torch.zeros_like(bias)
    bias = bias.contiguous()
    dots = dot_options(x.dtype)
    dz = torch.empty((*lead, M, 2 * N), device=x.device, dtype=x.dtype)
    _highway_linear_bwd_gates_kernel[tile_grid(M, N, trials)](
        dy, x, weight, bias, dz if z is None else z, dz, dx, M, N,
        *trial_strides(dy, 2), *trial_strides(x, 2), *trial_strides(weight, 2), trial_strides(bias, 1)[0],
        ACTIVATION=ACTIVATION_CODES[activation], RECOMPUTE=z is None, **dots,
    )
    _highway_linear_bwd_dx_kernel[tile_grid(M, N, trials)](dz, weight, dx, M, N, *trial_strides(weight, 2), **dots)

    grads = WeightGradBuffer(weight, bias, split)

    def dw_grid(META):
        tiles = triton.cdiv(2 * N, META["BLOCK_M"]) * triton.cdiv(N, META["BLOCK_N"])
        return (tiles, reduction_splits(tiles * trials, M, META["BLOCK_K"], x.device, split), trials)

    _highway_linear_bwd_dw_kernel[dw_grid](dz, x, grads.dweight, grads.dbias, M, N, *trial_strides(x, 2),
                                           USE_ATOMIC=grads.use_atomic, **dots)
    return dx, *grads.result()
