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
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from highway.bench.harness.cases import MATMUL_PRECISION, float32_precision
from highway.bench.harness.environment import environment, resolve_device, worker_identity
from highway.bench.harness.progress import progress_bar
from highway.bench.harness.store import ResultStore
from highway.bench.schema import CARRY_COLUMNS, CARRY_FILE, CARRY_KEYS, CONVERGE_COLUMNS, CONVERGE_FILE, \
    CONVERGE_KEYS, GATE_AUTO, GATE_SEARCH, MODELS, NO_GATE, STATUS_OK, STUDY_TIMES_FILE, parse_gate_rule
from highway.bench.study.checkpoints import save_if_best
from highway.bench.study.datasets import FALLBACK_NOTE, ImageData, load_dataset
from highway.bench.study.planning import describe_seconds, expected_seconds, population_that_fits
from highway.bench.study.training import train_population, train_trial
from highway.activations import check_activation
from highway.backends import BACKENDS as LAYER_BACKENDS
from highway.gate_bias import gate_bias_for_depth
from highway.gates import carried_fraction
from highway.models import highway_mlp, plain_mlp
from highway.population import stack_population

WIDTHS = {"highway": 50, "plain": 71}
AUTO = "auto"
PRECISIONS = tuple(MATMUL_PRECISION)  # the harness's fp32 dtypes: "fp32" (IEEE), "tf32", "tf32x3"


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
    # rule, depth, activation) group. 1 trains one trial after another; "auto" as many as fit in memory
    # (`highway.bench.study.planning`).
    population: int | str = AUTO
    # Validation images evaluated after every epoch (a seeded draw, the same for every trial); None: all.
    max_val: int | None = None
    # On a GPU, replay a population's training step as one captured CUDA graph (`GraphedPopulationStep`).
    cuda_graph: bool = True
    # The fp32 matmuls' precision, as the throughput harness names it (`highway.bench.harness.cases`): "fp32"
    # (IEEE, torch's default), "tf32", or "tf32x3" (our depth-fused stack's 3xTF32 dots, fp32's accuracy on the
    # tensor cores; torch's own matmuls in IEEE). Only a GPU tells them apart: the CPU computes all three in IEEE.
    precision: str = "fp32"

    def arms(self):
        """(model, gate rule) pairs: plain nets once, highway nets once per gate rule."""
        return [(m, r) for m in self.models for r in (self.gate_rules if m == "highway" else (NO_GATE,))]

    def validate(self):
        """ValueError naming the first bad setting, before any data is loaded or any net is built."""
        for name in ("trials", "epochs", "batch", "seed", "population"):
            value = getattr(self, name)
            if name == "population" and value == AUTO:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "seed" else 1):
                also = f" or {AUTO!r}" if name == "population" else ""
                raise ValueError(f"{name} must be a {'non-negative' if name == 'seed' else 'positive'} integer{also}, "
                                 f"got {value!r}")
        for name in ("max_train", "max_val"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
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
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        self.search.validate()


def gate_bias_for_rule(rule: str, depth: int, drawn: float) -> float:
    rule = parse_gate_rule(rule)
    if rule == GATE_SEARCH:
        return drawn
    if rule == GATE_AUTO:
        return gate_bias_for_depth(max(depth - 1, 1))
    return float(rule)


PAPER_DEPTHS = (10, 20, 50, 100)  # the paper's: a plain first layer and 9, 19, 49 or 99 further layers
PRESETS = {
    # A 2-core CPU in a few minutes: four depths, three trials each, four epochs on 6000 images.
    "quick": Study("quick"),
    # The paper's protocol (NIPS 2015, section 3.1): thin nets, a plain first layer, 100 random-search trials
    # per (model, depth), SGD with momentum and exponential learning-rate decay, at the paper's depths and
    # beyond (200, 500, 1000). The paper states neither a horizon nor the search ranges: the ranges are
    # SearchSpace's, and the horizon, 100 epochs of the whole training set, is ours: the claims table says
    # whether it was long enough for the shallow plain nets to reach the paper's loss of 1e-4.
    "paper": Study("paper", depths=PAPER_DEPTHS + (200, 500, 1000), trials=100, epochs=100, batch=64,
                   max_train=None),
    # The paper's protocol cut to about an hour on a 2-core CPU, with populations. Kept: the nets, the depths
    # 10-100, both models, the search and its ranges, SGD with momentum and decay, batch 64, the training
    # loss over the whole training set after every epoch. Cut: 30 trials instead of 100, 6000 training
    # images instead of all, 50 epochs, 2000 validation images, no depth past 100.
    "paper-cpu": Study("paper-cpu", depths=PAPER_DEPTHS, trials=30, epochs=50, batch=64, max_train=6000,
                       max_val=2000),
    # The gate-bias comparison: no search. Plain, highway with the fixed default −2, highway with the depth rule,
    # all with one learning rate and momentum, at the paper's depths and beyond.
    "gate-bias": Study("gate-bias", depths=PAPER_DEPTHS + (200, 500, 1000), trials=1, epochs=2, max_train=6000,
                       gate_rules=("-2", "auto"),
                       search=SearchSpace(fixed={"lr": 0.01, "momentum": 0.9, "decay": 1.0, "activation": "relu"})),
}

# The paper's protocol whole at its depths 10-100 (100 trials a net, every training image, 100 epochs) on
# scikit-learn's bundled digits, 1438 training images of 8x8, which a 2-core CPU trains in about an hour with
# populations: a dataset small enough for the shallow plain nets to reach the paper's loss of 1e-4 there, so
# that the claims `paper-cpu`'s budget leaves untested are tested, on a smaller dataset than the paper's.
PRESETS["paper-digits"] = replace(PRESETS["paper"], name="paper-digits", dataset="digits", depths=PAPER_DEPTHS)


def build_net(model: str, depth: int, data: ImageData, hp: dict, backend: str):
    if model == "highway":
        return highway_mlp(data.in_features, WIDTHS["highway"], depth, data.num_classes, hp["activation"],
                           hp["gate_bias"], backend)
    return plain_mlp(data.in_features, WIDTHS["plain"], depth, data.num_classes, hp["activation"])


def trial_seed(study: Study, model: str, depth: int, trial: int) -> int:
    """A seed fixed by the trial's identity, so a resumed study redraws the same hyperparameters."""
    return int(np.random.SeedSequence([study.seed, MODELS.index(model), depth, trial]).generate_state(1)[0])


def _carry_rows(study, data, rule, depth, net, device, samples: int = CARRY_SAMPLES) -> list[dict]:
    """The fraction of the input that crosses each highway layer at initialization, measured on data."""
    carried = carried_fraction(net, data.x_train[:samples].to(device))
    bias = net.layers[0].gate_bias if len(net.layers) else float("nan")
    return [{"study": study.name, "dataset": data.name, "gate_rule": rule, "depth": depth, "layer": layer,
             "gate_bias": bias, "carried": float(value)} for layer, value in enumerate(carried, start=1)]


def trial_finished(rows, epochs: int) -> bool:
    """A trial is finished when it reached its last epoch or stopped (diverged)."""
    return len(rows) > 0 and (rows["epoch"].max() >= epochs or (rows["status"] != STATUS_OK).any())


def _population_sizes(study: Study, data: ImageData, device):
    """(model, depth) → how many trials train at once: the study's number, or with "auto" as many as fit."""
    def size(model: str, depth: int) -> int:
        if study.population != AUTO:
            return study.population
        return population_that_fits(model, depth, WIDTHS[model], data.in_features, data.num_classes, study.batch,
                                    study.trials, device)
    return size


def expected_study_seconds(study: Study, device, data: ImageData | None = None, population_for=None) -> float:
    """How long `study` should take on `device`, at its precision, with the population sizes it would use
    (`population_for`, or worked out here): timed on a few steps and extrapolated
    (`highway.bench.study.planning.expected_seconds`)."""
    device = resolve_device(device)
    data = data or study_data(study.dataset, study.seed, study.max_train, study.max_val)
    population_for = population_for or _population_sizes(study, data, device)
    with float32_precision(study.precision):
        return expected_seconds(study, data, device, population_for, WIDTHS)


def convergence_study(out, study: Study, device=None, progress: bool = True, overwrite: bool = False, argv=None,
                      deadline: float | None = None, estimate: bool = False, executor=None, dry_run: bool = False):
    """Run `study` into the results store in `out` (resuming, and sharing the work with any other run into
    `out`); returns the study's rows as a DataFrame. With a `deadline` (a `time.monotonic()` value), no
    trial starts after it; the rest are left for a re-run. With `estimate`, it first prints how long the
    whole study should take on this machine; with `dry_run` it prints that alone, and trains and writes
    nothing (an empty DataFrame). `executor` (`highway.bench.harness.executors`; default local)
    says where population chunks train; this process alone writes the store."""
    from highway.bench.harness.executors import LocalExecutor

    executor = executor or LocalExecutor()
    study.validate()
    out = Path(out)
    device = resolve_device(device)
    data = study_data(study.dataset, study.seed, study.max_train, study.max_val)
    print(f"data: {data.name}, {len(data.x_train)} training and {len(data.x_val)} validation images")
    if study.dataset == "default" and data.name == "digits":
        print(FALLBACK_NOTE)
    population_for = _population_sizes(study, data, device)
    if estimate or dry_run:
        seconds = expected_study_seconds(study, device, data, population_for)
        print(f"expected time on this machine: about {describe_seconds(seconds)} for all "
              f"{len(study.arms()) * len(study.depths) * study.trials} trials (measured on a few steps; "
              f"finished trials in {out} are not subtracted)")
    if dry_run:
        return pd.DataFrame()
    with ResultStore(out, CONVERGE_FILE, CONVERGE_COLUMNS, CONVERGE_KEYS) as store, \
            ResultStore(out, CARRY_FILE, CARRY_COLUMNS, CARRY_KEYS) as carry:
        finished = set() if overwrite else _finished_trials(store, study, data)
        units = [(m, r, d, t) for d in study.depths for m, r in study.arms() for t in range(study.trials)]
        jobs = [u for u in units if u not in finished]
        if len(jobs) < len(units):
            print(f"{len(units) - len(jobs)} of {len(units)} trials already done in {out}"
                  + (f"; running the other {len(jobs)}" if jobs else ""))
        if jobs:
            started = time.monotonic()
            env = environment(device, argv)
            store.record_run({**env, "study": asdict(study), "executor": executor.describe()})
            bar = progress_bar(total=len(jobs), enabled=progress, unit="trial")
            run = {"commit": env["commit"], "run_id": env["run_id"]}
            worker_device = str(device) if executor.name == "local" else None
            claimed = set()

            def take(chunk):
                mine = []
                for model, rule, depth, trial in chunk:
                    unit = (study.name, data.name, model, rule, depth, trial)
                    if not store.claim(unit):
                        continue  # another run is training it
                    rows = store.select(study=study.name, dataset=data.name, model=model, gate_rule=rule,
                                        depth=depth, trial=trial)
                    if not overwrite and trial_finished(rows, study.epochs):
                        store.release(unit)
                        continue
                    mine.append((model, rule, depth, trial))
                if not mine:
                    if hasattr(bar, "update"):
                        bar.update(len(chunk))
                    return None
                if len(mine) < len(chunk) and hasattr(bar, "update"):
                    bar.update(len(chunk) - len(mine))  # the others are another run's
                work = ChunkWork(study, tuple(mine), worker_device, run, _wall_clock(deadline))
                claimed.add(work)
                if hasattr(bar, "set_postfix_str"):
                    model, rule, depth, _ = mine[0]
                    bar.set_postfix_str(f"{model} ({rule}) depth {depth}, {len(mine)} trial(s)")
                return work

            try:
                for outcome in executor.run(train_chunk, _chunks(study, jobs, population_for), take, deadline):
                    work = outcome.unit
                    if outcome.error is not None:
                        print(f"{len(work.jobs)} trial(s) of {work.jobs[0][:3]} left for a re-run: {outcome.error}")
                    else:
                        result = outcome.result
                        for row in result.rows:
                            store.append(row)
                        for row in result.carry:
                            carry.append(row)
                        for job, hp, state, loss in result.finals:
                            _keep_if_best(out, study, data, *job, hp, state, loss)
                    for model, rule, depth, trial in work.jobs:
                        store.release((study.name, data.name, model, rule, depth, trial))
                    claimed.discard(work)
                    if hasattr(bar, "update"):
                        bar.update(len(work.jobs))
            finally:
                for work in claimed:  # in flight when Ctrl-C or an error struck: left for a re-run
                    for model, rule, depth, trial in work.jobs:
                        store.release((study.name, data.name, model, rule, depth, trial))
                if hasattr(bar, "close"):
                    bar.close()
                done = _finished_trials(store, study, data)  # also after Ctrl-C: a stopped run's time counts too
                left = sum(1 for job in jobs if job not in done)
                _record_time(out, study, data, env, time.monotonic() - started, len(jobs) - left,
                             sum(u in done for u in units), len(units))
            if deadline is not None and left:
                print(f"{left} trials left for a re-run: the time budget ran out")
        df = store.select(study=study.name, dataset=data.name)
    return df


def _record_time(out: Path, study: Study, data, env: dict, elapsed: float, trained: int, finished: int, total: int):
    """One line of STUDY_TIMES_FILE: how long this run took and how far the study got, for the claims about a
    study's wall time (a study resumed over several runs is the sum of its runs)."""
    record = {"run_id": env["run_id"], "timestamp": env["timestamp"], "study": study.name, "dataset": data.name,
              "device": env["device"], "device_type": env["device_type"], "depths": list(study.depths),
              "models": list(study.models), "trials": study.trials, "epochs": study.epochs,
              "elapsed_s": elapsed, "trained": trained, "finished": finished, "total": total}
    with open(out / STUDY_TIMES_FILE, "a") as f:
        f.write(json.dumps(record) + "\n")


def trial_hyperparameters(study: Study, model: str, rule: str, depth: int, trial: int) -> tuple[int, dict]:
    """(seed, hyperparameters) of a trial: fixed by its identity, so a resumed study redraws them."""
    seed = trial_seed(study, model, depth, trial)
    hp = study.search.draw(model, np.random.default_rng(seed))
    if model == "highway":
        hp["gate_bias"] = gate_bias_for_rule(rule, depth, hp["gate_bias"])
    return seed, hp


def _chunks(study: Study, jobs: list, population_for) -> list[list]:
    """The jobs in the order given, cut into populations of at most `population_for(model, depth)` trials
    that share a (model, gate rule, depth, activation): the trials one Population can hold."""
    chunks, open_chunks = [], {}
    for job in jobs:
        model, rule, depth, trial = job
        key = (model, rule, depth, trial_hyperparameters(study, *job)[1]["activation"])
        chunk = open_chunks.get(key)
        if chunk is None or len(chunk) == population_for(model, depth):
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
        "run_id": env["run_id"], "num_classes": data.num_classes, "host": env.get("host"),
    }


def _keep_if_best(out, study, data, model, rule, depth, trial, hp, state_dict, final):
    # the study, its trials and epochs: what a claim about the trained net (a lesion) rests on
    meta = {"model": model, "gate_rule": rule, "depth": depth, "width": WIDTHS[model],
            "in_features": data.in_features, "num_classes": data.num_classes, "dataset": data.name,
            "trial": trial, **hp, "study": study.name, "trials": study.trials, "epochs": study.epochs,
            "max_train": study.max_train, "data_seed": study.seed}  # and the images it was trained on
    save_if_best(out, meta, state_dict, final)


def study_data(dataset: str, seed: int, max_train: int | None, max_val: int | None) -> ImageData:
    """A study's data, loaded once per process (the driver's, or a Ray worker's)."""
    key = (dataset, seed, max_train, max_val)
    if key not in _DATA:
        data = load_dataset(dataset, seed=seed, max_train=max_train)
        if max_val is not None:
            data = replace(data, x_val=data.x_val[:max_val], y_val=data.y_val[:max_val])
        _DATA.clear()  # one study's data at a time
        _DATA[key] = data
    return _DATA[key]


_DATA: dict = {}


@dataclass(frozen=True, eq=False)
class ChunkWork:
    """A unit of a convergence search: trials of one (model, gate rule, depth, activation), trained together
    (one population, or one trial), wherever the executor runs them."""
    study: Study
    jobs: tuple  # (model, gate rule, depth, trial) each
    device: str | None  # None: the worker's own (its GPU on Ray, else its CPU)
    run: dict  # the driver's commit and run id, for the rows
    deadline: float | None  # wall-clock (time.time()) seconds: comparable on every machine


@dataclass
class ChunkResult:
    rows: list  # converge rows, every epoch of every trial
    carry: list  # carry rows of the trials that measure it (trial 0 of a highway arm)
    finals: list  # (job, hyperparameters, state_dict, final loss) of the trials that reached the last epoch


def _wall_clock(deadline: float | None) -> float | None:
    return None if deadline is None else time.time() + (deadline - time.monotonic())


def _finished_trials(store, study, data) -> set:
    """(model, gate rule, depth, trial) of every trial of `study` the store holds finished."""
    rows = store.select(study=study.name, dataset=data.name)
    return {(m, str(r), int(d), int(t)) for (m, r, d, t), g in rows.groupby(["model", "gate_rule", "depth", "trial"])
            if trial_finished(g, study.epochs)}


def train_chunk(work: ChunkWork) -> ChunkResult:
    """Train the trials of `work` (as one population when there are several) and return their rows; writes
    nothing. Top level and free of the store, so that a Ray worker can run it."""
    study = work.study
    device = resolve_device(work.device)
    data = study_data(study.dataset, study.seed, study.max_train, study.max_val)
    deadline = None if work.deadline is None else time.monotonic() + (work.deadline - time.time())
    env = {**work.run, **worker_identity(device)}
    built = [_build(study, data, device, *job) for job in work.jobs]
    carry = [row for (model, rule, depth, trial), (_, _, net) in zip(work.jobs, built)
             if model == "highway" and trial == 0 for row in _carry_rows(study, data, rule, depth, net, device)]
    rows, final, epoch = [], [math.inf] * len(work.jobs), 0
    if len(work.jobs) == 1:
        seed, hp, net = built[0]
        epochs = ((epoch, [(train_loss, val_loss, val_acc, status)], seconds)
                  for epoch, train_loss, val_loss, val_acc, seconds, status in
                  train_trial(net, data, hp, study.epochs, study.batch, seed, device, deadline))
        nets = lambda: [net]  # noqa: E731
    else:
        population = stack_population([net for _, _, net in built]).to(device)
        epochs = train_population(population, data, [hp for _, hp, _ in built], study.epochs, study.batch,
                                  [seed for seed, _, _ in built], device, deadline, study.cuda_graph)
        nets = population.unstack
    with float32_precision(study.precision):  # the epochs train as they are drawn, in here
        for epoch, epoch_rows, seconds in epochs:
            for p, (job, (seed, hp, _), row) in enumerate(zip(work.jobs, built, epoch_rows)):
                if row is None:
                    continue
                train_loss, val_loss, val_acc, status = row
                rows.append(_row(study, data, env, *job, seed, hp, epoch, train_loss, val_loss, val_acc, seconds,
                                 status))
                final[p] = train_loss if status == STATUS_OK else math.inf
    finals = []
    if epoch == study.epochs:  # a chunk the deadline cut short has no best yet
        finals = [(job, hp, {k: v.detach().cpu() for k, v in net.state_dict().items()}, loss)
                  for job, (_, hp, _), net, loss in zip(work.jobs, built, nets(), final) if math.isfinite(loss)]
    return ChunkResult(rows, carry, finals)
