"""The paper's optimization experiment (NIPS 2015, section 3.1, Figure 1): plain vs highway nets of growing
depth, SGD with momentum and an exponentially decaying learning rate, a random search per net.

Nets: a plain first layer (input → width), then depth − 1 highway layers of width 50 or plain layers of
width 71 (≈ 5000 parameters a layer each), then a softmax layer. A random search draws, per trial, the
initial learning rate, momentum, the per-epoch decay factor, the activation (relu or tanh) and, for highway
nets, the transform-gate bias in [−10, −1]. The measure is the cross-entropy on the training set.

Every trial writes one row per epoch (epoch 0 is the net at initialization) to `converge.csv` as it goes;
a re-run resumes, skipping finished trials. The best trial per (model, depth) keeps its checkpoint in
`checkpoints/` for `highway-bench analyze`.
"""
import json
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from bench.datasets import ImageData, load_dataset
from bench.environment import environment
from bench.progress import progress_bar
from bench.store import ResultStore
from highway.gate_bias import gate_bias_for_depth
from highway.models import highway_mlp, plain_mlp

CONVERGE_FILE = "converge.csv"
KEY_COLUMNS = ["study", "dataset", "model", "gate_rule", "depth", "trial", "epoch"]
COLUMNS = KEY_COLUMNS + [
    "width", "activation", "gate_bias", "lr", "momentum", "decay", "seed", "batch", "train_loss", "val_loss",
    "val_acc", "seconds", "status", "backend", "device", "commit", "run_id",
]
WIDTHS = {"highway": 50, "plain": 71}


@dataclass
class SearchSpace:
    """Ranges of the random search; each trial draws from them with its own seed."""
    lr: tuple = (1e-3, 1e-1)  # log-uniform
    momentum: tuple = (0.8, 0.99)  # 1 − momentum log-uniform
    decay: tuple = (0.9, 1.0)  # uniform; the learning rate is multiplied by it after every epoch
    activation: tuple = ("relu", "tanh")
    gate_bias: tuple = (-10.0, -1.0)  # uniform, highway nets only
    fixed: dict = field(default_factory=dict)  # values that override the draw, e.g. {"gate_bias": -2.0}

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
    gate_rules: tuple = ("search",)

    def arms(self):
        """(model, gate rule) pairs: plain nets once, highway nets once per gate rule."""
        return [(m, r) for m in self.models for r in (self.gate_rules if m == "highway" else ("none",))]


def gate_bias_for_rule(rule: str, depth: int, drawn: float) -> float:
    if rule == "search":
        return drawn
    if rule == "auto":
        return gate_bias_for_depth(max(depth - 1, 1))
    try:
        return float(rule)
    except ValueError:
        raise ValueError(f"gate rule must be 'search', 'auto' or a number, got {rule!r}") from None


PRESETS = {
    # A 2-core CPU in a few minutes: four depths, three trials each, four epochs on 6000 images.
    "quick": Study("quick"),
    # The paper's protocol: 100 random-search trials per net (the NIPS paper's count; the workshop paper used
    # 40) at its depths and beyond. The paper states no epoch count or ranges; these are ours.
    "paper": Study("paper", depths=(10, 20, 50, 100, 200, 500, 1000), trials=100, epochs=400, batch=64,
                   max_train=None),
    # Issue 7's comparison: no search. Plain, highway with the fixed default −2, highway with the depth rule,
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


@torch.no_grad()
def evaluate(net, x, y, batch: int = 2048) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over the whole of x, y."""
    total, correct = 0.0, 0
    for i in range(0, len(x), batch):
        logits = net(x[i:i + batch]).float()
        total += F.cross_entropy(logits, y[i:i + batch], reduction="sum").item()
        correct += (logits.argmax(1) == y[i:i + batch]).sum().item()
    return total / len(x), correct / len(x)


def train_trial(net, data: ImageData, hp: dict, epochs: int, batch: int, seed: int, device):
    """Train with SGD + momentum and per-epoch exponential decay; yield (epoch, train_loss, val_loss, val_acc,
    seconds, status) for epoch 0 (initialization) through `epochs`, stopping early when the loss diverges."""
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_val, y_val = data.x_val.to(device), data.y_val.to(device)
    opt = torch.optim.SGD(net.parameters(), lr=hp["lr"], momentum=hp["momentum"])
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=hp["decay"])
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    train_loss, _ = evaluate(net, x_train, y_train)
    val_loss, val_acc = evaluate(net, x_val, y_val)
    yield 0, train_loss, val_loss, val_acc, 0.0, "ok" if math.isfinite(train_loss) else "diverged"
    for epoch in range(1, epochs + 1):
        diverged = False
        for idx in torch.randperm(len(x_train), generator=g).split(batch):
            idx = idx.to(device)
            loss = F.cross_entropy(net(x_train[idx]), y_train[idx])
            if not torch.isfinite(loss):
                diverged = True
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        train_loss, _ = evaluate(net, x_train, y_train)
        val_loss, val_acc = evaluate(net, x_val, y_val)
        diverged = diverged or not math.isfinite(train_loss)
        yield epoch, train_loss, val_loss, val_acc, time.perf_counter() - start, "diverged" if diverged else "ok"
        if diverged:
            return


def trial_seed(study: Study, model: str, depth: int, trial: int) -> int:
    """A seed fixed by the trial's identity, so a resumed study redraws the same hyperparameters."""
    return int(np.random.SeedSequence([study.seed, ["plain", "highway"].index(model), depth, trial]).generate_state(1)[0])


def _save_if_best(out, arm, depth, data, hp, net, final_loss, trial):
    directory = out / "checkpoints"
    directory.mkdir(parents=True, exist_ok=True)
    index_path = directory / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    name = f"{data.name}-{arm}-d{depth}"
    if name in index and not final_loss < index[name]["train_loss"]:
        return
    model = arm.split("-")[0]
    meta = {"model": model, "arm": arm, "depth": depth, "width": WIDTHS[model], "in_features": data.in_features,
            "num_classes": data.num_classes, "dataset": data.name, "trial": trial, "train_loss": final_loss, **hp}
    torch.save({"meta": meta, "state_dict": {k: v.cpu() for k, v in net.state_dict().items()}}, directory / f"{name}.pt")
    index[name] = meta
    index_path.write_text(json.dumps(index, indent=1))


CARRY_FILE = "carry.csv"
CARRY_KEYS = ["study", "dataset", "gate_rule", "depth", "layer"]


def _record_carry(out, study, data, rule, depth, net, device, samples: int = 1000):
    """The fraction of the input that crosses each highway layer at initialization, measured on data."""
    from bench.analysis import carried_fraction

    store = ResultStore(out, CARRY_FILE, CARRY_KEYS + ["gate_bias", "carried"], CARRY_KEYS)
    carried = carried_fraction(net, data.x_train[:samples].to(device))
    bias = net.layers[0].gate_bias if len(net.layers) else float("nan")
    for layer, value in enumerate(carried, start=1):
        store.append({"study": study.name, "dataset": data.name, "gate_rule": rule, "depth": depth, "layer": layer,
                      "gate_bias": bias, "carried": float(value)})


def convergence_study(out, study: Study, device=None, progress: bool = True, overwrite: bool = False, argv=None):
    """Run `study` into `out/converge.csv` (resuming); returns the study's rows as a DataFrame."""
    from pathlib import Path

    out = Path(out)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    data = load_dataset(study.dataset, seed=study.seed, max_train=study.max_train)
    store = ResultStore(out, CONVERGE_FILE, COLUMNS, KEY_COLUMNS)
    env = environment(device, argv)
    store.record_run({**env, "study": asdict(study)})
    done = store.read()
    finished = set()
    if not overwrite and not done.empty:
        last = done[(done["study"] == study.name) & (done["dataset"] == data.name)]
        for (model, rule, depth, trial), rows in last.groupby(["model", "gate_rule", "depth", "trial"]):
            if rows["epoch"].max() >= study.epochs or (rows["status"] != "ok").any():
                finished.add((model, str(rule), int(depth), int(trial)))
    jobs = [(m, r, d, t) for d in study.depths for m, r in study.arms() for t in range(study.trials)
            if (m, r, d, t) not in finished]
    bar = progress_bar(jobs, progress, "trial")
    for model, rule, depth, trial in bar:
        seed = trial_seed(study, model, depth, trial)
        hp = study.search.draw(model, np.random.default_rng(seed))
        if model == "highway":
            hp["gate_bias"] = gate_bias_for_rule(rule, depth, hp["gate_bias"])
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(f"{model} ({rule}) depth {depth} trial {trial}")
        torch.manual_seed(seed)
        net = build_net(model, depth, data, hp, study.backend).to(device)
        if model == "highway" and trial == 0:
            _record_carry(out, study, data, rule, depth, net, device)
        final = math.inf
        for epoch, train_loss, val_loss, val_acc, seconds, status in train_trial(
                net, data, hp, study.epochs, study.batch, seed, device):
            store.append({
                "study": study.name, "dataset": data.name, "model": model, "gate_rule": rule, "depth": depth,
                "trial": trial,
                "epoch": epoch, "width": WIDTHS[model], **hp, "seed": seed, "batch": study.batch,
                "train_loss": train_loss, "val_loss": val_loss, "val_acc": val_acc, "seconds": seconds,
                "status": status, "backend": study.backend, "device": env["device"], "commit": env["commit"],
                "run_id": env["run_id"],
            })
            final = train_loss if status == "ok" else math.inf
        if math.isfinite(final):
            _save_if_best(out, model if rule in ("none", "search") else f"{model}-bias{rule}", depth, data, hp,
                          net, final, trial)
    df = store.read()
    return df[(df["study"] == study.name) & (df["dataset"] == data.name)].reset_index(drop=True)


def arm_names(df):
    """'plain', 'highway' (searched gate bias) or 'highway (gate bias auto)' / '(gate bias -2)' per row."""
    return [m if r in ("none", "search") else f"{m} (gate bias {r})" for m, r in zip(df["model"], df["gate_rule"])]


def best_runs(df):
    """Per (arm, depth): the final training loss of the best trial and the mean of the top 10 trials."""
    df = df.assign(model=arm_names(df))
    final = df.sort_values("epoch").groupby(["model", "depth", "trial"]).tail(1)
    final = final[final["status"] == "ok"]
    rows = []
    for (model, depth), g in final.groupby(["model", "depth"]):
        losses = np.sort(g["train_loss"].to_numpy())
        rows.append({"model": model, "depth": int(depth), "best_loss": float(losses[0]),
                     "top10_mean_loss": float(losses[:10].mean()), "trials": int(len(losses)),
                     "best_trial": int(g.loc[g["train_loss"].idxmin(), "trial"])})
    import pandas as pd

    return pd.DataFrame(rows)
