"""The depth-fused stack (`HighwayStack`, backend "triton-stack") against the float64 reference: forward and
every gradient, conversion to and from layers, launches that do not grow with depth, and clear errors.

On CPU the kernels run under Triton's interpreter."""
import pytest
import torch
import triton

import highway.kernels.highway_stack as stack_kernels
from highway import HighwayLinear, HighwayStack, highway_mlp
from highway.functional import highway_linear_stack
from highway.reference import highway_linear_reference, highway_stack_reference
from highway.tolerances import max_violation
from highway_cases import graph_ops, run_with_grads


def stack_inputs(depth, width, dtype, device, rows=37, activation="relu", seed=0, trials=None):
    """x and the parameters of a freshly initialized stack (as a user gets them), in `dtype`, with the biases
    moved off their init (b_H = 0, b_T = -1.5 in every layer), so that a kernel that adds another layer's or
    trial's bias fails."""
    torch.manual_seed(seed)
    lead = () if trials is None else (trials,)
    stacks = [HighwayStack(width, depth, activation, gate_bias=-1.5) for _ in range(trials or 1)]
    weight = torch.stack([s.weight.detach() for s in stacks]).reshape(*lead, depth, 2 * width, width)
    bias = torch.stack([s.bias.detach() for s in stacks]).reshape(*lead, depth, 2 * width)
    bias = bias + 0.5 * torch.randn(bias.shape)
    x = torch.randn(*lead, rows, width)
    return tuple(t.to(device, dtype) for t in (x, weight, bias))


def assert_like_eager(actual, reference, eager, dtype, name):
    """Within the dtype's tolerance of float64, or (deep stacks drift) within 4x of what eager PyTorch in the
    same dtype gets: the gate the throughput harness applies."""
    v = max_violation(actual, reference, dtype)
    base = max_violation(eager, reference, dtype)
    assert v <= 1.0 or v <= 4 * base, f"{name}: {v:.3g}x the tolerance (eager {dtype}: {base:.3g}x)"


def rounded_reference(dtype):
    """The float64 reference of a stack whose every layer output is rounded to `dtype`, as each layer of a
    `dtype` stack stores it (the rounding passes gradients straight through). Relu decides on the same
    rounded inputs as the kernels do, so a pre-activation within rounding of the kink cannot fall on the
    other side in the reference and flip a unit's derivative there alone."""
    def reference(x, weight, bias, activation):
        for layer in range(weight.shape[-3]):
            x = highway_linear_reference(x, weight[..., layer, :, :], bias[..., layer, :], activation)
            x = x + (x.to(dtype).double() - x).detach()
        return x
    return reference


def check_stack(depth, width, activation, dtype, device, trials=None, recompute=False, weight_grads="gemm", rows=37,
                tolerance=None):
    x, w, b = stack_inputs(depth, width, dtype, device, rows=rows, activation=activation, trials=trials)
    dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(7)).to(device, dtype)
    ref = run_with_grads(lambda *t: rounded_reference(dtype)(*t, activation), (x, w, b), dy, torch.float64)
    eager = run_with_grads(lambda *t: highway_stack_reference(*t, activation), (x, w, b), dy)
    fused = run_with_grads(lambda *t: highway_linear_stack(*t, activation, backend="triton-stack", recompute=recompute,
                                                           weight_grads=weight_grads), (x, w, b), dy)
    assert fused[0].shape == x.shape and fused[0].dtype == dtype
    for name, a, r, e in zip(("y", "dx", "dweight", "dbias"), (fused[0], *fused[1]), (ref[0], *ref[1]),
                             (eager[0], *eager[1])):
        assert a.dtype == dtype, name
        assert_like_eager(a, r, e, tolerance or dtype, name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("width", [16, 50, 71, 128])
@pytest.mark.parametrize("depth", [1, 2, 7, 50])
def test_stack_matches_the_reference(depth, width, activation, dtype, device):
    check_stack(depth, width, activation, dtype, device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("weight_grads", ["gemm", "atomic"])
def test_weight_gradients_sum_over_row_tiles(weight_grads, dtype, device):
    x, w, b = stack_inputs(5, 50, dtype, device, rows=150)  # three row tiles under the interpreter
    dy = torch.randn(x.shape, device=device).to(dtype)
    _, xs = stack_kernels.highway_stack_fwd(x, w, b, "relu", 1)
    dx, dw, db = stack_kernels.highway_stack_bwd(dy, xs, w, b, "relu", 1, weight_grads)
    ref = run_with_grads(lambda *t: rounded_reference(dtype)(*t, "relu"), (x, w, b), dy, torch.float64)
    eager = run_with_grads(lambda *t: highway_stack_reference(*t, "relu"), (x, w, b), dy)
    for name, a, r, e in zip(("dx", "dweight", "dbias"), (dx, dw, db), ref[1], eager[1]):
        assert a.dtype == dtype, name
        assert_like_eager(a, r, e, dtype, name)


@pytest.mark.parametrize("weight_grads", ["gemm", "atomic"])
def test_a_population_of_stacks_matches_each_trial(weight_grads, device):
    check_stack(6, 50, "tanh", torch.float32, device, trials=3, weight_grads=weight_grads)


@pytest.mark.gpu
@pytest.mark.parametrize("weight_grads", ["gemm", "atomic"])
@pytest.mark.parametrize("width", [16, 50, 71, 128])
@pytest.mark.parametrize("depth", [1, 50, 1000])
def test_bf16_stack_matches_the_reference_on_gpu(depth, width, weight_grads, device):
    check_stack(depth, width, "relu", torch.bfloat16, device, rows=300, weight_grads=weight_grads)


@pytest.mark.gpu
@pytest.mark.parametrize("weight_grads", ["gemm", "atomic"])
@pytest.mark.parametrize("width", [50, 128])
@pytest.mark.parametrize("depth", [50])
def test_tf32_stack_matches_the_reference_on_gpu(depth, width, weight_grads, device, tf32_matmuls):
    """fp32 at torch's "high" precision, where the stack holds widths up to 128 (IEEE dots: 64)."""
    check_stack(depth, width, "relu", torch.float32, device, rows=300, weight_grads=weight_grads, tolerance="tf32")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("weight_grads", ["gemm", "atomic"])
def test_the_backward_that_autotunes_returns_what_the_next_one_does(weight_grads, dtype, device):
    """A shape's first backward on a GPU times every config by running the kernel again and again: the
    atomics' targets must start from zero each time, or that call's dW comes back added up many times."""
    x, w, b = stack_inputs(20, 50, dtype, device, rows=293, seed=3)  # a row count no other test tunes for
    dy = torch.randn(x.shape, device=device).to(dtype)
    _, xs = stack_kernels.highway_stack_fwd(x, w, b, "relu", 1)
    first = stack_kernels.highway_stack_bwd(dy, xs, w, b, "relu", 1, weight_grads)
    second = stack_kernels.highway_stack_bwd(dy, xs, w, b, "relu", 1, weight_grads)
    for name, a, c in zip(("dx", "dweight", "dbias"), first, second):
        torch.testing.assert_close(a, c, rtol=1e-2, atol=1e-3, msg=name)  # the atomics' order varies


@pytest.mark.gpu
@pytest.mark.parametrize("weight_grads, save_every", [("gemm", 1), ("atomic", 1), ("gemm", 32)])
def test_a_stack_at_the_edge_of_its_int32_offsets_gives_what_its_parts_give(weight_grads, save_every, device):
    """The kernels index a layer of the saved inputs and of dZ in int32. At the most rows one call takes
    (`most_stack_rows`; 8 layers of width 16: 8 or 17 M rows), their offsets come to just below 2³¹; the same
    rows in four runs must give the same y and dx, and dW and db that add up to the whole run's."""
    depth, width, dtype = 8, 16, torch.float16
    rows = stack_kernels.most_stack_rows(depth, width, save_every, weight_grads, dtype)
    x, w, b = stack_inputs(depth, width, dtype, device, rows=rows, seed=5)
    dy = torch.randn(x.shape, device=device, dtype=dtype)
    y, xs = stack_kernels.highway_stack_fwd(x, w, b, "tanh", save_every)
    dx, dw, db = stack_kernels.highway_stack_bwd(dy, xs, w, b, "tanh", save_every, weight_grads)
    del xs
    dw_sum, db_sum = torch.zeros_like(dw, dtype=torch.float32), torch.zeros_like(db, dtype=torch.float32)
    edges = [rows * i // 4 for i in range(5)]
    for lo, hi in zip(edges, edges[1:]):
        y_p, xs_p = stack_kernels.highway_stack_fwd(x[lo:hi], w, b, "tanh", save_every)
        dx_p, dw_p, db_p = stack_kernels.highway_stack_bwd(dy[lo:hi], xs_p, w, b, "tanh", save_every, weight_grads)
        for name, whole, piece in (("y", y[lo:hi], y_p), ("dx", dx[lo:hi], dx_p)):
            torch.testing.assert_close(whole, piece, rtol=1e-2, atol=1e-2, msg=f"{name}, rows {lo} to {hi}")
        dw_sum += dw_p
        db_sum += db_p
        del xs_p
    # the same sums in another order differ by fp16's rounding, where an offset that wraps puts a whole layer's
    # rows in the wrong place
    torch.testing.assert_close(dw.float(), dw_sum, rtol=2e-2, atol=1e-2 * float(dw_sum.abs().max()))
    torch.testing.assert_close(db.float(), db_sum, rtol=2e-2, atol=1e-2 * float(db_sum.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("width", [16, 50, 71, 128])
def test_atomic_weight_gradients_match_the_reference_at_every_width(width, dtype, device):
    """dWᵀ is formed BLOCK_M input columns at a time: fewer columns than one block (16 under 64 rows) up to
    two blocks (128), padded (50, 71) or not."""
    check_stack(3, width, "tanh", dtype, device, rows=150, weight_grads="atomic")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("recompute", [False, True])
@pytest.mark.parametrize("trials", [None, 2])
def test_atomic_weight_gradients_match_the_reference_in_every_chunking(trials, recompute, dtype, device,
                                                                        monkeypatch):
    """weight_grads="atomic": 7 layers in chunks of 3, saved whole or recomputed, one trial or two. fp32
    gradients take the atomics themselves, in one launch unless recomputing; fp16 ones a zeroed fp32 chunk
    each, copied out after."""
    monkeypatch.setattr(stack_kernels, "STACK_BWD_CHUNK", 3)
    monkeypatch.setattr(stack_kernels, "STACK_RECOMPUTE_EVERY", 3)
    launches = []
    monkeypatch.setattr(stack_kernels, "_highway_stack_bwd_kernel",
                        CountingKernel(stack_kernels._highway_stack_bwd_kernel, launches))
    check_stack(7, 50, "relu", dtype, device, trials=trials, recompute=recompute, weight_grads="atomic")
    assert len(launches) == (1 if dtype == torch.float32 and not recompute else 3)


@pytest.mark.parametrize("precision", ["high", "highest"])
@pytest.mark.parametrize("chunk", [3, 128])
@pytest.mark.parametrize("trials", [None, 2])
def test_recomputing_stack_saves_every_chunks_input_and_matches_the_reference(chunk, trials, precision, device,
                                                                              monkeypatch):
    """recompute=True saves the input of every STACK_RECOMPUTE_EVERY-th layer (7 layers in chunks of 3:
    layers 0, 3 and 6) and recomputes the others in backward: the top chunk in a forward launch, each chunk
    below beside the backward of the chunk above, in a second half of its grid; with IEEE fp32 dots
    (torch's "highest"), whose two loops in one kernel spill, in a forward launch before each backward."""
    monkeypatch.setattr(stack_kernels, "STACK_RECOMPUTE_EVERY", chunk)
    x, w, b = stack_inputs(7, 50, torch.float32, device, trials=trials)
    y, saved = stack_kernels.highway_stack_fwd(x, w, b, "tanh", chunk)
    assert saved.shape == (*x.shape[:-2], -(-7 // chunk), *x.shape[-2:])
    _, every = stack_kernels.highway_stack_fwd(x, w, b, "tanh", 1)
    assert torch.equal(saved, every[..., ::chunk, :, :])
    launches = []
    for name in ("_highway_stack_fwd_kernel", "_highway_stack_bwd_kernel"):
        monkeypatch.setattr(stack_kernels, name, CountingKernel(getattr(stack_kernels, name), launches))
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)  # the interpreter computes both in IEEE fp32
    try:
        check_stack(7, 50, "tanh", torch.float32, device, trials=trials, recompute=True)
    finally:
        torch.set_float32_matmul_precision(before)
    chunks = -(-7 // chunk)
    halves = [grid(dict(BLOCK_M=16))[2] for grid in launches[1:]]
    if precision == "high":  # the forward, the top chunk's recomputation, then a backward per chunk
        assert halves == [1] + [2] * (chunks - 1) + [1]  # every backward but the lowest recomputes the chunk below
    else:  # the forward; per chunk, a recomputing forward and the backward
        assert halves == [1] * 2 * chunks


@pytest.mark.parametrize("trials", [None, 2])
def test_a_long_stack_runs_its_backward_in_chunks_of_layers(trials, device, monkeypatch):
    """dZ is held for STACK_BWD_CHUNK layers at a time: 7 layers in chunks of 3 are three backward launches
    (3, 3 and 1 layers), chained through dx, with the gradients of one launch over all 7."""
    monkeypatch.setattr(stack_kernels, "STACK_BWD_CHUNK", 3)
    launches = []
    monkeypatch.setattr(stack_kernels, "_highway_stack_bwd_kernel",
                        CountingKernel(stack_kernels._highway_stack_bwd_kernel, launches))
    check_stack(7, 50, "relu", torch.float32, device, trials=trials)
    assert len(launches) == 3


@pytest.mark.parametrize("backend", ["torch", "triton-stack"])
def test_conversion_to_and_from_layers_keeps_the_outputs(backend, device):
    torch.manual_seed(0)
    layers = torch.nn.Sequential(*(HighwayLinear(50, "tanh", -1.0 - i / 4, "torch") for i in range(5))).to(device)
    x = torch.randn(9, 50, device=device)
    stack = HighwayStack.from_layers(layers, backend=backend)
    assert stack.weight.shape == (5, 100, 50) and stack.bias.shape == (5, 100)
    expected = layers(x)
    assert torch.allclose(stack(x), expected, atol=1e-5, rtol=1e-5)
    back = stack.to_layers()
    assert torch.equal(back(x), expected) if backend == "torch" else torch.allclose(back(x), expected, atol=1e-5)
    assert all(isinstance(layer, HighwayLinear) for layer in back)


def test_highway_mlp_with_stack_is_the_same_net(device):
    torch.manual_seed(0)
    layered = highway_mlp(12, 16, 6, 3, "relu", gate_bias="auto", backend="torch")
    stacked = highway_mlp(12, 16, 6, 3, "relu", gate_bias="auto", backend="torch", stack=True)
    assert stacked.depth == layered.depth == 6 and len(stacked.layers) == 1
    assert stacked.layers[0].gate_bias == layered.layers[0].gate_bias
    stacked.stem.load_state_dict(layered.stem.state_dict())
    stacked.head.load_state_dict(layered.head.state_dict())
    stacked.layers[0] = HighwayStack.from_layers(layered.layers)
    x = torch.randn(4, 12)
    assert torch.allclose(stacked(x), layered(x), atol=1e-6)


class CountingKernel:
    def __init__(self, kernel, launches):
        self.kernel, self.launches = kernel, launches

    def __getitem__(self, grid):
        self.launches.append(grid)
        return self.kernel[grid]


@pytest.mark.parametrize("backend,per_layer", [("triton-stack", False), ("triton", True)])
def test_launches_do_not_grow_with_depth(backend, per_layer, device, monkeypatch):
    import highway.kernels.highway_linear as linear_kernels

    launches = []
    for module, names in ((stack_kernels, ["_highway_stack_fwd_kernel", "_highway_stack_bwd_kernel"]),
                          (linear_kernels, ["_highway_linear_fwd_kernel", "_highway_linear_bwd_gates_kernel",
                                            "_highway_linear_bwd_dx_kernel", "_highway_linear_bwd_dw_kernel"])):
        for name in names:
            monkeypatch.setattr(module, name, CountingKernel(getattr(module, name), launches))
    counts = {}
    for depth in (2, 7):
        stack = HighwayStack(16, depth, backend=backend).to(device)
        x = torch.randn(5, 16, device=device, requires_grad=True)
        launches.clear()
        y = stack(x)
        forward = len(launches)
        y.sum().backward()
        counts[depth] = (forward, len(launches) - forward)
    if per_layer:  # the per-layer kernels, for contrast: one forward and three backward launches a layer
        assert counts == {2: (2, 6), 7: (7, 21)}
    else:
        assert counts == {2: (1, 1), 7: (1, 1)}


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_a_layer_by_layer_stack_unbinds_its_weight_once(backend, device):
    """Indexing layer i of the (depth, 2w, w) weight would cost a zero-filled whole-stack gradient per layer in
    backward (depth² work); unbinding costs one stack."""
    stack = HighwayStack(16, 6, backend=backend).to(device)
    ops = graph_ops(stack(torch.randn(5, 16, device=device)))
    assert "UnbindBackward0" in ops and "SelectBackward0" not in ops


@pytest.mark.parametrize("width", [16, 50, 71, 128])
@pytest.mark.parametrize("element_bytes", [2, 4])
def test_the_autotuner_tries_every_row_tile_that_fits_the_width(width, element_bytes):
    from highway.kernels.launch import SHARED_MEMORY_LIMITS

    block = stack_kernels.padded_width(width)
    largest, warps = stack_kernels.STACK_TILES[block]
    for limit in SHARED_MEMORY_LIMITS.values():
        if stack_kernels.stack_shared_memory(dict(BLOCK_M=16, BLOCK_N=block), 1, element_bytes) > limit:
            continue  # fp32 at width 128 on sm_86/89: "auto" runs the per-layer kernels (tested below)
        candidates = stack_kernels.stack_candidates(width, element_bytes, limit)
        tiles = {c.kwargs["BLOCK_M"] for c in candidates}
        assert tiles == {m for m in (16, 32, 64) if m <= largest}  # 16 makes the most programs: always tried
        for c in candidates:
            assert (c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"], c.num_warps) == (block, block, warps)
            assert stack_kernels.stack_shared_memory(c.kwargs, c.num_stages, element_bytes) <= limit
    # where nothing fits, the config that needs the least shared memory is still there to run
    (least,) = stack_kernels.stack_candidates(width, element_bytes, 1)
    assert (least.kwargs["BLOCK_M"], least.num_stages) == (16, 1)


def test_a_stack_that_does_not_fit_a_gpus_shared_memory_falls_back_or_is_refused(monkeypatch):
    import highway.functional as functional

    monkeypatch.setattr(stack_kernels, "max_shared_memory", lambda: 101376)  # an sm_86/sm_89 GPU
    monkeypatch.setattr(functional, "resolve_backend", lambda backend, device, **_: "triton")
    monkeypatch.setattr(functional, "_FELL_BACK", set())  # the warning is said once per process
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "high")  # TF32: IEEE is tested below
    cuda = torch.device("cuda")
    assert functional.stack_backend("auto", 128, cuda, torch.bfloat16) == "triton-stack"
    with pytest.warns(UserWarning, match="takes up to 158720 bytes of shared memory"):
        assert functional.stack_backend("auto", 128, cuda, torch.float32) == "triton"
    with pytest.raises(ValueError, match="this GPU gives 101376"):
        functional.stack_backend("triton-stack", 128, cuda, torch.float32)
    assert stack_kernels.why_the_stack_does_not_fit(50, torch.float32, cuda) is None


def test_a_stack_whose_weights_pass_its_int32_offsets_falls_back_or_is_refused(monkeypatch):
    """The kernels reach a layer's weights in int32: past 2³¹ values of them (65,536 layers of width 128)
    "auto" runs the per-layer kernels and says why, a forced "triton-stack" is refused before anything runs."""
    import highway.functional as functional

    monkeypatch.setattr(stack_kernels, "max_shared_memory", lambda: 232448)  # an sm_90 GPU: room for any width
    monkeypatch.setattr(functional, "resolve_backend", lambda backend, device, **_: "triton")
    monkeypatch.setattr(functional, "_FELL_BACK", set())
    cuda, bf16, stride = torch.device("cuda"), torch.bfloat16, 2 * 128 * 128
    assert functional.stack_backend("auto", 128, cuda, bf16, depth=65_535, layer_stride=stride) == "triton-stack"
    with pytest.warns(UserWarning, match="its weights hold 2,147,483,648 values"):
        assert functional.stack_backend("auto", 128, cuda, bf16, depth=65_536, layer_stride=stride) == "triton"
    with pytest.raises(ValueError, match="at most 65,535 layers a stack at width 128"):
        functional.stack_backend("triton-stack", 128, cuda, bf16, depth=65_536, layer_stride=stride)


def test_the_rows_that_fit_one_call_at_the_real_bound():
    """1000 layers of width 128 save 2³¹ input values from 16,778 rows; recomputing saves a 32nd, and
    without a backward nothing is saved."""
    bf16 = torch.bfloat16
    assert stack_kernels.most_stack_rows(1000, 128, 1, "gemm", bf16) == 16_777
    assert stack_kernels.most_stack_rows(1000, 128, 32, "gemm", bf16) == 262_143  # dZ of 32 layers bounds it
    assert stack_kernels.most_stack_rows(1000, 128, 0, "gemm", bf16) is None


@pytest.mark.parametrize("weight_grads, recompute, trials", [("gemm", False, None), ("atomic", False, None),
                                                             ("gemm", True, None), ("gemm", False, 2),
                                                             ("atomic", True, 2)])
def test_a_batch_past_the_int32_offsets_runs_in_parts(weight_grads, recompute, trials, device, monkeypatch):
    """With the kernels' int32 bound brought down to just past 7 layers of width 16's weights, a batch of 100
    rows is past it in every mode: it runs in parts of `most_stack_rows` rows (the launchers refuse any
    buffer that reaches the bound, so a part too large fails here), a forward launch each, and y and every
    gradient still match float64: autograd adds the parts' dW and db up."""
    monkeypatch.setattr(stack_kernels, "STACK_RECOMPUTE_EVERY", 3)
    monkeypatch.setattr(stack_kernels, "INT32_OFFSETS", 7 * 2 * 16 * 16 + 1)
    save_every = stack_kernels.saved_every(True, recompute)
    most = stack_kernels.most_stack_rows(7, 16, save_every, weight_grads, torch.float32)
    parts = -(-100 // most)
    assert parts > 1
    launches = []
    monkeypatch.setattr(stack_kernels, "_highway_stack_fwd_kernel",
                        CountingKernel(stack_kernels._highway_stack_fwd_kernel, launches))
    check_stack(7, 16, "tanh", torch.float32, device, trials=trials, recompute=recompute, weight_grads=weight_grads,
                rows=100)
    chunks = -(-7 // 3) if recompute else 0  # in IEEE fp32 a recomputing forward per chunk of layers
    assert len(launches) == parts * (1 + chunks)
    x, w, b = stack_inputs(7, 16, torch.float32, device, rows=most + 1)
    with pytest.raises(ValueError, match="would hold .* values a trial, past the 2\\*\\*31"):
        y, xs = stack_kernels.highway_stack_fwd(x, w, b, "tanh", save_every)  # one row more, to the launchers
        stack_kernels.highway_stack_bwd(torch.ones_like(y), xs, w, b, "tanh", save_every, weight_grads)


@pytest.mark.parametrize("weight_grads, recompute, dtype", [("gemm", False, torch.float32),
                                                             ("atomic", False, torch.float32),
                                                             ("atomic", False, torch.float16),
                                                             ("gemm", True, torch.float16),
                                                             ("atomic", True, torch.float32)], ids=str)
def test_the_int32_bound_counts_the_largest_buffer_the_launches_index(weight_grads, recompute, dtype, device,
                                                                      monkeypatch):
    """`values_per_row`, the bound on a call's rows, counts the values a row adds to the largest row-indexed
    buffer a stack launch takes (saved inputs, a backward chunk's inputs or dZ): counted here in the launches
    themselves, 7 layers in backward chunks of 3, so that a change to how the launchers lay their buffers out
    cannot leave the bound behind."""
    monkeypatch.setattr(stack_kernels, "STACK_BWD_CHUNK", 3)
    monkeypatch.setattr(stack_kernels, "STACK_RECOMPUTE_EVERY", 3)
    depth, width, rows = 7, 16, 20
    seen = []
    launch = stack_kernels._launch

    def counting(kernel, m, trials, args, *rest, **kwargs):
        seen.extend(a.numel() // m for a in args if isinstance(a, torch.Tensor) and a.dim() >= 2 and a.shape[-2] == m)
        return launch(kernel, m, trials, args, *rest, **kwargs)

    monkeypatch.setattr(stack_kernels, "_launch", counting)
    x, w, b = stack_inputs(depth, width, dtype, device, rows=rows)
    x.requires_grad_()
    y = highway_linear_stack(x, w, b, "relu", "triton-stack", recompute=recompute, weight_grads=weight_grads)
    y.sum().backward()
    save_every = stack_kernels.saved_every(True, recompute)
    assert max(seen) == stack_kernels.values_per_row(depth, width, save_every, weight_grads, dtype)


def test_ieee_fp32_past_width_64_takes_the_per_layer_kernels(monkeypatch):
    """IEEE fp32 dots (torch's default matmul precision) run on the FMA units and spill at width 128 with any
    warps: "auto" says so and runs a launch per layer, a forced "triton-stack" names the way out (TF32)."""
    import highway.functional as functional

    monkeypatch.setattr(stack_kernels, "max_shared_memory", lambda: 232448)  # an sm_90 GPU: room for any width
    monkeypatch.setattr(functional, "resolve_backend", lambda backend, device, **_: "triton")
    monkeypatch.setattr(functional, "_FELL_BACK", set())
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "highest")
    cuda = torch.device("cuda")
    assert functional.stack_backend("auto", 64, cuda, torch.float32) == "triton-stack"
    assert functional.stack_backend("auto", 128, cuda, torch.bfloat16) == "triton-stack"
    with pytest.warns(UserWarning, match="IEEE fp32 dots"):
        assert functional.stack_backend("auto", 100, cuda, torch.float32) == "triton"
    with pytest.raises(ValueError, match=r"set_float32_matmul_precision\('high'\)"):
        functional.stack_backend("triton-stack", 128, cuda, torch.float32)


@pytest.mark.parametrize("width", [16, 50, 64])
def test_ieee_fp32_stacks_take_twice_the_warps(width):
    from highway.kernels.launch import SHARED_MEMORY_LIMITS

    block = stack_kernels.padded_width(width)
    largest, warps = stack_kernels.STACK_FMA_TILES[block]
    for configs, constants in ((stack_kernels.STACK_FWD_CONFIGS, {}),
                               (stack_kernels.STACK_BWD_CONFIGS, dict(ATOMIC_WEIGHT_GRADS=False))):
        found = stack_kernels.stack_candidates(width, 4, SHARED_MEMORY_LIMITS[90], configs,
                                               dict(INPUT_PRECISION="ieee", **constants))
        assert {c.num_warps for c in found} == {warps} == {2 * stack_kernels.STACK_TILES[block][1]}
        assert {c.kwargs["BLOCK_M"] for c in found} == {m for m in (16, 32, 64) if m <= largest}
    atomic = stack_kernels.stack_candidates(width, 4, SHARED_MEMORY_LIMITS[90], stack_kernels.STACK_BWD_CONFIGS,
                                            dict(INPUT_PRECISION="ieee", ATOMIC_WEIGHT_GRADS=True))
    assert {c.kwargs["BLOCK_M"] for c in atomic} == {m for m in (16, 32, 64) if m <= largest // 2}


@pytest.mark.parametrize("call,error,words", [
    (lambda: highway_linear_stack(torch.randn(3, 16), torch.randn(2, 32, 8), torch.randn(2, 32)), ValueError,
     "weight must have shape"),
    (lambda: highway_linear_stack(torch.randn(3, 8), torch.randn(2, 32, 16), torch.randn(2, 32)), ValueError,
     "x must have shape"),
    (lambda: highway_linear_stack(torch.randn(3, 16), torch.randn(2, 32, 16), torch.randn(3, 32)), ValueError,
     "bias must have shape"),
    (lambda: highway_linear_stack(torch.randn(4, 3, 16), torch.randn(2, 2, 32, 16), torch.randn(2, 2, 32)),
     ValueError, r"x must have shape \(2, B, 16\)"),
    (lambda: HighwayStack(129, 2, backend="triton-stack")(torch.randn(3, 129)), ValueError, "up to 128"),
    (lambda: HighwayStack(16, 2, backend="fused"), ValueError, "unknown backend"),
    (lambda: highway_linear_stack(torch.randn(3, 16), torch.randn(2, 32, 16), torch.randn(2, 32), backend="fused"),
     ValueError, r"unknown backend 'fused'; expected one of \[.*'triton-stack'\]"),
    (lambda: HighwayStack(16, 0), ValueError, "depth"),
    (lambda: HighwayStack(16, 2, weight_grads="partials"), ValueError, "unknown weight_grads"),
    (lambda: highway_linear_stack(torch.randn(3, 16), torch.randn(2, 32, 16), torch.randn(2, 32), weight_grads="dz"),
     ValueError, "unknown weight_grads"),
    (lambda: HighwayStack.from_layers([HighwayLinear(16), HighwayLinear(8)]), ValueError, "one of each"),
    (lambda: HighwayStack.from_layers([HighwayLinear(16), torch.nn.Linear(16, 16)]), TypeError, "not a HighwayLinear"),
    (lambda: HighwayStack.from_layers([]), ValueError, "at least one"),
])
def test_bad_inputs_are_refused_with_a_clear_error(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_the_atomic_backward_holds_no_dz(device):
    """scripts/stack_memory.py's peak of a training step: "atomic" allocates no dZ (2·B·N values a layer), so
    its peak is lower by that much."""
    import subprocess
    import sys
    from pathlib import Path

    if device.type != "cpu":
        pytest.skip("the CPU profiler's allocation events")
    script = Path(__file__).resolve().parents[1] / "scripts" / "stack_memory.py"
    peak = {way: float(subprocess.run([sys.executable, str(script), "--depth", "8", "--one", "triton-stack", "0", way],
                                      capture_output=True, text=True, check=True).stdout.split()[-1])
            for way in ("gemm", "atomic")}
    dz = 8 * 128 * 100 * 4 / 2**20
    assert 0.95 * dz <= peak["gemm"] - peak["atomic"] <= 1.05 * dz


@pytest.mark.parametrize("width,atomic,stages", [(16, False, {1, 2, 3}), (50, False, {1, 2, 3}), (128, False, {1, 2}),
                                                 (50, True, {1, 2}), (16, True, {1, 2})])
def test_the_backward_pipelines_three_stages_where_they_fit(width, atomic, stages):
    """At 2 stages the backward copies the next layer's tiles at the end of the layer, so the next one starts by
    waiting for them; 3 stages keep a copy in flight through a whole layer where the shared memory (under width
    128) and the registers (the backward that writes dZ) allow."""
    from highway.kernels.launch import SHARED_MEMORY_LIMITS

    candidates = stack_kernels.stack_candidates(width, 2, SHARED_MEMORY_LIMITS[90], stack_kernels.STACK_BWD_CONFIGS,
                                                dict(ATOMIC_WEIGHT_GRADS=atomic))
    assert {c.num_stages for c in candidates} == stages
    forward = stack_kernels.stack_candidates(width, 2, SHARED_MEMORY_LIMITS[90])  # the rule is the backward's
    assert {1, 2, 3} <= {c.num_stages for c in forward}


def test_the_stack_prunes_by_its_own_shared_memory_bound():
    """The stack's backward keeps the saved input and four weight tiles per stage, and its forward keeps one
    layer's tiles fewer than it has stages: a GEMM's estimate (all stages, two weight tiles) let the backward
    try a third stage that overflows sm_80 in fp32 at width 64 (172 KB with triton 3.6), and kept the fp32
    forward at width 128 from copying the next layer's weights ahead, which fits."""
    from highway.kernels.launch import SHARED_MEMORY_LIMITS, gemm_shared_memory

    def stages(width, element_bytes, arch, configs=stack_kernels.STACK_FWD_CONFIGS, constants=None, rows=None):
        found = stack_kernels.stack_candidates(width, element_bytes, SHARED_MEMORY_LIMITS[arch], configs, constants)
        return {c.num_stages for c in found if rows is None or c.kwargs["BLOCK_M"] == rows}

    backward = dict(configs=stack_kernels.STACK_BWD_CONFIGS, constants=dict(ATOMIC_WEIGHT_GRADS=False))
    assert stages(64, 4, 80, rows=32, **backward) == {1, 2}
    assert stages(64, 4, 90, rows=32, **backward) == {1, 2, 3}
    assert gemm_shared_memory(dict(BLOCK_M=32, BLOCK_N=64, BLOCK_K=64), 3, 4, 2) <= SHARED_MEMORY_LIMITS[80]
    for arch in (80, 90):
        assert stages(128, 4, arch) == {1, 2}  # 1 alone before
    assert stages(128, 2, 90) == {1, 2, 3, 4}


def test_the_backward_recomputing_beside_it_leaves_out_the_tile_that_spilled():
    """With atomic dW and the chunk below recomputed beside it, the 32-row tile at width 32 spilled 8 bytes in
    bf16 on sm_80 (`STACK_RECOMPUTE_BELOW_SKIPS`); the same tile alone, and the other tiles, stay."""
    config = triton.Config({}, num_warps=4, num_stages=1)
    meta = lambda m, atomic, below: dict(BLOCK_M=m, BLOCK_N=32, INPUT_PRECISION="tf32",  # noqa: E731
                                         ATOMIC_WEIGHT_GRADS=atomic, RECOMPUTE_BELOW=below)
    assert not stack_kernels.stack_config_allowed(meta(32, True, True), config)
    assert all(stack_kernels.stack_config_allowed(meta(m, atomic, below), config)
               for m, atomic, below in [(32, True, False), (32, False, True), (16, True, True), (64, True, True)])
