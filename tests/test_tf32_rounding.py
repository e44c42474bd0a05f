"""TF32 dots round their fp32 operands to nearest, as cuBLAS does, instead of letting the tensor cores truncate
them (`highway.kernels.highway_tiles.dot_operand`). The first H200 run found the depth-fused stack's TF32
training step 8.95x the float64 gate's tolerance; an emulation of TF32 on the CPU reproduces that number with
truncated operands and passes with rounded ones, so the gate is tested here on both."""
import os

import pytest
import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from highway.activations import ACTIVATIONS
from highway.bench.harness.cases import Case, build_stack, correctness_error, make_inputs, make_step
from highway.bench.harness.sweep import outputs_in_float64
from highway.functional import highway_linear, highway_linear_stack
from highway.kernels import highway_linear as linear_kernels, highway_stack as stack_kernels
from highway.kernels.highway_tiles import dot_operand

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
                                reason="the kernels run on a GPU or under the interpreter")


def tf32(t: torch.Tensor, rounding: str) -> torch.Tensor:
    """fp32 `t` with TF32's 10 mantissa bits: "nearest" (ties away from zero) or "truncate" (toward zero)."""
    bits = t.contiguous().view(torch.int32)
    if rounding == "nearest":
        bits = bits + 0x1000
    return (bits & ~0x1FFF).view(torch.float32)


@triton.jit
def _dot_operand_kernel(x_ptr, y_ptr, N: tl.constexpr, DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr):
    offs = tl.arange(0, N)
    tl.store(y_ptr + offs, dot_operand(tl.load(x_ptr + offs), DOT_FP32, INPUT_PRECISION).to(y_ptr.dtype.element_ty))


def _through_kernel(x, out_dtype=torch.float32, dot_fp32=False, precision="tf32"):
    y = torch.empty(x.shape, dtype=out_dtype, device=x.device)
    _dot_operand_kernel[(1,)](x, y, x.numel(), dot_fp32, precision)
    return y


def test_tf32_operands_are_rounded_to_nearest(device):
    g = torch.Generator().manual_seed(0)
    ordinary = torch.randn(4000, generator=g) * torch.logspace(-30, 30, 4000)
    one = torch.tensor(1.0)
    special = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), 1e-40, -3e-39, 3.4e38]
                           + [one.view(torch.int32).add(k).view(torch.float32).item() for k in (0xFFF, 0x1000, 0x1001)])
    x = torch.cat([ordinary, special, torch.tensor([float("nan")] * 6)])
    x = torch.cat([x, torch.ones(4096 - x.numel())]).to(device)  # tl.arange takes a power of two
    y = _through_kernel(x)
    expected = tf32(x.cpu(), "nearest")
    assert torch.equal(y.cpu().isnan(), x.cpu().isnan())
    finite = ~x.cpu().isnan()
    assert torch.equal(y.cpu()[finite], expected[finite])
    assert not torch.equal(expected, tf32(x.cpu(), "truncate"))  # the two roundings differ on these inputs
    assert (y.cpu()[finite].view(torch.int32) & 0x1FFF == 0).all()  # 10 mantissa bits left, none below
    ties = one.view(torch.int32).add(0x1000).view(torch.float32)
    assert _through_kernel(torch.full((16,), ties.item(), device=device))[0] > ties  # a tie goes away from zero


def test_only_fp32_tf32_operands_change(device):
    x = torch.randn(64, device=device)
    assert torch.equal(_through_kernel(x, precision="ieee"), x)  # IEEE dots take every bit
    h = x.to(torch.bfloat16)
    assert torch.equal(_through_kernel(h, torch.bfloat16), h)  # 16-bit tiles are left alone
    assert torch.equal(_through_kernel(h, torch.float32, dot_fp32=True), h.float())  # the interpreter's bf16 cast


class _Tf32Linear(torch.autograd.Function):
    """F.linear with TF32 operands (fp32 accumulation) in forward and backward, emulated."""

    @staticmethod
    def forward(ctx, x, w, b, rounding):
        ctx.save_for_backward(x, w)
        ctx.rounding = rounding
        return tf32(x, rounding) @ tf32(w, rounding).t() + b

    @staticmethod
    def backward(ctx, dz):
        x, w = ctx.saved_tensors
        r = ctx.rounding
        return tf32(dz, r) @ tf32(w, r), tf32(dz, r).t() @ tf32(x, r), dz.sum(0), None


def _gate_outputs(case, x, dy, monkeypatch, rounding=None):
    import highway.reference as reference

    net = build_stack(case, "torch", "cpu")
    if rounding:
        monkeypatch.setattr(reference, "F", type("TF32", (), {
            "linear": staticmethod(lambda x, w, b: _Tf32Linear.apply(x, w, b, rounding))}))
    try:
        return outputs_in_float64(make_step("fwd+bwd", net, x, dy)())
    finally:
        monkeypatch.setattr(reference, "F", F)


def test_the_gate_fails_truncated_tf32_and_passes_rounded(monkeypatch):
    # the campaign's smoke shape (depth 4, width 50, batch 128), scored as the gate scores it against eager
    # TF32 as cuBLAS rounds it: truncation reproduces the H200's 8.95x
    case = Case("highway", "dense", 4, 50, "tf32", 128, "triton-stack", "train")
    x, dy = make_inputs(case, "cpu")
    reference = outputs_in_float64(make_step("fwd+bwd", build_stack(case, "torch", "cpu").double(), x.double(),
                                             dy.double())())
    eager = _gate_outputs(case, x, dy, monkeypatch, "nearest")
    truncated, _ = correctness_error(case, _gate_outputs(case, x, dy, monkeypatch, "truncate"), reference, eager)
    rounded, _ = correctness_error(case, eager, reference, eager)
    assert truncated > 4 and rounded <= 1, (truncated, rounded)


@pytest.fixture
def tf32_dots(monkeypatch, device):
    """Our kernels' TF32 path: on a GPU at torch's "high" precision; under the interpreter, which has no TF32
    and always picks IEEE dots, forced (its dots then compute the rounded operands in fp32: TF32 emulated)."""
    before = torch.get_float32_matmul_precision()
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    else:
        force = lambda dtype: dict(DOT_FP32=False, INPUT_PRECISION="tf32")  # noqa: E731
        for module in (linear_kernels, stack_kernels):
            monkeypatch.setattr(module, "dot_options", force)
    yield
    torch.set_float32_matmul_precision(before)


def _rounded_layer(x, weight, bias):
    """A highway layer whose GEMMs take TF32-rounded operands, forward and backward (`_Tf32Linear`)."""
    n = x.shape[-1]
    z_h, z_t = _Tf32Linear.apply(x, weight, bias, "nearest").split(n, dim=-1)
    t = torch.sigmoid(z_t)
    return ACTIVATIONS["relu"](z_h) * t + x * (1 - t)


def _grads(fn, tensors, dy):
    tensors = [t.detach().clone().requires_grad_() for t in tensors]
    y = fn(*tensors)
    y.backward(dy)
    return [y.detach().cpu(), *(t.grad.cpu() for t in tensors)]


def _relative(got, want):
    return [((g - w).norm() / w.norm()).item() for g, w in zip(got, want)]


def _inputs(depth, n, device):
    g = torch.Generator().manual_seed(depth)
    x, dy = torch.randn(32, n, generator=g), torch.randn(32, n, generator=g)
    w = torch.randn(depth, 2 * n, n, generator=g) / n ** 0.5
    b = torch.zeros(depth, 2 * n)
    b[:, n:] = -2.0
    return [t.to(device) for t in (x, w, b, dy)]


def _emulated_stack(x, w, b, dy):
    """The stack with every GEMM operand rounded to TF32, on the CPU in IEEE fp32."""
    def stack(x, w, b):
        for layer in range(w.shape[0]):
            x = _rounded_layer(x, w[layer], b[layer])
        return x
    with torch.device("cpu"):
        torch.set_float32_matmul_precision("highest")  # the CPU's own matmuls exact; tf32_dots restores
        return _grads(stack, [t.cpu() for t in (x, w, b)], dy.cpu())


@pytest.mark.parametrize("weight_grads,recompute", [("atomic", False), ("atomic", True), ("gemm", False)])
def test_the_stack_rounds_every_tf32_dot_operand(weight_grads, recompute, device, tf32_dots):
    # Forward, dx and (atomic) dW dots of the depth-fused stack, the recomputing backward's too, land on the
    # emulation of rounded TF32; IEEE dots land ~1e-4 off it, so an operand left unrounded would show.
    x, w, b, dy = _inputs(4, 50, device)
    run = lambda x, w, b: highway_linear_stack(x, w, b, "relu", "triton-stack", weight_grads=weight_grads,  # noqa
                                               recompute=recompute)
    got = _grads(run, [x, w, b], dy)
    want = _emulated_stack(x, w, b, dy)
    errors = dict(zip(["y", "dx", "dW", "db"], _relative(got, want)))
    if weight_grads == "gemm":
        del errors["dW"]  # torch's batched GEMM forms it: cuBLAS's TF32 on a GPU, IEEE on a CPU
    assert max(errors.values()) < 3e-5, errors
    ieee = _grads(lambda x, w, b: highway_linear_stack(x, w, b, "relu", "torch"),
                  [t.cpu().double() for t in (x, w, b)], dy.cpu().double())
    assert min(_relative([t.float() for t in ieee], want)) > 3e-5  # the emulation is far enough from exact


def test_the_dense_layer_rounds_every_tf32_dot_operand(device, tf32_dots):
    x, w, b, dy = _inputs(1, 50, device)
    got = _grads(lambda x, w, b: highway_linear(x, w, b, "relu", backend="triton"), [x, w[0], b[0]], dy)
    with torch.device("cpu"):
        torch.set_float32_matmul_precision("highest")
        want = _grads(_rounded_layer, [x.cpu(), w[0].cpu(), b[0].cpu()], dy.cpu())
    errors = dict(zip(["y", "dx", "dW", "db"], _relative(got, want)))
    assert max(errors.values()) < 3e-5, errors


class _Tf32Conv(torch.autograd.Function):
    """A "same"-padded convolution with TF32-rounded operands in forward and backward, emulated."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        return F.conv2d(tf32(x, "nearest"), tf32(w, "nearest"), b, padding=w.shape[-1] // 2)

    @staticmethod
    def backward(ctx, dz):
        x, w = ctx.saved_tensors
        pad, dz_r = w.shape[-1] // 2, tf32(dz, "nearest")
        dx = torch.nn.grad.conv2d_input(x.shape, tf32(w, "nearest"), dz_r, padding=pad)
        dw = torch.nn.grad.conv2d_weight(tf32(x, "nearest"), w.shape, dz_r, padding=pad)
        return dx, dw, dz.sum((0, 2, 3))


def _rounded_conv_layer(x, weight, bias):
    c = x.shape[1]
    z = _Tf32Conv.apply(x, weight, bias)
    t = torch.sigmoid(z[:, c:])
    return ACTIVATIONS["relu"](z[:, :c]) * t + x * (1 - t)


def test_the_conv_layer_rounds_every_tf32_dot_operand(device, tf32_dots, monkeypatch):
    from highway.functional import highway_conv2d
    from highway.kernels import highway_conv2d as conv_kernels

    if device.type != "cuda":
        monkeypatch.setattr(conv_kernels, "dot_options", lambda dtype: dict(DOT_FP32=False, INPUT_PRECISION="tf32"))
    g = torch.Generator().manual_seed(3)
    x, dy = torch.randn(2, 16, 6, 6, generator=g), torch.randn(2, 16, 6, 6, generator=g)
    w, b = torch.randn(32, 16, 3, 3, generator=g) / 12, torch.zeros(32)
    b[16:] = -2.0
    got = _grads(lambda x, w, b: highway_conv2d(x, w, b, "relu", backend="triton"),
                 [t.to(device) for t in (x, w, b)], dy.to(device))
    with torch.device("cpu"):
        torch.set_float32_matmul_precision("highest")  # a CPU convolution: no cuDNN, no TF32
        want = _grads(_rounded_conv_layer, [x, w, b], dy)
    errors = dict(zip(["y", "dx", "dW", "db"], _relative(got, want)))
    assert max(errors.values()) < 3e-5, errors
