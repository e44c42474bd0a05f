"""The paper's optimization experiment (NIPS 2015, section 3.1, Figure 1): plain vs highway nets of growing
depth, SGD with momentum and an exponentially decaying learning rate, a random search per net.

Nets: a plain first layer (input → width), then depth − 1 highway layers of width 50 or plain layers of
width 71 (≈ 5000 parameters a layer each), then a softmax layer. A random search draws, per trial, the
initial learning rate, momentum, the per-epoch decay factor, the activation (relu or tanh) and, for highway
nets, the transform-gate bias in [−10, −1]. The measure is the cross-entropy on the training set.

Every trial writes one row per epoch (epoch 0 is the net at initialization) to `converge.csv` as it goes;
a re-run resumes, skipping finished trials. The best trial per (arm, depth) keeps its checkpoint in
`checkpoints/` for `highway-bench analyze`. File names and columns are in `highway.bench.schema`.
"""
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from highway.bench.harness.environment import environment, resolve_device
from highway.bench.harness.progress import progress_bar
from highway.bench.harness.store import ResultStore
from highway.bench.schema import CARRY_COLUMNS, CARRY_FILE, CARRY_KEYS, CONVERGE_COLUMNS, CONVERGE_FILE, \
    CONVERGE_KEYS, GATE_AUTO, GATE_SEARCH, MODELS, NO_GATE, STATUS_OK, parse_gate_rule
from highway.bench.study.checkpoints import save_if_best
from highway.bench.study.datasets import FALLBACK_NOTE, ImageData, load_dataset
from highway.bench.study.training import train_population, train_trial
from highway.activations import check_activation
from highway.backends import BACKENDS as LAYER_BACKENDS
from highway.gate_bias import gate_bias_for_depth
from highway.gates import carried_fraction
from highway.models import highway_mlp, plain_mlp
from highway.population import stack_population

WIDTHS = {"highway": 50, "plain": 71}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
CARRY_SAMPLES = 1000  # training images the carried fraction at initialization is averaged over


@dataclass
class SearchSpace:
    """Ranges of the random search; each trial draws from them with its own seed."""
    lr: tuple = (1e-3, 1e-1)  # log-uniform
    momentum: tuple = (0.8, 0.99)  # 1 − momentum log-uniform
    decay: tuple = (0.9, 1.0)  # uniform; the learning rate is multiplied by it after every epoch
    activation: tuple = ("relu", "tanh")
    gate_bias: tuple = (-10.0, -1.0)  # uniform, highway nets only
    fixed: dict = field(default_factory=dict)  # values that override the draw, e.g. {"gate_bias": -2.0}

    def validate(self):
        """ValueError for a range or fixed value that no trial could train with."""
        checks = {
            "lr": lambda v: 0 < v < math.inf, "momentum": lambda v: 0 <= v < 1, "decay": lambda v: 0 < v <= 1,
            "gate_bias": lambda v: math.isfinite(v),
        }
        words = {"lr": "a positive number", "momentum": "in [0, 1)", "decay": "in (0, 1]",
                 "gate_bias": "a finite number"}
        for name, ok in checks.items():
            lo, hi = getattr(self, name)
            if not (_is_number(lo) and _is_number(hi) and ok(lo) and ok(hi) and lo <= hi):
                raise ValueError(f"the search range of {name} must be two numbers {words[name]}, low first; "
                                 f"got {(lo, hi)}")
            if name in self.fixed and not (_is_number(self.fixed[name]) and ok(self.fixed[name])):
                raise ValueError(f"{name} must be {words[name]}, got {self.fixed[name]!r}")
        for activation in (self.fixed.get("activation"), *self.activation):
            if activation is not None:
                check_activation(activation)

    def draw(self, model: str, rng: np.random.Generator) -> dict:
        hp = {
            "lr": float(math.exp(rng.uniform(math.log(self.lr[0]), math.log(self.lr[1])))),
            "momentum": float(1 - math.exp(rng.uniform(math.log(1 - self.momentum[1]), math.log(1 - self.momentum[0])))),
            "decay": float(rng.uniform(*self.decay)),
            "activation": str(rng.choice(self.activation)),
            "gate_bias": float(rng.uniform(*self.gate_bias)),
        }
        hp.update(self.fixed)
        if model == "plain":
            hp["gate_bias"] = float("nan")
        return hp


@dataclass
class Study:
    """One convergence study: which nets, how long, on what."""
    name: str = "custom"
    dataset: str = "default"
    depths: tuple = (10, 20, 50, 100)
    models: tuple = ("plain", "highway")
    trials: int = 3
    epochs: int = 4
    batch: int = 64
    max_train: int | None = 6000
    seed: int = 0
    backend: str = "auto"
    search: SearchSpace = field(default_factory=SearchSpace)
    # How highway nets get their transform-gate bias: "search" (drawn like the other hyperparameters),
    # "auto" (`highway.gate_bias.gate_bias_for_depth` for depth − 1 layers), or a number, e.g. "-2".
    gate_rules: tuple = (GATE_SEARCH,)
    # Trials trained at once as one population (`highway.population`): up to this many of one (model, gate
    # rule, depth, activation) group. 1 trains one trial after another.
    population: int = 1

    def arms(self):
        """(model, gate rule) pairs: plain nets once, highway nets once per gate rule."""
        return [(m, r) for m in self.models for r in (self.gate_rules if m == "highway" else (NO_GATE,))]

    def validate(self):
        """ValueError naming the first bad setting, before any data is loaded or any net is built."""
        for name in ("trials", "epochs", "batch", "seed", "population"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "seed" else 1):
                raise ValueError(f"{name} must be a {'non-negative' if name == 'seed' else 'positive'} integer, "
                                 f"got {value!r}")
        if self.max_train is not None and (isinstance(self.max_train, bool) or not isinstance(self.max_train, int)
                                           or self.max_train < 1):
            raise ValueError(f"max_train must be a positive integer or None, got {self.max_train!r}")
        if not self.depths or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in self.depths):
            raise ValueError(f"depths must be positive integers, got {list(self.depths)}")
        unknown = [m for m in self.models if m not in MODELS]
        if not self.models or unknown:
            raise ValueError(f"models must be some of {list(MODELS)}, got {list(self.models)}")
        if "highway" in self.models and min(self.depths) < 2:
            raise ValueError(f"a highway net needs depth >= 2 (depth counts the plain first layer, so depth 1 has no "
                             f"highway layer); got depths {list(self.depths)}")
        for rule in self.gate_rules:
            parse_gate_rule(rule)
        if self.backend not in LAYER_BACKENDS:
            raise ValueError(f"backend must be one of {list(LAYER_BACKENDS)}, got {self.backend!r}")
        self.search.validate()


def gate_bias_for_rule(rule: str, depth: int, drawn: float) -> float:
    rule = parse_gate_rule(rule)
    if rule == GATE_SEARCH:
        return drawn
    if rule == GATE_AUTO:
        return gate_bias_for_depth(max(depth - 1, 1))
    return float(rule)


PRESETS = {
    # A 2-core CPU in a few minutes: four depths, three trials each, four epochs on 6000 images.
    "quick": Study("quick"),
    # The paper's protocol: 100 random-search trials per net (the NIPS paper's count; the workshop paper used
    # 40) at its depths and beyond. The paper states no epoch count or ranges; these are ours.
    "paper": Study("paper", depths=(10, 20, 50, 100, 200, 500, 1000), trials=100, epochs=400, batch=64,
                   max_train=None),
    # The gate-bias comparison: no search. Plain, highway with the fixed default −2, highway with the depth rule,
    # all with one learning rate and momentum, at the paper's depths and beyond.
    "gate-bias": Study("gate-bias", depths=(10, 20, 50, 100, 200, 500, 1000), trials=1, epochs=2, max_train=6000,
                       gate_rules=("-2", "auto"),
                       search=SearchSpace(fixed={"lr": 0.01, "momentum": 0.9, "decay": 1.0, "activation": "relu"})),
}


def build_net(model: str, depth: int, data: ImageData, hp: dict, backend: str):
    if model == "highway":
        return highway_mlp(data.in_features, WIDTHS["highway"], depth, data.num_classes, hp["activation"],
                           hp["gate_bias"], backend)
    return plain_mlp(data.in_features, WIDTHS["plain"], depth, data.num_classes, hp["activation"])


def trial_seed(study: Study, model: str, depth: int, trial: int) -> int:
    """A seed fixed by the trial's identity, so a resumed study redraws the same hyperparameters."""
    return int(np.random.SeedSequence([study.seed, MODELS.index(model), depth, trial]).generate_state(1)[0])


def _record_carry(carry: ResultStore, study, data, rule, depth, net, device, samples: int = CARRY_SAMPLES):
    """The fraction of the input that crosses each highway layer at initialization, measured on data."""
    carried = carried_fraction(net, data.x_train[:samples].to(device))
    bias = net.layers[0].gate_bias if len(net.layers) else float("nan")
    for layer, value in enumerate(carried, start=1):
        carry.append({"study": study.name, "dataset": data.name, "gate_rule": rule, "depth": depth, "layer": layer,
                      "gate_bias": bias, "carried": float(value)})


def _finished(rows, epochs: int) -> bool:
    """A trial is finished when it reached its last epoch or stopped (diverged)."""
    return len(rows) > 0 and (rows["epoch"].max() >= epochs or (rows["status"] != STATUS_OK).any())


def convergence_study(out, study: Study, device=None, progress: bool = True, overwrite: bool = False, argv=None,
                      deadline: float | None = None):
    """Run `study` into the results store in `out` (resuming, and sharing the work with any other run into
    `out`); returns the study's rows as a DataFrame. With a `deadline` (a `time.monotonic()` value), no
    trial starts after it; the rest are left for a re-run."""
    study.validate()
    out = Path(out)
    device = resolve_device(device)
    data = load_dataset(study.dataset, seed=study.seed, max_train=study.max_train)
    print(f"data: {data.name}, {len(data.x_train)} training and {len(data.x_val)} validation images")
    if study.dataset == "default" and data.name == "digits":
        print(FALLBACK_NOTE)
    with ResultStore(out, CONVERGE_FILE, CONVERGE_COLUMNS, CONVERGE_KEYS) as store, \
            ResultStore(out, CARRY_FILE, CARRY_COLUMNS, CARRY_KEYS) as carry:
        done = store.select(study=study.name, dataset=data.name)
        finished = set()
        if not overwrite:
            for (model, rule, depth, trial), rows in done.groupby(["model", "gate_rule", "depth", "trial"]):
                if _finished(rows, study.epochs):
                    finished.add((model, str(rule), int(depth), int(trial)))
        units = [(m, r, d, t) for d in study.depths for m, r in study.arms() for t in range(study.trials)]
        jobs = [u for u in units if u not in finished]
        if len(jobs) < len(units):
            print(f"{len(units) - len(jobs)} of {len(units)} trials already done in {out}"
                  + (f"; running the other {len(jobs)}" if jobs else ""))
        if jobs:
            env = environment(device, argv)
            store.record_run({**env, "study": asdict(study)})
            bar = progress_bar(total=len(jobs), enabled=progress, unit="trial")
            late = 0
            for chunk in _chunks(study, jobs):
                if deadline is not None and time.monotonic() > deadline:
                    late += len(chunk)
                    continue
                mine = []
                for model, rule, depth, trial in chunk:
                    unit = (study.name, data.name, model, rule, depth, trial)
                    if not store.claim(unit):
                        continue  # another run is training it
                    rows = store.select(study=study.name, dataset=data.name, model=model, gate_rule=rule,
                                        depth=depth, trial=trial)
                    if not overwrite and _finished(rows, study.epochs):
                        store.release(unit)
                        continue
                    mine.append((model, rule, depth, trial))
                if mine and hasattr(bar, "set_postfix_str"):
                    model, rule, depth, _ = mine[0]
                    bar.set_postfix_str(f"{model} ({rule}) depth {depth}, {len(mine)} trial(s)")
                try:
                    if len(mine) == 1:
                        _run_trial(out, store, carry, study, data, env, device, *mine[0], deadline)
                    elif mine:
                        _run_population(out, store, carry, study, data, env, device, mine, deadline)
                finally:
                    for model, rule, depth, trial in mine:
                        store.release((study.name, data.name, model, rule, depth, trial))
                if hasattr(bar, "update"):
                    bar.update(len(chunk))
            if hasattr(bar, "close"):
                bar.close()
            if late:
                print(f"{late} trials left for a re-run: the time budget ran out")
        df = store.select(study=study.name, dataset=data.name)
    return df


def trial_hyperparameters(study: Study, model: str, rule: str, depth: int, trial: int) -> tuple[int, dict]:
    """(seed, hyperparameters) of a trial: fixed by its identity, so a resumed study redraws them."""
    seed = trial_seed(study, model, depth, trial)
    hp = study.search.draw(model, np.random.default_rng(seed))
    if model == "highway":
        hp["gate_bias"] = gate_bias_for_rule(rule, depth, hp["gate_bias"])
    return seed, hp


def _chunks(study: Study, jobs: list) -> list[list]:
    """The jobs in the order given, cut into populations of at most `study.population` trials that share a
    (model, gate rule, depth, activation): the trials one Population can hold."""
    chunks, open_chunks = [], {}
    for job in jobs:
        model, rule, depth, trial = job
        key = (model, rule, depth, trial_hyperparameters(study, *job)[1]["activation"])
        chunk = open_chunks.get(key)
        if chunk is None or len(chunk) == study.population:
            chunk = open_chunks[key] = []
            chunks.append(chunk)
        chunk.append(job)
    return chunks


def _build(study, data, device, model, rule, depth, trial):
    seed, hp = trial_hyperparameters(study, model, rule, depth, trial)
    torch.manual_seed(seed)
    return seed, hp, build_net(model, depth, data, hp, study.backend).to(device)


def _row(study, data, env, model, rule, depth, trial, seed, hp, epoch, train_loss, val_loss, val_acc, seconds,
         status):
    return {
        "study": study.name, "dataset": data.name, "model": model, "gate_rule": rule, "depth": depth,
        "trial": trial, "epoch": epoch, "width": WIDTHS[model], **hp, "seed": seed, "batch": study.batch,
        "train_loss": train_loss, "val_loss": val_loss, "val_acc": val_acc, "seconds": seconds,
        "status": status, "backend": study.backend, "device": env["device"], "commit": env["commit"],
        "run_id": env["run_id"], "num_classes": data.num_classes,
    }


def _keep_if_best(out, data, model, rule, depth, trial, hp, net, final):
    meta = {"model": model, "gate_rule": rule, "depth": depth, "width": WIDTHS[model],
            "in_features": data.in_features, "num_classes": data.num_classes, "dataset": data.name,
            "trial": trial, **hp}
    save_if_best(out, meta, net.state_dict(), final)


def _run_trial(out, store, carry, study, data, env, device, model, rule, depth, trial, deadline=None):
    seed, hp, net = _build(study, data, device, model, rule, depth, trial)
    if model == "highway" and trial == 0:
        _record_carry(carry, study, data, rule, depth, net, device)
    final = math.inf
    for epoch, train_loss, val_loss, val_acc, seconds, status in train_trial(
            net, data, hp, study.epochs, study.batch, seed, device, deadline):
        store.append(_row(study, data, env, model, rule, depth, trial, seed, hp, epoch, train_loss, val_loss,
                          val_acc, seconds, status))
        final = train_loss if status == STATUS_OK else math.inf
    if math.isfinite(final) and epoch == study.epochs:  # a trial the deadline cut short is not a best
        _keep_if_best(out, data, model, rule, depth, trial, hp, net, final)


def _run_population(out, store, carry, study, data, env, device, jobs, deadline=None):
    """The trials of `jobs` (one model, gate rule, depth and activation) trained as one population."""
    built = [_build(study, data, device, *job) for job in jobs]
    for (model, rule, depth, trial), (_, _, net) in zip(jobs, built):
        if model == "highway" and trial == 0:
            _record_carry(carry, study, data, rule, depth, net, device)
    final = [math.inf] * len(jobs)
    epoch = 0
    population = stack_population([net for _, _, net in built]).to(device)
    population_rows = train_population(population, data, [hp for _, hp, _ in built], study.epochs, study.batch,
                                       [seed for seed, _, _ in built], device, deadline)
    for epoch, rows, seconds in population_rows:
        for p, ((model, rule, depth, trial), (seed, hp, _), row) in enumerate(zip(jobs, built, rows)):
            if row is None:
                continue
            train_loss, val_loss, val_acc, status = row
            store.append(_row(study, data, env, model, rule, depth, trial, seed, hp, epoch, train_loss, val_loss,
                              val_acc, seconds, status))
            final[p] = train_loss if status == STATUS_OK else math.inf
    if epoch != study.epochs:
        return  # the deadline cut the population short: no trial of it is a best yet
    for job, (_, hp, _), net, loss in zip(jobs, built, population.unstack(), final):
        if math.isfinite(loss):
            _keep_if_best(out, data, *job, hp, net, loss)
