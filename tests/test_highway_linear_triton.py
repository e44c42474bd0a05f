"""The fused Triton highway layer against the float64 reference: forward and all three gradients.

On CPU these run under Triton's interpreter. bf16 runs on a GPU (`gpu` mark); on CPU one extra test runs it
with the interpreter's workaround (tiles cast to fp32 before tl.dot), which checks the kernel's bf16 loads,
stores and epilogue but not bf16 tensor-core GEMMs.
"""
import pytest
import torch
from hypothesis import given, strategies as st

from highway.functional import highway_linear
from highway.reference import highway_linear_reference
from highway.tolerances import assert_close
from highway_cases import ACTIVATION_NAMES, linear_inputs, reference_and_triton, run_with_grads
from highway.kernels import highway_linear_bwd, highway_linear_fwd

FLOAT_DTYPES = [torch.float32, torch.float16]


def check_layer(m, n, activation, dtype, device, lead=(), seed=0, tolerance=None, **kwargs):
    """The layer's output and gradients against float64, within `dtype`'s tolerance (or `tolerance`'s)."""
    x, w, b = linear_inputs(m, n, dtype, device, seed=seed, lead=lead)
    dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 1)).to(device, dtype)
    (y_ref, g_ref), (y, g) = reference_and_triton(x, w, b, activation, dy, **kwargs)
    assert y.dtype == dtype and y.shape == x.shape
    assert_close(y, y_ref, tolerance or dtype, "y")
    for name, actual, expected in zip(("dx", "dweight", "dbias"), g, g_ref):
        assert actual.dtype == dtype
        assert_close(actual, expected, tolerance or dtype, name)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("n", [16, 50, 64, 71, 128])
@pytest.mark.parametrize("m", [0, 1, 7, 128, 300])
def test_shapes_match_reference(m, n, dtype, device):
    check_layer(m, n, "relu", dtype, device)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("m,n", [(7, 50), (130, 71)])
def test_activations_match_reference(m, n, activation, dtype, device):
    check_layer(m, n, activation, dtype, device)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_recompute_matches_reference(activation, dtype, device):
    check_layer(70, 71, activation, dtype, device, recompute=True)


@pytest.mark.gpu
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("m,n", [(1, 16), (7, 50), (300, 71), (1000, 128), (257, 1024)])
def test_bf16_matches_reference_on_gpu(m, n, activation, device):
    check_layer(m, n, activation, torch.bfloat16, device)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("n", [2048, 4096, 8192])
def test_wide_layers_on_gpu(n, dtype, device):
    check_layer(33, n, "relu", dtype, device)


@pytest.mark.gpu
@pytest.mark.parametrize("m,n", [(7, 50), (1000, 128), (257, 1024)])
def test_tf32_matches_reference_on_gpu(m, n, device, tf32_matmuls):
    """fp32 at torch's "high" precision: the kernels' TF32 configs, on the tensor cores. (Few shapes: each
    new precision compiles every config once, minutes of a short lease's gpu-marked tests.)"""
    check_layer(m, n, "gelu", torch.float32, device, tolerance="tf32")


@pytest.mark.skipif(torch.cuda.is_available(), reason="covers the interpreter's bf16 workaround")
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_bf16_under_interpreter_with_fp32_dot(activation, device):
    check_layer(70, 71, activation, torch.bfloat16, device)


def test_wider_layer(device):
    check_layer(3, 1024, "tanh", torch.float32, device)


@pytest.mark.parametrize("lead", [(2, 3), (4,)])
def test_leading_batch_dims(lead, device):
    check_layer(5, 50, "tanh", torch.float32, device, lead=lead)


def test_non_contiguous_inputs(device):
    x, w, b = linear_inputs(40, 71, torch.float32, device)
    x_nc = x.t().contiguous().t()  # column-major view
    w_nc = torch.cat([w, w], dim=1)[:, ::2]  # column stride 2
    b_nc = torch.stack([b, b], dim=1)[:, 0]  # stride 2
    dy = torch.randn(40, 71).to(device).t().contiguous().t()
    assert not (x_nc.is_contiguous() or w_nc.is_contiguous() or b_nc.is_contiguous() or dy.is_contiguous())
    (y_ref, g_ref), (y, g) = reference_and_triton(x_nc, w_nc, b_nc, "relu", dy)
    assert_close(y, y_ref, torch.float32, "y")
    for actual, expected in zip(g, g_ref):
        assert_close(actual, expected, torch.float32, "grad")


@pytest.mark.parametrize("split", [2, 5])
def test_split_reduction_with_atomics(split, device):
    x, w, b = linear_inputs(300, 50, torch.float32, device)
    dy = torch.randn(300, 50).to(device)
    y, z = highway_linear_fwd(x, w, b, "relu", store_preactivations=True)
    got = highway_linear_bwd(dy, x, w, b, z, "relu", split=split)
    want = highway_linear_bwd(dy, x, w, b, z, "relu", split=1)
    for a, e in zip(got, want):
        assert_close(a, e.double(), torch.float32)


def test_forward_without_grad_stores_nothing(device):
    x, w, b = linear_inputs(9, 16, torch.float32, device)
    with torch.no_grad():
        y = highway_linear(x, w, b, "relu", backend="triton")
    assert not y.requires_grad
    assert_close(y, highway_linear_reference(x.double(), w.double(), b.double(), "relu"), torch.float32)
    y2, z = highway_linear_fwd(x, w, b, "relu", store_preactivations=False)
    assert z is None and torch.equal(y, y2)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_input_propagates_like_reference(bad, device):
    x, w, b = linear_inputs(8, 16, torch.float32, device)
    x[3, 5] = bad
    y = highway_linear(x, w, b, "tanh", backend="triton")
    ref = highway_linear_reference(x.double(), w.double(), b.double(), "tanh")
    assert torch.equal(y.isnan(), ref.isnan()) and torch.equal(y.isinf(), ref.isinf())
    assert_close(y, ref, torch.float32)


@given(
    m=st.integers(0, 150),
    n=st.integers(1, 140),
    lead=st.lists(st.integers(1, 3), max_size=2).map(tuple),
    activation=st.sampled_from(ACTIVATION_NAMES),
    dtype=st.sampled_from(FLOAT_DTYPES),
    scale=st.floats(0.01, 4.0),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_shapes_and_values(m, n, lead, activation, dtype, scale, seed, device):
    x, w, b = linear_inputs(m, n, dtype, device, seed=seed, lead=lead)
    x = (x.float() * scale).to(dtype)
    dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)).to(device, dtype)
    (y_ref, g_ref), (y, g) = reference_and_triton(x, w, b, activation, dy)
    assert_close(y, y_ref, dtype, "y")
    for name, actual, expected in zip(("dx", "dweight", "dbias"), g, g_ref):
        assert_close(actual, expected, dtype, name)


@pytest.mark.parametrize("recompute", [False, True])
def test_fp16_backward_is_finite_where_the_forward_is(recompute, device):
    # z_H = 16 · 100 · 62.5 = 1e5 overflows fp16 (max 65504), while T = σ(−20) keeps y ≈ x finite: the
    # pre-activations saved for backward must hold what the forward computed in fp32.
    n = 16
    x = torch.full((4, n), 100.0, device=device, dtype=torch.float16)
    w = torch.zeros(2 * n, n, device=device, dtype=torch.float16)
    w[:n] = 62.5
    b = torch.zeros(2 * n, device=device, dtype=torch.float16)
    b[n:] = -20.0
    dy = torch.ones_like(x)
    (y_ref, g_ref), (y, g) = reference_and_triton(x, w, b, "relu", dy, recompute=recompute)
    assert torch.isfinite(y).all() and all(torch.isfinite(t).all() for t in g)
    assert_close(y, y_ref, torch.float16, "y")
    for name, actual, expected in zip(("dx", "dweight", "dbias"), g, g_ref):
        assert_close(actual, expected, torch.float16, name)


@pytest.mark.parametrize("where", ["b_T", "b_H", "x"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_nan_reaches_the_same_gradients_as_the_reference(where, activation, device):
    # relu's backward selects (PyTorch's threshold_backward): relu'(NaN) passes the gradient, and a NaN
    # gate does not reach a unit whose z_H <= 0. The fused backward must make the same choices.
    x, w, b = linear_inputs(16, 4, torch.float32, device, seed=3)
    if where == "b_T":
        b[1] = -100.0  # unit 1 closed (z_H < 0) on every row, its gate NaN
    {"b_T": b[5:6], "b_H": b[1:2], "x": x[0, :1]}[where].fill_(float("nan"))
    dy = torch.ones_like(x)
    (y_ref, g_ref), (y, g) = reference_and_triton(x, w, b, activation, dy)
    for name, actual, expected in zip(("y", "dx", "dweight", "dbias"), (y, *g), (y_ref, *g_ref)):
        assert_close(actual, expected, torch.float32, name)  # NaNs in the same places, the rest close


def population_inputs(trials, m, n, dtype, device, seed=0):
    """x (P, m, n), weight (P, 2n, n), bias (P, 2n): each trial its own layer."""
    layers = [linear_inputs(m, n, dtype, device, seed=seed + p) for p in range(trials)]
    return tuple(torch.stack(ts) for ts in zip(*layers))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("trials,m,n", [(1, 7, 16), (3, 70, 50), (2, 5, 71)])
def test_a_population_of_layers_matches_each_trials_layer(trials, m, n, dtype, device):
    from highway.functional import highway_linear_population

    x, w, b = population_inputs(trials, m, n, dtype, device)
    x = x.transpose(0, 1).contiguous().transpose(0, 1)  # trial-interleaved rows: the kernels take x's strides
    dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(9)).to(device, dtype)
    ref = run_with_grads(lambda *t: highway_linear_reference(*t, "tanh"), (x, w, b), dy, torch.float64)
    tri = run_with_grads(lambda *t: highway_linear_population(*t, "tanh", backend="triton"), (x, w, b), dy)
    assert tri[0].shape == x.shape
    for name, actual, expected in zip(("y", "dx", "dweight", "dbias"), (tri[0], *tri[1]), (ref[0], *ref[1])):
        assert_close(actual, expected, dtype, name)
    for p in range(trials):  # the batched reference is each trial's own layer
        assert_close(ref[0][p], highway_linear_reference(x[p].double(), w[p].double(), b[p].double(), "tanh"),
                     torch.float64, "reference")


def test_a_population_layer_launches_four_kernels_for_any_number_of_trials(device, monkeypatch):
    import highway.kernels.highway_linear as kernels
    from highway.functional import highway_linear_population

    launches = []
    for name in ("_highway_linear_fwd_kernel", "_highway_linear_bwd_gates_kernel", "_highway_linear_bwd_dx_kernel",
                 "_highway_linear_bwd_dw_kernel"):
        kernel = getattr(kernels, name)

        class Counting:
            def __init__(self, kernel, name):
                self.kernel, self.name = kernel, name

            def __getitem__(self, grid):
                launches.append(self.name)
                return self.kernel[grid]
        monkeypatch.setattr(kernels, name, Counting(kernel, name))
    for trials in (1, 5):
        launches.clear()
        x, w, b = (t.requires_grad_() for t in population_inputs(trials, 9, 16, torch.float32, device))
        highway_linear_population(x, w, b, "relu", backend="triton").sum().backward()
        assert len(launches) == 4, launches


def test_ieee_fp32_launches_take_configs_of_their_own(monkeypatch):
    """IEEE fp32 dots (torch's default "highest" precision) run on the FMA units, which hold a whole BLOCK_K
    of both operands in registers: their configs are the tensor-core tiles with a short BLOCK_K, as short as
    this triton's fp32 dot allows, and twice the warps where it allows less short than asked."""
    import triton

    from highway.kernels import launch

    tiles = [triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 64}, num_warps=4, num_stages=3),
             triton.Config({"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32}, num_warps=2, num_stages=4)]
    least = launch.smallest_fp32_dot_k()
    assert least in (8, 16)  # 8 in triton 3.9, 16 in 3.6
    fma = launch.fma_configs(tiles, 8)
    assert [c.kwargs["BLOCK_K"] for c in fma] == [least, least]
    assert [c.num_warps for c in fma] == [4 * least // 8, 2 * least // 8]
    assert [(c.kwargs["BLOCK_M"], c.num_stages) for c in fma] == [(64, 3), (16, 4)]
    both = tiles + fma
    assert [c for c in both if launch.precision_allows(dict(INPUT_PRECISION="ieee"), c)] == fma
    assert [c for c in both if launch.precision_allows(dict(INPUT_PRECISION="tf32"), c)] == tiles
    monkeypatch.setattr(launch, "smallest_fp32_dot_k", lambda: 16)  # as triton 3.6 says
    assert [(c.kwargs["BLOCK_K"], c.num_warps) for c in launch.fma_configs(tiles, 8)] == [(16, 8), (16, 4)]
    assert [(c.kwargs["BLOCK_K"], c.num_warps) for c in launch.fma_configs(tiles, 16)] == [(16, 4), (16, 2)]
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "highest")
    assert launch.fp32_dots_ieee(torch.float32) and not launch.fp32_dots_ieee(torch.bfloat16)
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "high")
    assert not launch.fp32_dots_ieee(torch.float32)


def test_a_row_names_the_configs_its_autotuned_kernels_launched_with(monkeypatch):
    """`launched_configs`: the config of each autotuned kernel a call launched, none of those it did not
    launch, though an earlier call did (the autotuners exist on a GPU only, so stand-ins here)."""
    import triton

    from highway.bench.harness.profile import tuned_configs
    from highway.kernels import launch

    class Tuner:  # what launched_configs reads of a triton Autotuner
        def __init__(self, name):
            self.fn = type("JITFunction", (), {"__name__": name})()
            self.best_config = None

    fwd, bwd = Tuner("_highway_stack_fwd_kernel"), Tuner("_highway_stack_bwd_kernel")
    monkeypatch.setattr(launch, "AUTOTUNED", [fwd, bwd])
    bwd.best_config = triton.Config({"BLOCK_M": 64}, num_warps=8, num_stages=3)  # an earlier call's

    def forward():
        fwd.best_config = triton.Config({"BLOCK_M": 32, "BLOCK_N": 64}, num_warps=16, num_stages=2)

    assert launch.launched_configs(forward) == "_highway_stack_fwd_kernel BLOCK_M=32 BLOCK_N=64 w16 s2"
    assert launch.launched_configs(lambda: None) == ""
    assert tuned_configs(forward, torch.device("cpu")) == ""  # the interpreter's configs are fixed, not chosen
