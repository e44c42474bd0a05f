"""The torch backend of a population's highway layers (`highway.population_torch`): a hand-written backward,
tested against the float64 reference like the kernels."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from highway import population_torch
from highway.functional import highway_linear_population, highway_linear_stack
from highway.population_torch import highway_linear_population_torch
from highway.reference import highway_linear_reference, highway_stack_reference
from highway.tolerances import assert_close
from highway_cases import ACTIVATION_NAMES, linear_inputs, run_with_grads

CPU_DTYPES = [torch.float32, torch.float64, torch.bfloat16]


@pytest.fixture(autouse=True)
def hand_written_at_every_size(monkeypatch):
    """The small layers of these tests would run the reference (see MIN_VALUES): test the hand-written path."""
    monkeypatch.setattr(population_torch, "MIN_VALUES", 0)


def test_small_layers_run_the_reference_and_large_ones_the_hand_written_backward(monkeypatch):
    monkeypatch.setattr(population_torch, "MIN_VALUES", 100)
    w, b = torch.randn(2, 10, 5, requires_grad=True), torch.randn(2, 10, requires_grad=True)
    small = highway_linear_population(torch.randn(2, 9, 5), w, b, "relu", "torch")
    large = highway_linear_population(torch.randn(2, 10, 5), w, b, "relu", "torch")
    assert "PopulationHighwayLinear" not in type(small.grad_fn).__name__
    assert "PopulationHighwayLinear" in type(large.grad_fn).__name__


def population_inputs(trials, m, n, dtype, seed=0):
    layers = [linear_inputs(m, n, dtype, "cpu", seed=seed + p) for p in range(trials)]
    return tuple(torch.stack(ts) for ts in zip(*layers))


def check(trials, m, n, activation, dtype, seed=0, scale=1.0):
    x, w, b = population_inputs(trials, m, n, dtype, seed)
    x = x * scale
    dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 99)).to(dtype)
    ref = run_with_grads(lambda *t: highway_linear_reference(*t, activation), (x, w, b), dy, torch.float64)
    got = run_with_grads(lambda *t: highway_linear_population(*t, activation, backend="torch"), (x, w, b), dy)
    for name, actual, expected in zip(("y", "dx", "dweight", "dbias"), (got[0], *got[1]), (ref[0], *ref[1])):
        assert actual.dtype == dtype
        assert_close(actual, expected, dtype, name)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=str)
def test_forward_and_gradients_match_the_reference(activation, dtype):
    check(3, 9, 50, activation, dtype)


@settings(max_examples=25, deadline=None)
@given(trials=st.integers(1, 5), m=st.integers(1, 40), n=st.integers(1, 33),
       activation=st.sampled_from(ACTIVATION_NAMES), scale=st.sampled_from([1e-3, 1.0, 30.0]), seed=st.integers(0, 99))
def test_hypothesis_shapes_and_values(trials, m, n, activation, scale, seed):
    check(trials, m, n, activation, torch.float32, seed, scale)


def test_strided_inputs_and_an_empty_batch():
    x, w, b = population_inputs(3, 6, 8, torch.float32)
    interleaved = x.transpose(0, 1).contiguous().transpose(0, 1)  # trial-interleaved rows
    assert_close(highway_linear_population(interleaved, w, b, "relu", "torch"),
                 highway_linear_reference(x.double(), w.double(), b.double(), "relu"), torch.float32)
    empty = x[:, :0].requires_grad_()
    y = highway_linear_population(empty, w, b, "tanh", "torch")
    y.sum().backward()
    assert y.shape == (3, 0, 8) and empty.grad.shape == (3, 0, 8)


def test_an_infinite_input_is_carried_as_the_reference_carries_it():
    x, w, b = population_inputs(2, 4, 5, torch.float32)
    x[1, 2, 3] = float("inf")
    assert_close(highway_linear_population(x, w, b, "relu", "torch"), highway_linear_reference(x, w, b, "relu"),
                 torch.float32)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_second_derivatives(activation):
    x, w, b = (t.requires_grad_() for t in population_inputs(2, 4, 3, torch.float64))
    if activation == "relu":  # keep the pre-activations off relu's kink, where the second derivative jumps
        b.data[:, :3] += 3.0
    assert torch.autograd.gradgradcheck(lambda *t: highway_linear_population_torch(*t, activation), (x, w, b))


def test_a_torch_population_of_stacks_matches_the_reference_stack():
    x, _, _ = population_inputs(2, 5, 6, torch.float32)
    g = torch.Generator().manual_seed(3)
    w = torch.randn(2, 4, 12, 6, generator=g) / 3
    b = torch.randn(2, 4, 12, generator=g) - 1
    dy = torch.randn(x.shape, generator=g)
    ref = run_with_grads(lambda *t: highway_stack_reference(*t, "tanh"), (x, w, b), dy, torch.float64)
    got = run_with_grads(lambda *t: highway_linear_stack(*t, "tanh", "torch"), (x, w, b), dy)
    for name, actual, expected in zip(("y", "dx", "dweight", "dbias"), (got[0], *got[1]), (ref[0], *ref[1])):
        assert_close(actual, expected, torch.float32, name)


def test_compiles_without_a_graph_break_and_vmaps():
    x, w, b = population_inputs(3, 5, 4, torch.float32)
    compiled = torch.compile(lambda *t: highway_linear_population(*t, "relu", "torch"), fullgraph=True)
    expected = highway_linear_reference(x.double(), w.double(), b.double(), "relu")
    assert_close(compiled(x, w, b), expected, torch.float32)
    batched = torch.func.vmap(lambda xs: highway_linear_population(xs, w, b, "relu", "torch"))(x.unsqueeze(0))
    assert_close(batched[0], expected, torch.float32)
