"""3xTF32 dots (`highway.kernels.set_fp32_dots("tf32x3")`): the depth-fused stack's fp32 dots as three TF32
tensor-core dots each (`highway.kernels.highway_tiles.tile_dot`), about fp32's accuracy. On the first H200 the
stack's IEEE fp32 layer took 9.4 µs on the FMA units, bf16's 1.5 µs on the tensor cores.

Under the interpreter the split runs as written and its three dots compute their parts exactly in fp32, so the
split is checked bit for bit; end to end, the stack lands at fp32's distance from float64, where one TF32 dot
lands 1e-4 off."""
import os

import pytest
import torch
import triton
import triton.language as tl

import highway.reference as reference
from highway.bench.harness.cases import Case, DTYPES, correctness_error, float32_precision, layer_by_layer, \
    make_step
from highway.bench.harness.sweep import outputs_in_float64
from highway.functional import highway_linear, highway_linear_stack
from highway.kernels import get_fp32_dots, set_fp32_dots
from highway.kernels.highway_stack import STACK_TILES, STACK_X3_BACKWARD_ROWS, stack_config_allowed, widest_stack, \
    why_the_stack_does_not_fit
from highway.kernels.highway_tiles import tile_dot
from highway.kernels.launch import INTERPRET, dot_options
from highway.stack import HighwayStack
from highway_cases import output_and_grads_on_cpu, stack_inputs, tf32

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
                                reason="the kernels run on a GPU or under the interpreter")


@pytest.fixture
def tf32x3():
    before = set_fp32_dots("tf32x3")
    yield
    set_fp32_dots(before)


@triton.jit
def _tile_dot_kernel(a_ptr, b_ptr, c_ptr, N: tl.constexpr, INPUT_PRECISION: tl.constexpr):
    rows = tl.arange(0, N)[:, None] * N + tl.arange(0, N)[None, :]
    tl.store(c_ptr + rows, tile_dot(tl.load(a_ptr + rows), tl.load(b_ptr + rows), None, False, INPUT_PRECISION))


def _tile_dot(a, b, precision):
    c = torch.empty_like(a)
    _tile_dot_kernel[(1,)](a, b, c, a.shape[0], precision)
    return c


def test_the_split_dot_is_three_rounded_tf32_products(device):
    # B diagonal: each output is one product a·d, which the split computes as lo_a·hi_d + hi_a·lo_d + hi_a·hi_d
    # in that order; each product is exact in fp32, so the result is known to the bit
    g = torch.Generator().manual_seed(0)
    a = torch.randn(16, 16, generator=g) * torch.logspace(-3, 3, 16)
    d = torch.randn(16, generator=g)
    got = _tile_dot(a.to(device), torch.diag(d).to(device), "tf32x3").cpu()
    hi_a, hi_d = tf32(a), tf32(d)
    lo_a, lo_d = tf32(a - hi_a), tf32(d - hi_d)
    want = (lo_a * hi_d + hi_a * lo_d) + hi_a * hi_d
    if INTERPRET:
        assert torch.equal(got, want)
    else:  # the tensor cores sum the three products in their own order
        torch.testing.assert_close(got, want, rtol=2**-22, atol=0)
    exact = a.double() * d.double()
    assert ((got.double() - exact).abs() <= 2**-21 * exact.abs()).all()  # 22 bits of each operand kept
    assert not torch.equal(got, a * d)  # and not IEEE's products: lo_a·lo_d is dropped
    single = _tile_dot(a.to(device), torch.diag(d).to(device), "tf32").cpu()
    assert (single.double() - exact).abs().max() > 100 * (got.double() - exact).abs().max()


def test_an_inf_operand_gives_inf_not_nan(device):
    # inf's lo is inf − inf: its NaN products are dropped, and hi_a·hi_b carries the inf as IEEE's dot does
    a = torch.randn(16, 16)
    a[0, 3], a[5, 0] = float("inf"), float("-inf")
    b = torch.rand(16, 16) + 0.5  # positive: no inf·0, no inf − inf in the sums
    b[:, 1] = 1.0  # hi exact, lo 0: inf·0 in hi_a·lo_b
    got = _tile_dot(a.to(device), b.to(device), "tf32x3").cpu()
    inf = torch.full((16,), float("inf"))
    assert torch.equal(got[0], inf) and torch.equal(got[5], -inf)
    assert got[1:5].isfinite().all()
    a[2, 2] = float("nan")
    assert _tile_dot(a.to(device), b.to(device), "tf32x3")[2].isnan().all()  # a NaN stays NaN


def _relative_errors(got, want):
    return [((g.double() - w).norm() / w.norm()).item() for g, w in zip(got, want)]


def _reference(name, tensors, dy):
    """highway.reference's `name` and its gradients, on the CPU, in the tensors' dtype."""
    return output_and_grads_on_cpu(lambda *t: getattr(reference, name)(*t, "relu"), tensors, dy)


@pytest.mark.parametrize("weight_grads,recompute", [("gemm", False), ("atomic", False), ("atomic", True)])
def test_the_stack_in_tf32x3_is_as_close_to_float64_as_ieee(weight_grads, recompute, device, tf32x3):
    x, w, b, dy = stack_inputs(4, 50, "cpu")
    exact = _reference("highway_stack_reference", [x.double(), w.double(), b.double()], dy.double())

    def run(x, w, b):
        return highway_linear_stack(x, w, b, "relu", "triton-stack", weight_grads=weight_grads, recompute=recompute)

    got = _relative_errors(output_and_grads_on_cpu(run, [t.to(device) for t in (x, w, b)], dy.to(device)), exact)
    ieee = _relative_errors(_reference("highway_stack_reference", [x, w, b], dy), exact)
    # fp32 rounding alone puts IEEE at ~1e-7; a single TF32 dot (one dropped lo term) would land ~1e-4 off
    assert max(got) < max(5 * max(ieee), 2e-6), (got, ieee)


def test_the_gate_holds_the_tf32x3_stack_to_fp32s_tolerance(device):
    # the harness's "tf32x3" rows: our stack in 3xTF32 against eager and float64, held to fp32's tolerance
    case = Case("highway", "dense", 4, 50, "tf32x3", 16, "triton-stack", "train")
    torch.manual_seed(0)
    layers = torch.nn.Sequential(*HighwayStack(50, 4, gate_bias=-2.0, backend="torch").to_layers())
    x, dy = torch.randn(16, 50), torch.randn(16, 50)
    with float32_precision("tf32x3"):
        assert get_fp32_dots() == "tf32x3" and torch.get_float32_matmul_precision() == "highest"
        stack = HighwayStack.from_layers(layers, backend="triton-stack").to(device)
        outputs = outputs_in_float64(make_step("fwd+bwd", stack, x.to(device), dy.to(device))())
        eager = outputs_in_float64(make_step("fwd+bwd", layers, x, dy)())
    assert get_fp32_dots() == "auto"  # restored
    float64 = outputs_in_float64(make_step("fwd+bwd", layers.double(), x.double(), dy.double())())
    assert len(outputs) == len(float64) == 2 + 2 * 4  # y, dx, then each layer's dW and db (layer_by_layer)
    error, worst = correctness_error(case, outputs, float64, eager)
    assert error <= 1.0, worst
    assert DTYPES["tf32x3"] == torch.float32 and layer_by_layer  # fp32 tensors; the gate splits the stack


def test_set_fp32_dots_checks_and_returns_the_setting_before():
    assert get_fp32_dots() == "auto"
    with pytest.raises(ValueError, match="unknown fp32 dot mode 'tf32x2'"):
        set_fp32_dots("tf32x2")
    assert set_fp32_dots("tf32x3") == "auto" and get_fp32_dots() == "tf32x3"
    try:
        # only the depth-fused stack takes 3xTF32: the per-layer kernels' tiles spill with it, and run IEEE
        assert dot_options(torch.float32, takes_tf32x3=True)["INPUT_PRECISION"] == "tf32x3"
        assert dot_options(torch.float32)["INPUT_PRECISION"] == "ieee"
        assert dot_options(torch.bfloat16, takes_tf32x3=True)["INPUT_PRECISION"] != "tf32x3"
        assert widest_stack(torch.float32) == 64 and widest_stack(torch.bfloat16) == 128
        why = why_the_stack_does_not_fit(128, torch.float32, torch.device("cuda"))
        assert "3xTF32" in why and "set_fp32_dots('tf32')" in why
    finally:
        assert set_fp32_dots("auto") == "tf32x3"


def test_the_per_layer_kernels_stay_fp32_accurate_under_tf32x3(device, tf32x3):
    x, w, b, dy = stack_inputs(1, 50, "cpu")
    exact = _reference("highway_linear_reference", [x.double(), w[0].double(), b[0].double()], dy.double())
    got = output_and_grads_on_cpu(lambda *t: highway_linear(*t, "relu", backend="triton"),
                                  [t.to(device) for t in (x, w[0], b[0])], dy.to(device))
    assert max(_relative_errors(got, exact)) < 2e-6


def test_the_tf32x3_backward_takes_only_the_tiles_that_do_not_spill():
    config = lambda warps, stages: triton.Config({}, num_warps=warps, num_stages=stages)  # noqa: E731
    meta = lambda m, n, **kw: dict(BLOCK_M=m, BLOCK_N=n, INPUT_PRECISION="tf32x3", **kw)  # noqa: E731
    assert stack_config_allowed(meta(32, 64), config(8, 2))  # the forward keeps TF32's tiles up to width 64
    assert not stack_config_allowed(meta(16, 128), config(8, 1))  # every width-128 config spilled
    for atomic, rows in STACK_X3_BACKWARD_ROWS.items():
        for width, allowed in rows.items():
            largest, warps = STACK_TILES[width]
            for m in (16, 32, 64):
                ok = stack_config_allowed(meta(m, width, ATOMIC_WEIGHT_GRADS=atomic), config(warps, 1))
                assert ok == (m in allowed and m <= largest), (atomic, width, m)
