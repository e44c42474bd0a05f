"""Tile-level pieces shared by every highway kernel (dense, conv, and the depth-fused stack to come).

These are `@triton.jit` helpers on fp32 register tiles: they load and store nothing, so each kernel keeps
its own memory layout and only the highway math is written once.
"""
import triton
import triton.language as tl

from highway.kernels.activations import activation_fwd, activation_fwd_bwd


@triton.jit
def tf32_round(t):
    """fp32 `t` rounded to TF32's 10 mantissa bits, to nearest, ties away from zero (cuBLAS's cvt.rna): two
    integer ops an element. NaN stays NaN, ±inf stays ±inf."""
    bits = t.to(tl.uint32, bitcast=True)
    return ((bits + 0x1000) >> 13 << 13).to(tl.float32, bitcast=True)


@triton.jit
def dot_operand(t, DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr):
    """A tile as our kernels hand it to a single `tl.dot`. Under the interpreter, bf16 cast to fp32 (DOT_FP32:
    its bf16 dots are wrong there). For TF32 dots, an fp32 tile rounded to TF32 (`tf32_round`): the tensor
    cores truncate the fp32 bits Triton hands them, an error always toward zero that adds up along a dot
    instead of cancelling. Truncated, the depth-fused stack's TF32 step failed the float64 gate on an H200
    (8.95x its tolerance, where cuBLAS's TF32 passes; the CPU emulation in tests/test_tf32_rounding.py gives
    8.9x, and 0.2x rounded). The carried activations keep their fp32 bits, only the dot's copy is rounded."""
    if DOT_FP32:
        t = t.to(tl.float32)
    if INPUT_PRECISION == "tf32":
        if t.dtype == tl.float32:
            t = tf32_round(t)
    return t


@triton.jit
def tile_dot(a, b, acc, DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr):
    """acc + a·b in fp32 as our kernels take every dot (acc None: a·b), at INPUT_PRECISION ("ieee", "tf32",
    or "tf32x3"; bf16 and fp16 tiles go to the tensor cores as they are).

    "tf32x3" runs fp32 tiles on the tensor cores at about fp32's accuracy (the 3xTF32 of CUTLASS and of
    Triton's own "tf32x3"): each operand splits into hi = its TF32 rounding and lo = the rest, rounded to TF32
    too, 22 of fp32's 24 bits; a·b is lo_a·hi_b + hi_a·lo_b + hi_a·hi_b, small terms first, and drops
    lo_a·lo_b, 2⁻²² of a product. Each of the three products is exact in the fp32 accumulator, so on the CPU
    the interpreter's fp32 dots compute what the tensor cores do but for summation order. It is three
    tensor-core dots for one, against IEEE fp32's FMA dots, which hold a whole BLOCK_K of both operands in
    registers and feed them from shared memory: on an H200 the depth-fused stack's IEEE layer took 9.4 µs,
    bf16's 1.5 µs. The split is written here, not left to Triton's "tf32x3", so that its rounding is ours
    (Triton's takes lo unrounded, and the tensor cores truncate it) and the interpreter runs it. An operand
    of ±inf has a lo of inf − inf (NaN): the small products' NaN is dropped, as Triton's split drops it, so
    that hi_a·hi_b gives the inf (a NaN operand is NaN in hi too, and stays NaN)."""
    if INPUT_PRECISION == "tf32x3":
        a = a.to(tl.float32)
        b = b.to(tl.float32)
        a_hi = tf32_round(a)
        b_hi = tf32_round(b)
        a_lo = tf32_round(a - a_hi)
        b_lo = tf32_round(b - b_hi)
        small = tl.dot(a_lo, b_hi, input_precision="tf32")
        small = tl.dot(a_hi, b_lo, small, input_precision="tf32")
        small = tl.where(small == small, small, 0.0)  # inf − inf in a lo: hi_a·hi_b alone carries the inf
        if acc is not None:
            small += acc
        return tl.dot(a_hi, b_hi, small, input_precision="tf32")
    return tl.dot(dot_operand(a, DOT_FP32, INPUT_PRECISION), dot_operand(b, DOT_FP32, INPUT_PRECISION), acc,
                  input_precision=INPUT_PRECISION)


@triton.jit
def tile_coords(pid, M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """Grouped ordering of output tiles, so that GROUP_M row tiles reuse the same weight columns in L2."""
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = tl.minimum(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m
    return pid_m, pid_n


@triton.jit
def highway_epilogue(z_h, z_t, x_carry, ACTIVATION: tl.constexpr):
    """y = H·T + x·(1 − T), written as the paper writes it so that ±inf in x propagates as in the reference."""
    h = activation_fwd(z_h, ACTIVATION)
    t = tl.sigmoid(z_t)
    return h * t + x_carry * (1.0 - t)


@triton.jit
def highway_gate_grads(z_h, z_t, x_carry, dy, ACTIVATION: tl.constexpr):
    """The paper's backward (appendix A) through act and σ: (dz_H, dz_T, carry) with
    dz_H = T·dy·act'(z_H), dz_T = (H − x)·dy·T(1 − T), carry = (1 − T)·dy (x's own share of dx)."""
    h, dh = activation_fwd_bwd(z_h, ACTIVATION)
    t = tl.sigmoid(z_t)
    if ACTIVATION == 0:
        # relu's backward selects rather than multiplies, as PyTorch's does: a NaN gate upstream of a
        # closed unit (z_H <= 0) still gives that unit a zero gradient.
        dz_h = tl.where(z_h <= 0.0, 0.0, dy * t)
    else:
        dz_h = dy * t * dh
    dz_t = dy * (h - x_carry) * t * (1.0 - t)
    return dz_h, dz_t, dy * (1.0 - t)


@triton.jit
def split_range(rows, BLOCK: tl.constexpr, SPLIT_AXIS: tl.constexpr):
    """[start, end) of this program's share of a reduction over `rows`, split along grid axis SPLIT_AXIS
    into BLOCK-aligned chunks."""
    per_split = tl.cdiv(tl.cdiv(rows, tl.num_programs(SPLIT_AXIS)), BLOCK) * BLOCK
    start = tl.program_id(SPLIT_AXIS) * per_split
    return start, tl.minimum(rows, start + per_split)


@triton.jit
def write_partial(ptrs, value, mask, USE_ATOMIC: tl.constexpr):
    """Write a reduction's fp32 result, or, when the reduction is split (USE_ATOMIC), add this split's
    partial sum into a zeroed fp32 buffer with atomics."""
    if USE_ATOMIC:
        tl.atomic_add(ptrs, value, mask=mask)
    else:
        tl.store(ptrs, value.to(ptrs.dtype.element_ty), mask=mask)
