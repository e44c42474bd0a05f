"""The fused layers inside PyTorch's compiler and transforms: custom ops with fake implementations, no
graph break, export, autocast, second derivatives, vmap and grad (CPU, kernels under the interpreter)."""
import pytest
import torch

from highway import highway_mlp, mnist_convnet
from highway.functional import highway_conv2d, highway_linear, highway_linear_stack
from highway.reference import highway_conv2d_reference, highway_linear_reference
from highway.tolerances import assert_close
from highway_cases import conv_inputs, linear_inputs


def nets(backend):
    torch.manual_seed(0)
    return {"mlp": (highway_mlp(12, 8, 4, 3, backend=backend), torch.randn(6, 12)),
            "conv": (mnist_convnet(width=8, backend=backend), torch.randn(2, 1, 28, 28)),
            "stack": (highway_mlp(12, 8, 4, 3, backend="triton-stack" if backend == "triton" else backend, stack=True),
                      torch.randn(6, 12))}


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("name", ["mlp", "conv", "stack"])
def test_no_graph_break(backend, name):
    net, x = nets(backend)[name]
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(net)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons


@pytest.mark.parametrize("name", ["mlp", "conv", "stack"])
def test_compiled_fullgraph_matches_eager_forward_and_gradients(name):
    net, x = nets("triton")[name]
    torch._dynamo.reset()
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    results = []
    for model in (net, compiled):
        net.zero_grad()
        xg = x.clone().requires_grad_()
        y = model(xg)
        y.pow(2).sum().backward()
        results.append([y.detach(), xg.grad, *(p.grad.clone() for p in net.parameters())])
    for eager, comp in zip(*results):
        assert_close(comp, eager, torch.float32)


@pytest.mark.parametrize("name,op", [("mlp", "linear_fwd"), ("stack", "stack_fwd")])
def test_export_keeps_the_fused_op(name, op):
    net, x = nets("triton")[name]
    exported = torch.export.export(net, (x,))
    targets = {str(node.target) for node in exported.graph.nodes}
    assert f"highway.{op}.default" in targets
    assert_close(exported.module()(x), net(x), torch.float32)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("name", ["mlp", "conv", "stack"])
def test_autocast_bf16_casts_like_nn_linear(backend, name):
    net, x = nets(backend)[name]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x)
    assert y.dtype == torch.bfloat16
    reference = net(x)
    assert (y.float() - reference).abs().max() < 0.1 * reference.abs().max() + 0.1


def test_mixed_dtypes_outside_autocast_are_still_refused():
    x, w, b = linear_inputs(4, 8, torch.float32, "cpu")
    with pytest.raises(TypeError, match="dtypes must match"):
        highway_linear(x.bfloat16(), w, b, backend="triton")


def _penalty_grads(fn, tensors):
    leaves = [t.clone().requires_grad_() for t in tensors]
    y = fn(*leaves)
    first = torch.autograd.grad(y.pow(2).sum(), leaves, create_graph=True)
    sum(g.pow(2).sum() for g in first).backward()
    return [g.detach() for g in first], [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("layer", ["linear", "conv", "stack"])
def test_double_backward_matches_the_torch_backend(layer):
    fused = "triton"
    if layer == "linear":
        tensors, fn = linear_inputs(6, 8, torch.float32, "cpu", seed=2), highway_linear
    elif layer == "conv":
        tensors, fn = conv_inputs(2, 4, 5, 5, 3, torch.float32, "cpu", seed=2), highway_conv2d
    else:
        x, w, b = linear_inputs(6, 8, torch.float32, "cpu", seed=2)
        tensors, fn, fused = (x, torch.stack([w, 0.5 * w]), torch.stack([b, b])), highway_linear_stack, "triton-stack"
    first_t, second_t = _penalty_grads(lambda *t: fn(*t, backend=fused), tensors)
    first_r, second_r = _penalty_grads(lambda *t: fn(*t, backend="torch"), tensors)
    for got, want in zip(first_t + second_t, first_r + second_r):
        assert got is not None and want is not None
        assert_close(got, want, torch.float32)
    assert all(g.abs().sum() > 0 for g in second_t)  # the second-order term is there


def test_vmap_and_grad_match_a_loop_and_the_reference():
    x, w, b = linear_inputs(5, 8, torch.float32, "cpu", seed=4)
    batch = torch.randn(3, 5, 8)
    layer = lambda xx: highway_linear(xx, w, b, backend="triton")  # noqa: E731
    assert_close(torch.vmap(layer)(batch), torch.stack([layer(v) for v in batch]), torch.float32)
    grad_w = torch.func.grad(lambda ww: highway_linear(x, ww, b, backend="triton").pow(2).sum())(w)
    wr = w.clone().requires_grad_()
    want = torch.autograd.grad(highway_linear_reference(x, wr, b).pow(2).sum(), wr)[0]
    assert_close(grad_w, want, torch.float32)
    xc, wc, bc = conv_inputs(1, 4, 4, 4, 3, torch.float32, "cpu")
    conv = lambda xx: highway_conv2d(xx, wc, bc, backend="triton")  # noqa: E731
    stack = torch.randn(2, 1, 4, 4, 4)
    assert_close(torch.vmap(conv)(stack), torch.stack([highway_conv2d_reference(v, wc, bc) for v in stack]),
                 torch.float32)


@pytest.mark.parametrize("layer", ["linear", "stack"])
def test_what_a_forward_saves_for_backward_gets_no_zero_gradient(layer):
    """The forward ops return (y, saved); `saved` is the backward's alone, so autograd must not fill a zero
    gradient for it (a layer's Z, or a whole stack's inputs: as large as what was saved) at every step."""
    from torch.profiler import ProfilerActivity, profile

    x, w, b = linear_inputs(64, 16, torch.float32, "cpu")
    if layer == "stack":
        w, b = w.expand(5, -1, -1).clone(), b.expand(5, -1).clone()
        fn, saved = (lambda *a: highway_linear_stack(*a, backend="triton-stack")), [5, 64, 16]  # noqa: E731
    else:
        fn, saved = (lambda *a: highway_linear(*a, backend="triton")), [64, 32]  # noqa: E731
    x, w, b = (t.requires_grad_() for t in (x, w, b))
    y = fn(x, w, b)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        y.sum().backward()
    filled = [e.name for e in prof.events() if e.name in ("aten::fill_", "aten::zero_") and e.input_shapes
              and e.input_shapes[0] == saved]
    assert not filled
    assert x.grad is not None and w.grad is not None and b.grad is not None


def test_the_backward_op_returns_independent_tensors():
    x, w, b = linear_inputs(6, 8, torch.float32, "cpu")
    dy = torch.randn(6, 8)
    dx, dw, db = torch.ops.highway.linear_bwd(dy, x, w, b, x.new_empty(0), "relu")
    before = db.clone()
    dw.add_(1.0)
    assert torch.equal(db, before)  # dW and db share one buffer inside the kernel, never outside the op


def test_the_harness_times_fused_layers_inside_a_compiled_model():
    from highway.bench.harness.backends import BACKENDS
    from highway.bench.harness.cases import Case

    backend = BACKENDS["triton+compile"]
    case = Case("highway", "dense", 2, 8, "fp32", 4, "triton+compile", "train")
    assert backend.layer_backend == "triton"
    assert "GPU" in backend.unsupported(case, torch.device("cpu"))
    assert backend.unsupported(case.__class__(**{**case.__dict__, "model": "plain"}), torch.device("cuda"))


@pytest.mark.gpu
def test_inductor_compiles_around_the_fused_ops_on_a_gpu():
    torch.manual_seed(0)
    net = highway_mlp(64, 64, 6, 10, backend="triton").cuda()
    x = torch.randn(32, 64, device="cuda")
    torch._dynamo.reset()
    assert torch._dynamo.explain(net)(x).graph_break_count == 0
    compiled = torch.compile(net, fullgraph=True)
    assert_close(compiled(x), net(x), torch.float32)
