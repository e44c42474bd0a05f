"""Population training: P trials of one architecture as one model, each ending where it would alone."""
import dataclasses
import re
import time

import pytest
import torch
import torch.nn.functional as F

from highway import HighwayStack, highway_mlp, mnist_convnet, plain_mlp
from highway import population_torch
from highway.population import PopulationSGD, stack_population
from highway.tolerances import assert_close
from highway_cases import graph_ops


@pytest.fixture(autouse=True)
def hand_written_backward(monkeypatch):
    """The small nets here would run the reference in their population (see population_torch.MIN_VALUES);
    a population at real sizes runs the hand-written backward, so that is what these tests train with."""
    monkeypatch.setattr(population_torch, "MIN_VALUES", 0)


def make_nets(kind="highway", trials=3, depth=5, activation="relu", seed=0):
    torch.manual_seed(seed)
    if kind == "highway":
        return [highway_mlp(12, 8, depth, 4, activation, gate_bias=-1.0 - p, backend="torch") for p in range(trials)]
    return [plain_mlp(12, 9, depth, 4, activation) for _ in range(trials)]


@pytest.mark.parametrize("kind", ["highway", "plain"])
def test_a_population_computes_what_its_nets_compute(kind):
    nets = make_nets(kind)
    population = stack_population(nets)
    x = torch.randn(7, 12)
    expected = torch.stack([net(x) for net in nets])
    assert_close(population(x), expected, torch.float32)
    per_trial = torch.randn(3, 7, 12)
    assert_close(population(per_trial), torch.stack([net(xp) for net, xp in zip(nets, per_trial)]), torch.float32)
    images = torch.randn(7, 1, 3, 4)  # image-shaped input is flattened, as the nets' stem does
    assert_close(population(images), torch.stack([net(images) for net in nets]), torch.float32)


@pytest.mark.parametrize("kind", ["highway", "plain"])
def test_every_hidden_layer_lives_in_one_parameter_so_a_step_costs_the_same_at_any_depth(kind):
    for depth in (1, 5, 20):
        population = stack_population(make_nets(kind, depth=depth))
        shapes = {name: tuple(p.shape) for name, p in population.named_parameters()}
        rows = 16 if kind == "highway" else 9
        assert len(shapes) == 6 and shapes["hidden_weight"][:2] == (3, depth - 1) and population.depth == depth
        assert shapes["hidden_weight"][2] == rows


def test_unstack_gives_ordinary_nets_with_the_current_weights(tmp_path):
    population = stack_population(make_nets())
    with torch.no_grad():
        population.hidden_weight[2, 1].mul_(1.5)
    x = torch.randn(5, 12)
    nets = population.unstack()
    for p, net in enumerate(nets):
        assert_close(net(x), population(x)[p], torch.float32)
    torch.save(nets[2].state_dict(), tmp_path / "winner.pt")
    fresh = make_nets(trials=1)[0]
    fresh.load_state_dict(torch.load(tmp_path / "winner.pt", weights_only=True))
    assert_close(fresh(x), population(x)[2], torch.float32)


@pytest.mark.parametrize("nets,error,words", [
    (lambda: make_nets(depth=4)[:1] + make_nets(depth=5)[:1], ValueError, "depth"),
    (lambda: make_nets(activation="relu")[:1] + make_nets(activation="tanh")[:1], ValueError, "differs"),
    (lambda: make_nets("highway")[:1] + make_nets("plain")[:1], ValueError, "plain net"),
    (lambda: [mnist_convnet(width=4)], TypeError, "highway_mlp or plain_mlp"),
    (lambda: [], ValueError, "at least one"),
    (lambda: make_nets()[:2] + [make_nets()[2].double()], ValueError, "one device and in one dtype"),
])
def test_what_cannot_be_stacked_is_named(nets, error, words):
    with pytest.raises(error, match=words):
        stack_population(nets())


@pytest.mark.parametrize("shape", [(7, 11), (2, 7, 12), (3, 7, 11)])
def test_an_input_that_fits_neither_form_is_named(shape):
    population = stack_population(make_nets())
    with pytest.raises(ValueError, match=re.escape(f"with 12 features, or (3, B, 12); got shape {shape}")):
        population(torch.randn(shape))


def train_alone(net, lr, momentum, nesterov, data, steps, weight_decay=0.0):
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    for x, y in data[:steps]:
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return net


def batches(steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 12, generator=g), torch.randint(0, 4, (16,), generator=g)) for _ in range(steps)]


def train_population(population, opt, data, steps, on_step=None):
    for x, y in data[:steps]:
        opt.zero_grad()
        logits = population(x)
        losses = torch.stack([F.cross_entropy(logits[p], y) for p in range(population.trials)])
        losses[opt.active].sum().backward()
        opt.step()
        if on_step:
            on_step(losses.detach())
    return population


@pytest.mark.parametrize("nesterov,weight_decay", [(False, 0.0), (True, 0.0), (False, 0.05), (True, 0.05)])
def test_each_trial_ends_where_it_would_alone(nesterov, weight_decay):
    # momentum 0 (SGD keeps no buffer) must agree all the same; nesterov needs momentum in every trial
    lrs, moms = [0.05, 0.2, 0.01], [0.9, 0.5, 0.99 if nesterov else 0.0]
    data = batches(6)
    alone = [train_alone(net, lr, m, nesterov, data, 6, weight_decay) for net, lr, m in zip(make_nets(), lrs, moms)]
    population = stack_population(make_nets())
    opt = PopulationSGD(population.parameters(), lrs, moms, nesterov=nesterov, weight_decay=weight_decay)
    train_population(population, opt, data, 6)
    for net, together in zip(alone, population.unstack()):
        for a, b in zip(net.parameters(), together.parameters()):
            assert_close(b, a, torch.float32)


def test_a_diverging_trial_is_frozen_and_the_others_go_on_untouched():
    lrs, moms = [0.05, 1e4, 0.02], [0.9, 0.99, 0.9]
    data = batches(12)
    population = stack_population(make_nets())
    opt = PopulationSGD(population.parameters(), lrs, moms)
    train_population(population, opt, data, 12, on_step=lambda losses: opt.freeze_(~torch.isfinite(losses)))
    assert opt.active.tolist() == [True, False, True]  # trial 1 blew up and stopped
    alone = [train_alone(net, lr, m, False, data, 12) for net, lr, m in zip(make_nets(), lrs, moms)]
    for p in (0, 2):
        for a, b in zip(alone[p].parameters(), population.unstack()[p].parameters()):
            assert_close(b, a, torch.float32)


def test_a_step_takes_a_closure_and_leaves_a_parameter_without_a_gradient_as_it_is():
    data = batches(1)
    population = stack_population(make_nets())
    population.head_bias.requires_grad_(False)
    head_bias = population.head_bias.clone()
    opt = PopulationSGD(population.parameters(), [0.05, 0.2, 0.01], 0.9)
    x, y = data[0]

    def closure():
        opt.zero_grad()
        losses = F.cross_entropy(population(x).transpose(1, 2), y.expand(population.trials, -1), reduction="none")
        loss = losses.mean(1).sum()  # each trial's own mean loss, so each gets the gradient it would alone
        loss.backward()
        return loss

    alone = [train_alone(net, lr, 0.9, False, data, 1) for net, lr in zip(make_nets(), [0.05, 0.2, 0.01])]
    loss = opt.step(closure)
    assert loss.requires_grad and torch.isfinite(loss)
    assert torch.equal(population.head_bias, head_bias)
    for net, together in zip(alone, population.unstack()):
        assert_close(together.head.weight, net.head.weight, torch.float32)
        assert_close(together.layers[0].weight, net.layers[0].weight, torch.float32)


def test_learning_rates_decay_per_trial():
    population = stack_population(make_nets())
    opt = PopulationSGD(population.parameters(), [0.1, 0.2, 0.4], 0.9)
    opt.decay_lr_(torch.tensor([0.5, 0.9, 1.0]))
    assert opt.lr.tolist() == pytest.approx([0.05, 0.18, 0.4])


def test_one_learning_rate_and_momentum_serve_every_trial():
    population = stack_population(make_nets())
    opt = PopulationSGD(population.parameters(), 0.1, 0.9)
    assert opt.lr.tolist() == pytest.approx([0.1] * 3) and opt.momentum.tolist() == pytest.approx([0.9] * 3)


@pytest.mark.parametrize("kwargs,words", [
    (dict(lr=[0.1, 0.2], momentum=0.9), "one value per trial"),
    (dict(lr=[0.1, 0.2, -1.0], momentum=0.9), "lr must be"),
    (dict(lr=[0.1] * 3, momentum=[0.9, 1.0, 0.5]), "momentum must be"),
    (dict(lr=[0.1] * 3, momentum=0.0, nesterov=True), "nesterov"),
    (dict(lr=[0.1] * 3, momentum=0.9, weight_decay=-1e-4), "weight_decay must be >= 0"),
])
def test_population_sgd_refuses_bad_settings(kwargs, words):
    population = stack_population(make_nets())
    with pytest.raises(ValueError, match=words):
        PopulationSGD(population.parameters(), **kwargs)


def test_population_sgd_refuses_no_parameters_and_a_parameter_without_the_trial_axis():
    with pytest.raises(ValueError, match="no parameters"):
        PopulationSGD([], [0.1] * 3, 0.9)
    population = stack_population(make_nets())
    loose = torch.nn.Parameter(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"trial axis first \(3\), got shape \(2, 5\)"):
        PopulationSGD([*population.parameters(), loose], [0.1] * 3, 0.9)


@pytest.mark.parametrize("call,error,words", [
    (lambda opt: opt.decay_lr_([0.9, 0.9]), ValueError, r"one per trial \(3\), got shape \(2,\)"),
    (lambda opt: opt.decay_lr_([[0.9] * 3]), ValueError, "one factor or one per trial"),
    (lambda opt: opt.decay_lr_([0.9, -0.5, 1.0]), ValueError, "finite and >= 0"),
    (lambda opt: opt.decay_lr_(float("nan")), ValueError, "finite and >= 0"),
    (lambda opt: opt.freeze_(torch.tensor([True, False])), ValueError, r"shape \(3,\), got \(2,\)"),
    (lambda opt: opt.freeze_(torch.tensor([1.0, 0.0, 0.0])), TypeError, "bool tensor, got torch.float32"),
    (lambda opt: opt.freeze_([True, False, True]), TypeError, "bool tensor, got list"),
])
def test_decay_and_freeze_refuse_what_is_not_one_value_per_trial_and_change_nothing(call, error, words):
    population = stack_population(make_nets())
    opt = PopulationSGD(population.parameters(), [0.1, 0.2, 0.4], 0.9)
    with pytest.raises(error, match=words):
        call(opt)
    assert opt.lr.tolist() == pytest.approx([0.1, 0.2, 0.4]) and opt.active.all()
    opt.decay_lr_(0.5)  # one factor for every trial is fine
    assert opt.lr.tolist() == pytest.approx([0.05, 0.1, 0.2])


def test_a_study_trained_as_populations_matches_one_trial_at_a_time(tmp_path):
    import highway.bench.study.convergence as cv

    study = cv.Study(name="pop", dataset="digits", depths=(3,), trials=4, epochs=2, batch=64, max_train=300,
                     population=1, search=cv.SearchSpace(fixed={"activation": "relu"}))
    one = cv.convergence_study(tmp_path / "one", study, progress=False)
    together = cv.convergence_study(tmp_path / "pop", dataclasses.replace(study, population=4), progress=False)
    keys = ["model", "gate_rule", "depth", "trial", "epoch"]
    one, together = one.sort_values(keys).reset_index(drop=True), together.sort_values(keys).reset_index(drop=True)
    assert len(one) == len(together) == 2 * 4 * 3
    assert (one[keys] == together[keys]).all().all() and (one["status"] == together["status"]).all()
    assert_close(torch.tensor(together["train_loss"].to_numpy()), torch.tensor(one["train_loss"].to_numpy()),
                 torch.float32)
    assert sorted(p.name for p in (tmp_path / "pop" / "checkpoints").glob("*.pt")) == \
        sorted(p.name for p in (tmp_path / "one" / "checkpoints").glob("*.pt"))


def test_populations_split_by_activation_and_freeze_diverged_trials(tmp_path):
    import highway.bench.study.convergence as cv

    study = cv.Study(name="mix", dataset="digits", depths=(3,), models=("highway",), trials=5, epochs=2, batch=64,
                     max_train=300, population=1, search=cv.SearchSpace(lr=(1e-3, 1e4), momentum=(0.9, 0.99)))
    jobs = [("highway", "search", 3, t) for t in range(5)]
    activations = [cv.trial_hyperparameters(study, *job)[1]["activation"] for job in jobs]
    chunks = cv._chunks(study, jobs, lambda model, depth: 5)
    assert sorted(len(c) for c in chunks) == sorted([activations.count(a) for a in set(activations)])
    one = cv.convergence_study(tmp_path / "one", study, progress=False)
    began = time.perf_counter()
    together = cv.convergence_study(tmp_path / "pop", dataclasses.replace(study, population=5), progress=False)
    assert together["seconds"].between(0, time.perf_counter() - began).all()  # time since the trials began
    keys = ["trial", "epoch"]
    one, together = one.sort_values(keys).reset_index(drop=True), together.sort_values(keys).reset_index(drop=True)
    assert (one["status"] == "diverged").any()  # the search reached lr 1e4 somewhere: the freeze is exercised
    assert one[keys + ["status"]].equals(together[keys + ["status"]])
    # A trial at lr in the hundreds can stay finite while its loss climbs to 1e4: it is chaotic, and the
    # population's hand-written backward, which rounds a little differently from autograd's, ends elsewhere
    # by more than fp32 rounding. Losses are compared where the trials train.
    trained = (one["status"] == "ok") & (one["train_loss"] < 10)
    assert trained.sum() >= 6
    assert_close(torch.tensor(together.loc[trained, "train_loss"].to_numpy()),
                 torch.tensor(one.loc[trained, "train_loss"].to_numpy()), torch.float32)


def test_a_triton_population_trains_as_the_torch_one():
    """backend="triton" nets stack into a population whose highway layers are the fused kernels with a trial
    axis (one launch a layer for every trial): the same logits and, after SGD steps, the same weights."""
    torch.manual_seed(0)
    nets = [highway_mlp(12, 16, 4, 4, "relu", gate_bias=-1.0 - p, backend="triton") for p in range(3)]
    fused = stack_population(nets)
    for net in nets:
        for layer in net.layers:
            layer.backend = "torch"
    eager = stack_population(nets)
    assert (fused.backend, eager.backend) == ("triton", "torch")
    data = batches(4)
    assert_close(fused(data[0][0]), eager(data[0][0]), torch.float32)
    for population in (fused, eager):
        train_population(population, PopulationSGD(population.parameters(), [0.05, 0.1, 0.2], 0.9), data, 4)
    for a, b in zip(fused.parameters(), eager.parameters()):
        assert_close(a, b, torch.float32)


def test_the_time_estimate_steps_as_the_study_does():
    from highway.bench.study import planning

    make = lambda p: stack_population(make_nets(trials=p))  # noqa: E731
    train, evaluate = planning._seconds_per_trial(make, 3, 8, 12, 4, "cpu", cuda_graph=True)  # no graph on a CPU
    assert 0 < train < 1 and 0 < evaluate < 1


def test_auto_population_takes_as_many_trials_as_fit_in_memory(monkeypatch):
    from highway.bench.study import planning

    per_trial = planning.trial_bytes("highway", 20, 50, 784, 10, 64)
    monkeypatch.setattr(planning, "free_memory_bytes", lambda device: int(per_trial * 7 / planning.MEMORY_SHARE))
    assert planning.population_that_fits("highway", 20, 50, 784, 10, 64, 100, "cpu") == 7
    assert planning.population_that_fits("highway", 20, 50, 784, 10, 64, 5, "cpu") == 5  # never more than asked
    monkeypatch.setattr(planning, "free_memory_bytes", lambda device: 1)
    assert planning.population_that_fits("highway", 20, 50, 784, 10, 64, 100, "cpu") == 1  # never none
    assert planning.trial_bytes("highway", 200, 50, 784, 10, 64) > planning.trial_bytes("highway", 20, 50, 784, 10, 64)


def test_free_memory_on_a_cpu_counts_the_page_cache_linux_would_drop(tmp_path):
    from highway.bench.study import planning

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:         2000000 kB\nMemAvailable:   20000000 kB\n")
    assert planning.free_memory_bytes("cpu", str(meminfo)) == 20_000_000 * 1024
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:         2000000 kB\n")  # a kernel before 3.14
    assert planning.free_memory_bytes("cpu", str(meminfo)) > 0  # the free pages, from sysconf
    assert planning.free_memory_bytes("cpu", str(tmp_path / "none")) > 0


def test_the_expected_time_sums_measured_costs_over_the_study(monkeypatch):
    """Measured per-trial costs, linear in depth between the two measured depths, times steps, epochs, trials."""
    import highway.bench.study.convergence as cv
    from highway.bench.study import planning
    from highway.bench.study.datasets import load_dataset

    monkeypatch.setattr(planning, "_seconds_per_trial",
                        lambda make, population, batch, features, classes, device, graph: (1e-3 * make(1).depth, 0.0))
    study = cv.Study(name="t", dataset="digits", depths=(3, 5), trials=4, epochs=2, batch=50, max_train=100)
    data = load_dataset("digits", max_train=100)
    seconds = planning.expected_seconds(study, data, "cpu", lambda model, depth: 4, cv.WIDTHS)
    steps = 2  # 100 images in batches of 50
    per_model = sum(1e-3 * d * steps * study.epochs * study.trials for d in (3, 5))
    assert seconds == pytest.approx(2 * per_model)  # plain and highway


def test_population_option_takes_a_number_or_auto(tmp_path, capsys):
    from highway.bench.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["converge", "--population", "auto"]).population == "auto"
    assert parser.parse_args(["converge", "--population", "8"]).population == 8
    with pytest.raises(SystemExit):
        parser.parse_args(["converge", "--population", "many"])
    assert "positive integer or 'auto'" in capsys.readouterr().err
    import highway.bench.study.convergence as cv

    with pytest.raises(ValueError, match="population must be a positive integer or 'auto', got 0"):
        cv.Study(population=0).validate()
    with pytest.raises(ValueError, match="max_val"):
        cv.Study(max_val=0).validate()


@pytest.mark.parametrize("backend", ["torch", "triton-stack"])
def test_a_population_of_stacked_nets_is_one_weight_and_computes_what_its_nets_compute(backend):
    """highway_mlp(stack=True) nets stack into (P, depth, 2w, w): on triton-stack every layer of every trial
    is one launch; trained, they end where the per-layer population does."""
    torch.manual_seed(0)
    nets = [highway_mlp(12, 16, 5, 4, "tanh", gate_bias=-1.0 - p, backend=backend, stack=True) for p in range(3)]
    population = stack_population(nets)
    assert population.stacked and population.depth == 5 and population.hidden_weight.shape == (3, 4, 32, 16)
    x = torch.randn(7, 12)
    assert_close(population(x), torch.stack([net(x) for net in nets]), torch.float32)
    layered = [highway_mlp(12, 16, 5, 4, "tanh", backend="torch") for _ in range(3)]
    for net, twin in zip(nets, layered):
        twin.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("layers.")},
                             strict=False)
        for i, layer in enumerate(twin.layers):
            layer.weight.data.copy_(net.layers[0].weight[i])
            layer.bias.data.copy_(net.layers[0].bias[i])
    per_layer = stack_population(layered)
    data = batches(3)
    for pop in (population, per_layer):
        train_population(pop, PopulationSGD(pop.parameters(), [0.05, 0.1, 0.2], 0.9), data, 3)
    for p, net in enumerate(population.unstack()):
        assert isinstance(net.layers[0], HighwayStack)
        assert_close(net(x), per_layer(x)[p], torch.float32)


@pytest.mark.parametrize("kind,backend", [("highway", "torch"), ("highway", "triton"), ("plain", "torch")])
def test_the_stacked_layers_are_unbound_once_not_indexed_layer_by_layer(kind, backend):
    """Indexing layer i of a (P, L, ...) parameter costs a whole zero-filled (P, L, ...) gradient per layer in
    backward, L² work; unbinding costs one stack."""
    torch.manual_seed(0)
    if kind == "highway":
        nets = [highway_mlp(12, 16, 6, 4, "relu", backend=backend) for _ in range(2)]
    else:
        nets = [plain_mlp(12, 9, 6, 4) for _ in range(2)]
    ops = graph_ops(stack_population(nets)(torch.randn(5, 12)))
    assert "UnbindBackward0" in ops and "SelectBackward0" not in ops


def test_a_population_runs_its_highway_layers_as_one_stack_with_the_nets_backend(monkeypatch):
    import highway.population as population_module

    calls = []
    real = population_module.highway_linear_stack
    monkeypatch.setattr(population_module, "highway_linear_stack", lambda x, w, b, act, backend:
                        calls.append((tuple(w.shape), backend)) or real(x, w, b, act, backend))
    nets = [highway_mlp(12, 16, 6, 4, "relu", backend="auto") for _ in range(3)]
    stack_population(nets)(torch.randn(5, 12))
    assert calls == [((3, 5, 32, 16), "auto")]  # on a GPU, "auto" is the depth-fused stack where the width fits


def test_a_population_step_freezes_a_trial_whose_loss_is_not_finite_before_its_update():
    from highway.bench.study.training import population_step

    population = stack_population(make_nets())
    opt = PopulationSGD(population.parameters(), [0.1, 0.1, 0.1], 0.9)
    x, y = torch.randn(3, 6, 12), torch.randint(0, 4, (3, 6))
    x[1, 2, 0] = float("nan")
    before = [p.detach().clone() for p in population.parameters()]
    diverged = torch.zeros(3, dtype=torch.bool)
    population_step(population, opt, x, y, diverged)
    assert diverged.tolist() == [False, True, False] and opt.active.tolist() == [True, False, True]
    for old, new in zip(before, population.parameters()):
        assert torch.equal(old[1], new[1]) and not torch.equal(old[0], new[0])  # trial 1 untouched, 0 trained
    population_step(population, opt, torch.randn(3, 6, 12), y, diverged)  # frozen for good, NaN grads or not
    assert all(torch.equal(old[1], new[1]) for old, new in zip(before, population.parameters()))


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_a_population_step_never_waits_on_the_gpu(backend):
    """A step asks the device for nothing (no .item(), no bool of a tensor, no pageable copy), so the host
    queues launches ahead of the GPU: any synchronizing call raises under sync debug mode."""
    from highway.bench.study.training import population_step

    torch.manual_seed(0)
    nets = [highway_mlp(784, 50, 20, 10, "relu", gate_bias=-2.0, backend=backend) for _ in range(8)]
    population = stack_population(nets).cuda()
    opt = PopulationSGD(population.parameters(), [0.01] * 8, 0.9)
    x, y = torch.randn(8, 64, 784, device="cuda"), torch.randint(0, 10, (8, 64), device="cuda")
    diverged = torch.zeros(8, dtype=torch.bool, device="cuda")
    for _ in range(2):  # autotuning and first-call work may synchronize
        population_step(population, opt, x, y, diverged)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            population_step(population, opt, x, y, diverged)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert not diverged.any()


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_a_population_trained_by_cuda_graph_replays_ends_where_the_eager_one_does(backend):
    import warnings

    from highway.bench.study.datasets import load_dataset
    from highway.bench.study.training import train_population

    data = load_dataset("digits", max_train=640)  # 10 steps an epoch: 3 eager, then replays, then a partial one
    hps = [dict(lr=lr, momentum=0.9, decay=0.95) for lr in (0.01, 0.05, 1e4)]  # the last one diverges
    runs = {}
    for graph in (False, True):
        torch.manual_seed(0)
        nets = [highway_mlp(data.in_features, 16, 6, data.num_classes, "relu", -2.0, backend) for _ in hps]
        population = stack_population(nets).cuda()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a failed capture warns: that must not happen here
            epochs = list(train_population(population, data, hps, 3, 48, [1, 2, 3], "cuda", cuda_graph=graph))
        runs[graph] = ([[row and row[3] for row in rows] for _, rows, _ in epochs],
                       [p.detach().clone() for p in population.parameters()])
    (eager_status, eager_params), (graph_status, graph_params) = runs[False], runs[True]
    assert graph_status == eager_status and "diverged" in sum(eager_status, [])
    for a, b in zip(eager_params, graph_params):
        assert_close(b[:2], a[:2], torch.float32)  # the live trials; the diverged one froze at the same step
