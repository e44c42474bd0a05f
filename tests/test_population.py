"""Population training: P trials of one architecture as one model, each ending where it would alone."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from highway import highway_mlp, mnist_convnet, plain_mlp
from highway.population import PopulationSGD, stack_population
from highway.tolerances import assert_close


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


def test_unstack_gives_ordinary_nets_with_the_current_weights(tmp_path):
    population = stack_population(make_nets())
    with torch.no_grad():
        population.weights[1][2].mul_(1.5)
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
])
def test_what_cannot_be_stacked_is_named(nets, error, words):
    with pytest.raises(error, match=words):
        stack_population(nets())


def train_alone(net, lr, momentum, nesterov, data, steps):
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, nesterov=nesterov)
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


@pytest.mark.parametrize("nesterov", [False, True])
def test_each_trial_ends_where_it_would_alone(nesterov):
    lrs, moms = [0.05, 0.2, 0.01], [0.9, 0.5, 0.99]
    data = batches(6)
    alone = [train_alone(net, lr, m, nesterov, data, 6) for net, lr, m in zip(make_nets(), lrs, moms)]
    population = stack_population(make_nets())
    train_population(population, PopulationSGD(population.parameters(), lrs, moms, nesterov=nesterov), data, 6)
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


def test_learning_rates_decay_per_trial():
    population = stack_population(make_nets())
    opt = PopulationSGD(population.parameters(), [0.1, 0.2, 0.4], 0.9)
    opt.decay_lr_(torch.tensor([0.5, 0.9, 1.0]))
    assert opt.lr.tolist() == pytest.approx([0.05, 0.18, 0.4])


@pytest.mark.parametrize("kwargs,words", [
    (dict(lr=[0.1, 0.2], momentum=0.9), "one value per trial"),
    (dict(lr=[0.1, 0.2, -1.0], momentum=0.9), "lr must be"),
    (dict(lr=[0.1] * 3, momentum=[0.9, 1.0, 0.5]), "momentum must be"),
    (dict(lr=[0.1] * 3, momentum=0.0, nesterov=True), "nesterov"),
])
def test_population_sgd_refuses_bad_settings(kwargs, words):
    population = stack_population(make_nets())
    with pytest.raises(ValueError, match=words):
        PopulationSGD(population.parameters(), **kwargs)


def test_a_study_trained_as_populations_matches_one_trial_at_a_time(tmp_path):
    import highway.bench.study.convergence as cv

    study = cv.Study(name="pop", dataset="digits", depths=(3,), trials=4, epochs=2, batch=64, max_train=300,
                     search=cv.SearchSpace(fixed={"activation": "relu"}))
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
                     max_train=300, search=cv.SearchSpace(lr=(1e-3, 1e4), momentum=(0.9, 0.99)))
    jobs = [("highway", "search", 3, t) for t in range(5)]
    activations = [cv.trial_hyperparameters(study, *job)[1]["activation"] for job in jobs]
    chunks = cv._chunks(dataclasses.replace(study, population=5), jobs)
    assert sorted(len(c) for c in chunks) == sorted([activations.count(a) for a in set(activations)])
    one = cv.convergence_study(tmp_path / "one", study, progress=False)
    together = cv.convergence_study(tmp_path / "pop", dataclasses.replace(study, population=5), progress=False)
    keys = ["trial", "epoch"]
    one, together = one.sort_values(keys).reset_index(drop=True), together.sort_values(keys).reset_index(drop=True)
    assert (one["status"] == "diverged").any()  # the search reached lr 1e4 somewhere: the freeze is exercised
    assert one[keys + ["status"]].equals(together[keys + ["status"]])
    finite = one["status"] == "ok"
    assert_close(torch.tensor(together.loc[finite, "train_loss"].to_numpy()),
                 torch.tensor(one.loc[finite, "train_loss"].to_numpy()), torch.float32)
