"""TF32 dots round their fp32 operands to nearest, as cuBLAS does, instead of letting the tensor cores truncate
them (`highway.kernels.highway_tiles.dot_operand`). The first H200 run found the depth-fused stack's TF32
training step 8.95x the float64 gate's tolerance; an emulation of TF32 on the CPU reproduces that number with
truncated operands and passes with rounded ones, so the gate is tested here on both."""
import contextlib
import os
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import triton
import triton.language as tl

import highway.reference as reference
from highway.bench.harness.cases import Case, build_stack, correctness_error, make_inputs, make_step
from highway.bench.harness.sweep import outputs_in_float64
from highway.functional import highway_conv2d, highway_linear, highway_linear_stack
from highway.kernels import highway_conv2d as conv_kernels, highway_linear as linear_kernels, \
    highway_stack as stack_kernels
from highway.kernels.highway_tiles import dot_operand
from highway_cases import output_and_grads_on_cpu, stack_inputs, tf32

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
                                reason="the kernels run on a GPU or under the interpreter")


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


class _Tf32Conv(torch.autograd.Function):
    """A "same"-padded convolution with TF32 operands in forward and backward, emulated."""

    @staticmethod
    def forward(ctx, x, w, b, rounding):
        ctx.save_for_backward(x, w)
        ctx.rounding = rounding
        return F.conv2d(tf32(x, rounding), tf32(w, rounding), b, padding=w.shape[-1] // 2)

    @staticmethod
    def backward(ctx, dz):
        x, w = ctx.saved_tensors
        r, pad = ctx.rounding, w.shape[-1] // 2
        dx = torch.nn.grad.conv2d_input(x.shape, tf32(w, r), tf32(dz, r), padding=pad)
        dw = torch.nn.grad.conv2d_weight(tf32(x, r), w.shape, tf32(dz, r), padding=pad)
        return dx, dw, dz.sum((0, 2, 3)), None


@contextlib.contextmanager
def _tf32_reference(monkeypatch, rounding="nearest"):
    """`highway.reference` (the eager layers, stack and conv, and the nets built on them) with its GEMMs and
    convolutions taking TF32 operands, on the CPU: TF32 emulated under the reference's own layer math."""
    with monkeypatch.context() as m, torch.device("cpu"):
        m.setattr(reference, "F", SimpleNamespace(
            linear=lambda x, w, b: _Tf32Linear.apply(x, w, b, rounding),
            conv2d=lambda x, w, b, padding: _Tf32Conv.apply(x, w, b, rounding)))
        before = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")  # the CPU's own products exact
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(before)


def _gate_outputs(case, x, dy, monkeypatch, rounding):
    with _tf32_reference(monkeypatch, rounding):
        return outputs_in_float64(make_step("fwd+bwd", build_stack(case, "torch", "cpu"), x, dy)())


def test_the_gate_fails_truncated_tf32_and_passes_rounded(monkeypatch):
    # the campaign's smoke shape (depth 4, width 50, batch 128), scored as the gate scores it against eager
    # TF32 as cuBLAS rounds it: truncation reproduces the H200's 8.95x
    case = Case("highway", "dense", 4, 50, "tf32", 128, "triton-stack", "train")
    x, dy = make_inputs(case, "cpu")
    float64 = outputs_in_float64(make_step("fwd+bwd", build_stack(case, "torch", "cpu").double(), x.double(),
                                           dy.double())())
    eager = _gate_outputs(case, x, dy, monkeypatch, "nearest")
    truncated, _ = correctness_error(case, _gate_outputs(case, x, dy, monkeypatch, "truncate"), float64, eager)
    rounded, _ = correctness_error(case, eager, float64, eager)
    assert truncated > 4 and rounded <= 1, (truncated, rounded)


@pytest.fixture
def tf32_dots(monkeypatch, device):
    """Our kernels' TF32 path: on a GPU at torch's "high" precision; under the interpreter, which has no TF32
    and always picks IEEE dots, forced (its dots then compute the rounded operands in fp32: TF32 emulated)."""
    before = torch.get_float32_matmul_precision()
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    else:
        force = lambda dtype, **_: dict(DOT_FP32=False, INPUT_PRECISION="tf32")  # noqa: E731
        for module in (linear_kernels, conv_kernels, stack_kernels):
            monkeypatch.setattr(module, "dot_options", force)
    yield
    torch.set_float32_matmul_precision(before)


def _errors(got, want):
    """‖got − want‖ / ‖want‖ of the output and each gradient."""
    return {name: ((g - w).norm() / w.norm()).item() for name, g, w in zip(["y", "dx", "dW", "db"], got, want)}


def _emulated(reference_fn, tensors, dy, monkeypatch):
    with _tf32_reference(monkeypatch):
        return output_and_grads_on_cpu(lambda *t: reference_fn(*t, "relu"), [t.cpu() for t in tensors], dy.cpu())


@pytest.mark.parametrize("weight_grads,recompute", [("atomic", False), ("atomic", True), ("gemm", False)])
def test_the_stack_rounds_every_tf32_dot_operand(weight_grads, recompute, device, tf32_dots, monkeypatch):
    # Forward, dx and (atomic) dW dots of the depth-fused stack, the recomputing backward's too, land on the
    # emulation of rounded TF32; IEEE dots land ~1e-4 off it, so an operand left unrounded would show.
    x, w, b, dy = stack_inputs(4, 50, device)
    run = lambda x, w, b: highway_linear_stack(x, w, b, "relu", "triton-stack", weight_grads=weight_grads,  # noqa
                                               recompute=recompute)
    got = output_and_grads_on_cpu(run, [x, w, b], dy)
    want = _emulated(reference.highway_stack_reference, [x, w, b], dy, monkeypatch)
    errors = _errors(got, want)
    if weight_grads == "gemm":
        del errors["dW"]  # torch's batched GEMM forms it: cuBLAS's TF32 on a GPU, IEEE on a CPU
    assert max(errors.values()) < 3e-5, errors
    exact = output_and_grads_on_cpu(reference.highway_stack_reference, [t.cpu().double() for t in (x, w, b)],
                                    dy.cpu().double())
    assert min(_errors([t.float() for t in exact], want).values()) > 3e-5  # the emulation is far from exact


def test_the_dense_layer_rounds_every_tf32_dot_operand(device, tf32_dots, monkeypatch):
    x, w, b, dy = stack_inputs(1, 50, device)
    got = output_and_grads_on_cpu(lambda x, w, b: highway_linear(x, w, b, "relu", backend="triton"), [x, w[0], b[0]],
                                  dy)
    want = _emulated(reference.highway_linear_reference, [x, w[0], b[0]], dy, monkeypatch)
    assert max(_errors(got, want).values()) < 3e-5, _errors(got, want)


def test_the_conv_layer_rounds_every_tf32_dot_operand(device, tf32_dots, monkeypatch):
    g = torch.Generator().manual_seed(3)
    x, dy = torch.randn(2, 16, 6, 6, generator=g), torch.randn(2, 16, 6, 6, generator=g)
    w, b = torch.randn(32, 16, 3, 3, generator=g) / 12, torch.zeros(32)
    b[16:] = -2.0
    got = output_and_grads_on_cpu(lambda x, w, b: highway_conv2d(x, w, b, "relu", backend="triton"),
                 [t.to(device) for t in (x, w, b)], dy.to(device))
    want = _emulated(reference.highway_conv2d_reference, [x, w, b], dy, monkeypatch)
    assert max(_errors(got, want).values()) < 3e-5, _errors(got, want)
