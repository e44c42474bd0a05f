"""Fused convolutional highway layer (stride 1, "same" zero padding, odd kernel size k):

    y = act(conv(x, W_H) + b_H)·T + x·(1 − T),   T = σ(conv(x, W_T) + b_T)

`weight` is `(2C, C, k, k)`: output channels `[0, C)` are W_H, `[C, 2C)` are W_T; `bias` is `(2C,)`.
Every kernel is an implicit GEMM over output pixels p = (b, h, w) and channels: no im2col buffer. x, y,
dy and dx are addressed through their four strides, so NCHW and channels_last tensors run without a
copy; pixels-by-channels tiles are contiguous along channels for channels_last inputs, the fast layout.

1. `_highway_conv2d_fwd_kernel`: H and T from the same input tiles, bias, act, σ and carry in the
   epilogue; it writes y and nothing else (nothing of size (B, 2C, H, W)).
2. `_highway_conv2d_bwd_gates_kernel`: recomputes z_H, z_T with the forward's tile code, then the gate
   math into dZ (B·H·W, 2C) and the carry (1 − T)·dy into dx.
3. `_highway_conv2d_bwd_dx_kernel`: dx = conv_transpose(dZ, W) as an implicit GEMM (K = 2C·k²) + carry in
   the epilogue.
4. `_highway_conv2d_bwd_dw_kernel`: dW[:, :, i, j] = dZᵀ·shift_ij(x) per tap, and db = Σ dZ, split over
   pixels.

All four are Triton; no cuDNN is involved in the backward.
"""
import torch
import triton
import triton.language as tl

from highway.kernels.activations import ACTIVATION_CODES
from highway.kernels.grad_buffer import WeightGradBuffer
from highway.kernels.highway_tiles import highway_epilogue, highway_gate_grads, split_range, tile_coords, tile_dot, \
    write_partial
from highway.kernels.launch import INTERPRET_CONV_TILES, configs, dot_options, reduction_splits, \
    tile_grid, tuned

# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages), sized by `highway-bench compile-check` for sm_80 and
# sm_90: at most 64 fp32 accumulator registers a thread (2·BM·BN / (32·warps) for the dual GEMMs, whose
# epilogue, gelu's included, needs the rest), so that bf16 code never spills. The dual GEMMs' 128 × 32 tile takes
# 3 stages: at 4 the gate backward spilled 8 bytes on sm_80 once its weight loads were pipelined.
_CONV2_CONFIGS = configs(
    (128, 64, 32, 8, 3), (64, 64, 32, 4, 4), (64, 32, 32, 4, 4), (128, 32, 32, 4, 3),
    (32, 32, 32, 2, 4), (64, 16, 16, 2, 4),
)
_CONV_CONFIGS = configs(
    (128, 128, 32, 8, 3), (128, 64, 32, 4, 4), (64, 64, 32, 4, 4), (64, 32, 32, 4, 4),
    (128, 32, 32, 4, 4), (32, 32, 32, 2, 4), (64, 16, 16, 2, 4),
)
# BLOCK_K for IEEE fp32 dots, which run on the FMA units and hold a whole BLOCK_K of both operands in registers
# (`highway.kernels.launch.fma_configs`): at 16 the forward, gate and dx kernels spilled (up to 336 bytes).
_FMA_BLOCK_K = 8


def _dual_fma_fits(meta: dict, config) -> bool:
    """Whether the dual GEMMs (forward, gates) may try `config`: not the 128 × 64 tile with IEEE fp32 dots at a
    BLOCK_K of 16, the least that triton 3.6's fp32 dot takes (the GPU image's; 3.9 takes our 8). With 3.6 it
    spilled inside its K loop on sm_90 on 8 and 16 warps, 2 and 3 stages (2 to 198 local loads and stores an
    iteration), and on sm_80 too on 16 warps and 3 stages, the config `fma_configs` gives it (186 and 208;
    `highway-bench compile-check`, `spills_in_loops`)."""
    tile = config.kwargs
    return not (getattr(config, "fma_dots", False) and tile["BLOCK_K"] > _FMA_BLOCK_K
                and tile["BLOCK_M"] * tile["BLOCK_N"] >= 128 * 64)


_INT32_MAX = 2**31 - 1


def _check_pixel_indexing(x):
    """The kernels index pixels in int32 (see `pixel_coords`): B·H·W and one image must stay below 2³¹."""
    B, C, H, W = x.shape
    if B * H * W > _INT32_MAX or C * H * W > _INT32_MAX:
        raise ValueError(f"x of shape {tuple(x.shape)} is too large for the fused conv kernels' 32-bit pixel "
                         f"indexing (B·H·W and C·H·W must stay below 2**31); split the batch")


@triton.jit
def pixel_coords(offs_p, H, W):
    """(batch, row, column) of flattened output pixels, in int32: the launcher keeps P = B·H·W below 2³¹,
    and 32-bit division and registers are what the address arithmetic of an implicit GEMM can afford."""
    hw = offs_p % (H * W)
    return offs_p // (H * W), hw // W, hw % W


@triton.jit
def pixel_offsets(bi, oh, ow, stride_b, stride_h, stride_w):
    """int64 element offsets of pixels in a (B, ·, H, W) tensor of any strides: only the batch term can pass
    2³¹ (the launcher keeps one image below it)."""
    return bi.to(tl.int64) * stride_b + (oh * stride_h + ow * stride_w)


@triton.jit
def highway_conv_preactivations(
    x_ptr, w_ptr, b_ptr, offs_p, offs_c, P, C, H, W,
    stride_xb, stride_xc, stride_xh, stride_xw, stride_wo, stride_wi, stride_wh, stride_ww,
    KS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr,
):
    """fp32 tiles z_H, z_T for pixels `offs_p` and gate channels `offs_c`: for each of the k² taps, one
    shifted input tile (zero outside the image) feeds both the W_H and the W_T GEMM.

    The address arithmetic is done once, outside the tap loop: each pixel's base pointer and the weight
    tile's offsets; a tap adds one scalar to each. Only its boundary mask is per tap."""
    bi, oh, ow = pixel_coords(offs_p, H, W)
    p_mask = offs_p < P
    c_mask = offs_c < C
    offs_k = tl.arange(0, BLOCK_K)
    x_pixels = x_ptr + pixel_offsets(bi, oh, ow, stride_xb, stride_xh, stride_xw)  # (BLOCK_M,) pointers
    w_tile = offs_k[:, None] * stride_wi + offs_c[None, :] * stride_wo  # (BLOCK_K, BLOCK_N) offsets
    acc_h = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_t = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kh in tl.static_range(KS):
        dh = kh - KS // 2
        row_inside = p_mask & (oh + dh >= 0) & (oh + dh < H)
        for kw in tl.static_range(KS):
            dw = kw - KS // 2
            inside = row_inside & (ow + dw >= 0) & (ow + dw < W)
            x_tap = x_pixels + (dh * stride_xh + dw * stride_xw)
            w_tap = w_ptr + (kh * stride_wh + kw * stride_ww)
            for c0 in range(0, C, BLOCK_K):
                k_mask = offs_k < C - c0
                x_tile = tl.load(x_tap[:, None] + (c0 + offs_k)[None, :] * stride_xc,
                                 mask=inside[:, None] & k_mask[None, :], other=0.0)
                w_mask = k_mask[:, None] & c_mask[None, :]
                w_here = w_tap + c0 * stride_wi + w_tile
                wh = tl.load(w_here, mask=w_mask, other=0.0)
                wt = tl.load(w_here + C * stride_wo, mask=w_mask, other=0.0)
                acc_h = tile_dot(x_tile, wh, acc_h, DOT_FP32, INPUT_PRECISION)
                acc_t = tile_dot(x_tile, wt, acc_t, DOT_FP32, INPUT_PRECISION)
    b_h = tl.load(b_ptr + offs_c, mask=c_mask, other=0.0).to(tl.float32)
    b_t = tl.load(b_ptr + C + offs_c, mask=c_mask, other=0.0).to(tl.float32)
    return acc_h + b_h[None, :], acc_t + b_t[None, :]


@tuned(_CONV2_CONFIGS, key=["P", "C", "KS"], interpret_config=INTERPRET_CONV_TILES,
       fma_block_k=_FMA_BLOCK_K, b_tiles=2, allowed=_dual_fma_fits)
@triton.jit
def _highway_conv2d_fwd_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr, P, C, H, W,
    stride_xb, stride_xc, stride_xh, stride_xw, stride_wo, stride_wi, stride_wh, stride_ww,
    stride_yb, stride_yc, stride_yh, stride_yw,
    ACTIVATION: tl.constexpr, KS: tl.constexpr, DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    """Fuses both convolutions (one read of each input tile), bias, act, σ and the carry. Saves nothing for
    backward beyond x, W, b: the backward recomputes z_H and z_T, because storing them would write the
    (B, 2C, H, W) tensor this kernel exists to avoid, and a conv layer's activations dwarf its weights."""
    pid_p, pid_c = tile_coords(tl.program_id(0), P, C, BLOCK_M, BLOCK_N, GROUP_M)
    offs_p = pid_p * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_c = pid_c * BLOCK_N + tl.arange(0, BLOCK_N)
    z_h, z_t = highway_conv_preactivations(
        x_ptr, w_ptr, b_ptr, offs_p, offs_c, P, C, H, W, stride_xb, stride_xc, stride_xh, stride_xw,
        stride_wo, stride_wi, stride_wh, stride_ww, KS, BLOCK_M, BLOCK_N, BLOCK_K, DOT_FP32, INPUT_PRECISION,
    )
    bi, oh, ow = pixel_coords(offs_p, H, W)
    mask = (offs_p < P)[:, None] & (offs_c < C)[None, :]
    x_off = pixel_offsets(bi, oh, ow, stride_xb, stride_xh, stride_xw)[:, None] + offs_c[None, :] * stride_xc
    x_carry = tl.load(x_ptr + x_off, mask=mask, other=0.0).to(tl.float32)
    y = highway_epilogue(z_h, z_t, x_carry, ACTIVATION)
    y_off = pixel_offsets(bi, oh, ow, stride_yb, stride_yh, stride_yw)[:, None] + offs_c[None, :] * stride_yc
    tl.store(y_ptr + y_off, y.to(y_ptr.dtype.element_ty), mask=mask)


@tuned(_CONV2_CONFIGS, key=["P", "C", "KS"], interpret_config=INTERPRET_CONV_TILES,
       fma_block_k=_FMA_BLOCK_K, b_tiles=2, allowed=_dual_fma_fits)
@triton.jit
def _highway_conv2d_bwd_gates_kernel(
    dy_ptr, x_ptr, w_ptr, b_ptr, dz_ptr, dx_ptr, P, C, H, W,
    stride_xb, stride_xc, stride_xh, stride_xw, stride_wo, stride_wi, stride_wh, stride_ww,
    stride_dyb, stride_dyc, stride_dyh, stride_dyw, stride_dxb, stride_dxc, stride_dxh, stride_dxw,
    ACTIVATION: tl.constexpr, KS: tl.constexpr, DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    """Fuses the recomputed forward tile with the gate backward; writes dZ (P, 2C) and the carry into dx."""
    pid_p, pid_c = tile_coords(tl.program_id(0), P, C, BLOCK_M, BLOCK_N, GROUP_M)
    offs_p = pid_p * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_c = pid_c * BLOCK_N + tl.arange(0, BLOCK_N)
    z_h, z_t = highway_conv_preactivations(
        x_ptr, w_ptr, b_ptr, offs_p, offs_c, P, C, H, W, stride_xb, stride_xc, stride_xh, stride_xw,
        stride_wo, stride_wi, stride_wh, stride_ww, KS, BLOCK_M, BLOCK_N, BLOCK_K, DOT_FP32, INPUT_PRECISION,
    )
    bi, oh, ow = pixel_coords(offs_p, H, W)
    mask = (offs_p < P)[:, None] & (offs_c < C)[None, :]
    x_off = pixel_offsets(bi, oh, ow, stride_xb, stride_xh, stride_xw)[:, None] + offs_c[None, :] * stride_xc
    dy_off = pixel_offsets(bi, oh, ow, stride_dyb, stride_dyh, stride_dyw)[:, None] + offs_c[None, :] * stride_dyc
    x_carry = tl.load(x_ptr + x_off, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + dy_off, mask=mask, other=0.0).to(tl.float32)
    dz_h, dz_t, carry = highway_gate_grads(z_h, z_t, x_carry, dy, ACTIVATION)
    dz_ptrs = dz_ptr + offs_p.to(tl.int64)[:, None] * (2 * C) + offs_c[None, :]
    tl.store(dz_ptrs, dz_h.to(dz_ptr.dtype.element_ty), mask=mask)
    tl.store(dz_ptrs + C, dz_t.to(dz_ptr.dtype.element_ty), mask=mask)
    dx_off = pixel_offsets(bi, oh, ow, stride_dxb, stride_dxh, stride_dxw)[:, None] + offs_c[None, :] * stride_dxc
    tl.store(dx_ptr + dx_off, carry.to(dx_ptr.dtype.element_ty), mask=mask)


@tuned(_CONV_CONFIGS, key=["P", "C", "KS"], interpret_config=INTERPRET_CONV_TILES,
       fma_block_k=_FMA_BLOCK_K, restore_value=["dx_ptr"])
@triton.jit
def _highway_conv2d_bwd_dx_kernel(
    dz_ptr, w_ptr, dx_ptr, P, C, H, W,
    stride_wo, stride_wi, stride_wh, stride_ww, stride_dxb, stride_dxc, stride_dxh, stride_dxw,
    KS: tl.constexpr, DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    """Fuses dx = Σ_taps shift(dZ)·W_tap (the transposed convolution, H and T paths in one reduction of
    length 2C·k²) with the carry term that `_highway_conv2d_bwd_gates_kernel` left in dx."""
    pid_p, pid_c = tile_coords(tl.program_id(0), P, C, BLOCK_M, BLOCK_N, GROUP_M)
    offs_p = pid_p * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_c = pid_c * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_j = tl.arange(0, BLOCK_K)
    bi, oh, ow = pixel_coords(offs_p, H, W)
    p_mask = offs_p < P
    c_mask = offs_c < C
    dz_pixels = dz_ptr + offs_p.to(tl.int64) * (2 * C)  # (BLOCK_M,) pointers: dZ is (P, 2C), contiguous
    w_tile = offs_j[:, None] * stride_wo + offs_c[None, :] * stride_wi
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kh in tl.static_range(KS):
        dh = KS // 2 - kh  # the output row whose tap kh reads this input row is oh + dh
        row_inside = p_mask & (oh + dh >= 0) & (oh + dh < H)
        for kw in tl.static_range(KS):
            dw = KS // 2 - kw
            inside = row_inside & (ow + dw >= 0) & (ow + dw < W)
            dz_tap = dz_pixels + (dh * W + dw) * (2 * C)
            w_tap = w_ptr + (kh * stride_wh + kw * stride_ww)
            for j0 in range(0, 2 * C, BLOCK_K):
                j_mask = offs_j < 2 * C - j0
                dz = tl.load(dz_tap[:, None] + (j0 + offs_j)[None, :], mask=inside[:, None] & j_mask[None, :],
                             other=0.0)
                w = tl.load(w_tap + j0 * stride_wo + w_tile, mask=j_mask[:, None] & c_mask[None, :], other=0.0)
                acc = tile_dot(dz, w, acc, DOT_FP32, INPUT_PRECISION)
    mask = p_mask[:, None] & c_mask[None, :]
    dx_ptrs = dx_ptr + pixel_offsets(bi, oh, ow, stride_dxb, stride_dxh, stride_dxw)[:, None] + offs_c[None, :] * stride_dxc
    carry = tl.load(dx_ptrs, mask=mask, other=0.0).to(tl.float32)
    tl.store(dx_ptrs, (acc + carry).to(dx_ptr.dtype.element_ty), mask=mask)


@tuned(_CONV_CONFIGS, key=["P", "C", "KS"], interpret_config=INTERPRET_CONV_TILES,
       fma_block_k=_FMA_BLOCK_K, reset_to_zero=["dw_ptr", "db_ptr"])
@triton.jit
def _highway_conv2d_bwd_dw_kernel(
    dz_ptr, x_ptr, dw_ptr, db_ptr, P, C, H, W,
    stride_xb, stride_xc, stride_xh, stride_xw,
    KS: tl.constexpr, USE_ATOMIC: tl.constexpr, DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    """Fuses, per tap (grid axis 1), dW_tap = dZᵀ·shift_tap(x) with db = Σ_p dZ (tap 0, first channel tile).

    Grid axis 2 splits the pixels; partial sums meet in fp32 through `tl.atomic_add` (USE_ATOMIC), which
    makes dW's last bits depend on the order the splits finish. dW is written contiguous (2C, C, k, k).
    """
    pid_j, pid_c = tile_coords(tl.program_id(0), 2 * C, C, BLOCK_M, BLOCK_N, GROUP_M)
    tap = tl.program_id(1)
    kh = tap // KS
    kw = tap % KS
    p_start, p_end = split_range(P, BLOCK_K, 2)
    offs_j = pid_j * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_c = pid_c * BLOCK_N + tl.arange(0, BLOCK_N)
    j_mask = offs_j < 2 * C
    c_mask = offs_c < C
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    db = tl.zeros((BLOCK_M,), dtype=tl.float32)
    dh = kh - KS // 2
    dw = kw - KS // 2
    x_shift = dh * stride_xh + dw * stride_xw
    for p0 in range(p_start, p_end, BLOCK_K):
        offs_r = p0 + tl.arange(0, BLOCK_K)
        r_mask = offs_r < p_end
        bi, oh, ow = pixel_coords(offs_r, H, W)
        inside = r_mask & (oh + dh >= 0) & (oh + dh < H) & (ow + dw >= 0) & (ow + dw < W)
        dz_t = tl.load(dz_ptr + offs_r.to(tl.int64)[None, :] * (2 * C) + offs_j[:, None],
                       mask=j_mask[:, None] & r_mask[None, :], other=0.0)
        x_rows = x_ptr + (pixel_offsets(bi, oh, ow, stride_xb, stride_xh, stride_xw) + x_shift)
        x_tile = tl.load(x_rows[:, None] + offs_c[None, :] * stride_xc, mask=inside[:, None] & c_mask[None, :],
                         other=0.0)
        db += tl.sum(dz_t.to(tl.float32), axis=1)
        acc = tile_dot(dz_t, x_tile, acc, DOT_FP32, INPUT_PRECISION)
    dw_ptrs = dw_ptr + (offs_j[:, None] * C + offs_c[None, :]) * (KS * KS) + tap
    mask = j_mask[:, None] & c_mask[None, :]
    first = (tap == 0) & (pid_c == 0)
    write_partial(dw_ptrs, acc, mask, USE_ATOMIC)
    if first:
        write_partial(db_ptr + offs_j, db, j_mask, USE_ATOMIC)


def _weight_by_tap(weight):
    """weight (2C, C, k, k) as a view whose memory is (k, k, 2C, C): each tap's (2C × C) matrix contiguous, as a
    dense layer's weight lies. In the (2C, C, k, k) layout a weight tile's neighbours lie k² values apart, so
    every value is a load of its own: in bf16 two bytes, below the four that an asynchronous copy (cp.async)
    moves, and the pipeliner left the weight loads of every bf16 config synchronous, each dot waiting on them
    (`highway-bench compile-check`'s `waits_on_loads`). One copy of the weights a call, small beside the
    activations."""
    return weight.permute(2, 3, 0, 1).contiguous().permute(2, 3, 0, 1)


def highway_conv2d_fwd(x, weight, bias, activation: str):
    """Launch the fused forward on x (B, C, H, W), NCHW or channels_last; y has x's memory layout."""
    B, C, H, W = x.shape
    _check_pixel_indexing(x)
    y = torch.empty_like(x)
    P = B * H * W
    if P == 0:
        return y
    weight = _weight_by_tap(weight)
    _highway_conv2d_fwd_kernel[tile_grid(P, C)](
        x, weight, bias.contiguous(), y, P, C, H, W, *x.stride(), *weight.stride(), *y.stride(),
        ACTIVATION=ACTIVATION_CODES[activation], KS=weight.shape[-1], **dot_options(x.dtype),
    )
    return y


def highway_conv2d_bwd(dy, x, weight, bias, activation: str, split: int | None = None):
    """Launch the fused backward. Returns `(dx, dweight, dbias)`; `split` as in `highway_linear_bwd`."""
    B, C, H, W = x.shape
    _check_pixel_indexing(x)
    P, KS = B * H * W, weight.shape[-1]
    dx = torch.empty_like(x)
    if P == 0:
        return dx, torch.zeros_like(weight), torch.zeros_like(bias)
    bias = bias.contiguous()
    dots = dot_options(x.dtype)
    dz = torch.empty((P, 2 * C), device=x.device, dtype=x.dtype)
    w_by_tap = _weight_by_tap(weight)
    _highway_conv2d_bwd_gates_kernel[tile_grid(P, C)](
        dy, x, w_by_tap, bias, dz, dx, P, C, H, W, *x.stride(), *w_by_tap.stride(), *dy.stride(), *dx.stride(),
        ACTIVATION=ACTIVATION_CODES[activation], KS=KS, **dots,
    )
    _highway_conv2d_bwd_dx_kernel[tile_grid(P, C)](dz, w_by_tap, dx, P, C, H, W, *w_by_tap.stride(), *dx.stride(),
                                                   KS=KS, **dots)

    grads = WeightGradBuffer(weight, bias, split)

    def dw_grid(META):
        tiles = triton.cdiv(2 * C, META["BLOCK_M"]) * triton.cdiv(C, META["BLOCK_N"])
        return (tiles, KS * KS, reduction_splits(tiles * KS * KS, P, META["BLOCK_K"], x.device, split))

    _highway_conv2d_bwd_dw_kernel[dw_grid](dz, x, grads.dweight, grads.dbias, P, C, H, W, *x.stride(), KS=KS,
                                  USE_ATOMIC=grads.use_atomic, **dots)
    return dx, *grads.result()
