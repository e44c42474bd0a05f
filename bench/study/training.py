"""Training and evaluating one net with SGD: the loop the convergence study runs for every trial."""
import math
import time

import torch
import torch.nn.functional as F

from highway.bench.schema import STATUS_DIVERGED, STATUS_OK
from highway.bench.study.datasets import ImageData

EVAL_BATCH = 2048  # rows per forward pass when measuring a loss over a whole split: bounds activation memory


@torch.no_grad()
def evaluate(net, x, y, batch: int = EVAL_BATCH) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over the whole of x, y."""
    total, correct = 0.0, 0
    for i in range(0, len(x), batch):
        logits = net(x[i:i + batch]).float()
        total += F.cross_entropy(logits, y[i:i + batch], reduction="sum").item()
        correct += (logits.argmax(1) == y[i:i + batch]).sum().item()
    return total / len(x), correct / len(x)


def train_trial(net, data: ImageData, hp: dict, epochs: int, batch: int, seed: int, device,
                deadline: float | None = None):
    """Train with SGD + momentum and per-epoch exponential decay; yield (epoch, train_loss, val_loss, val_acc,
    seconds, status) for epoch 0 (initialization) through `epochs`, stopping early when the loss diverges,
    or after the epoch in which `deadline` (a `time.monotonic()` value) passed: an unfinished trial, which a
    resumed study runs again."""
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_val, y_val = data.x_val.to(device), data.y_val.to(device)
    opt = torch.optim.SGD(net.parameters(), lr=hp["lr"], momentum=hp["momentum"])
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=hp["decay"])
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    train_loss, _ = evaluate(net, x_train, y_train)
    val_loss, val_acc = evaluate(net, x_val, y_val)
    yield 0, train_loss, val_loss, val_acc, 0.0, STATUS_OK if math.isfinite(train_loss) else STATUS_DIVERGED
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
        yield epoch, train_loss, val_loss, val_acc, time.perf_counter() - start, \
            STATUS_DIVERGED if diverged else STATUS_OK
        if diverged or (deadline is not None and time.monotonic() > deadline):
            return


@torch.no_grad()
def evaluate_population(population, x, y, batch: int = EVAL_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean cross-entropy, accuracy) of every trial over the whole of x, y: two (P,) tensors."""
    total = torch.zeros(population.trials, device=x.device)
    correct = torch.zeros(population.trials, device=x.device)
    for i in range(0, len(x), batch):
        logits = population(x[i:i + batch]).float()  # (P, b, C)
        target = y[i:i + batch].expand(population.trials, -1)
        total += F.cross_entropy(logits.transpose(1, 2), target, reduction="none").sum(1)
        correct += (logits.argmax(-1) == target).sum(1)
    return total / len(x), correct / len(x)


def population_step(population, opt, x, y, diverged: torch.Tensor):
    """One SGD step of every live trial on its own batch, x (P, b, ...) and y (P, b). A trial whose loss is
    not finite is frozen before the update, as `train_trial` does not take the step that diverged, and
    marked in `diverged` (P,). It never asks the device for a value (tested on a GPU), so the host can run
    ahead of it."""
    losses = F.cross_entropy(population(x).transpose(1, 2), y, reduction="none").mean(1)
    bad = ~torch.isfinite(losses) & opt.active
    diverged |= bad
    opt.freeze_(bad)
    opt.zero_grad(set_to_none=True)
    torch.where(opt.active, losses, 0.0).sum().backward()
    opt.step()


GRAPH_WARMUP_STEPS = 3  # eager steps before capture: autotuning, cuBLAS handles, momentum buffers


class GraphedPopulationStep:
    """`population_step` on full batches captured once as a CUDA graph and replayed: a step is then one index
    copy and one replay, however many layers and launches it holds, so that the host's cost per launch (5 to
    10 µs of Python and dispatch, several hundred launches a step for a plain net of depth 100) leaves the
    step. The graph gathers each trial's batch itself from `x_train` (flattened) and `y_train`, through a
    static index buffer. Build it after a few eager steps on a side stream (`warm_up_and_capture`)."""

    def __init__(self, population, opt, flat, y_train, trials: int, batch: int, diverged: torch.Tensor):
        self.idx = torch.zeros(trials, batch, dtype=torch.long, device=flat.device)
        self.graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)  # the graph's backward then owns the gradients it writes
        with torch.cuda.graph(self.graph):
            population_step(population, opt, flat[self.idx], y_train[self.idx], diverged)

    def __call__(self, idx: torch.Tensor):
        self.idx.copy_(idx)
        self.graph.replay()


def warm_up_and_capture(population, opt, flat, y_train, batches: list, diverged: torch.Tensor):
    """Run `batches` (index tensors (P, b)) as eager steps on a side stream, as CUDA graph capture asks, then
    capture the step; the graphed step, or None (said once, with why) when capture fails, so that training
    goes on eagerly."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for idx in batches:
            population_step(population, opt, flat[idx], y_train[idx], diverged)
    torch.cuda.current_stream().wait_stream(side)
    try:
        return GraphedPopulationStep(population, opt, flat, y_train, *batches[0].shape, diverged)
    except Exception as e:  # a speed-up, never a requirement
        import warnings

        warnings.warn(f"CUDA graph capture of the population step failed ({type(e).__name__}: {e}); training "
                      f"eagerly", stacklevel=2)
        return None


def train_population(population, data: ImageData, hps: list[dict], epochs: int, batch: int, seeds: list[int],
                     device, deadline: float | None = None, cuda_graph: bool = True):
    """`train_trial` for a `Population` of P nets (`highway.population`), trained in place: each trial keeps its own
    learning rate, momentum, decay and minibatch order (its seed), so it ends where it would alone. Yields
    (epoch, train_loss, val_loss, val_acc, seconds, status) with (P,)-long lists for epoch 0 through
    `epochs`; a trial whose loss turns non-finite is frozen at that step, reported diverged once, and its
    later entries are None. On a GPU with `cuda_graph`, full-batch steps after the first few replay one
    captured CUDA graph (`GraphedPopulationStep`): the same ops, without the host's cost per launch."""
    from highway.population import PopulationSGD

    trials = population.trials
    opt = PopulationSGD(population.parameters(), [hp["lr"] for hp in hps], [hp["momentum"] for hp in hps])
    decay = torch.tensor([hp["decay"] for hp in hps], device=device)
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_val, y_val = data.x_val.to(device), data.y_val.to(device)
    flat = x_train.reshape(len(x_train), -1)
    reported = [False] * trials  # a diverged trial is reported once, then left out
    began = time.perf_counter()

    def epoch_rows(epoch, diverged):
        train_loss, _ = evaluate_population(population, x_train, y_train)
        val_loss, val_acc = evaluate_population(population, x_val, y_val)
        rows = [None] * trials
        for p in range(trials):
            if reported[p]:
                continue
            bad = bool(diverged[p]) or not math.isfinite(float(train_loss[p]))
            rows[p] = (float(train_loss[p]), float(val_loss[p]), float(val_acc[p]),
                       STATUS_DIVERGED if bad else STATUS_OK)
            if bad:
                reported[p] = True
                opt.freeze_(torch.arange(trials, device=device) == p)
        return epoch, rows, time.perf_counter() - began

    yield epoch_rows(0, [False] * trials)
    diverged = torch.zeros(trials, dtype=torch.bool, device=device)  # one buffer: a captured graph writes it
    graphed, warm_up = None, cuda_graph and torch.device(device).type == "cuda"
    for epoch in range(1, epochs + 1):
        diverged.zero_()
        # Each trial's minibatch order for the epoch, moved to the device once: a step then only slices it.
        # Nothing in a step asks the device for a value, so on a GPU the host runs ahead, queueing launches.
        orders = torch.stack([torch.randperm(len(x_train), generator=g) for g in generators]).to(device)
        offsets = range(0, len(x_train), batch)
        if warm_up and len(offsets) > GRAPH_WARMUP_STEPS:
            first = [orders[:, o:o + batch] for o in offsets[:GRAPH_WARMUP_STEPS]]
            graphed, warm_up = warm_up_and_capture(population, opt, flat, y_train, first, diverged), False
            offsets = offsets[GRAPH_WARMUP_STEPS:]
        for offset in offsets:
            idx = orders[:, offset:offset + batch]  # (P, b): each trial's own batch
            if graphed is not None and idx.shape[1] == batch:
                graphed(idx)
            else:  # the last, partial batch; or no graph
                population_step(population, opt, flat[idx], y_train[idx], diverged)
        opt.decay_lr_(decay)
        yield epoch_rows(epoch, diverged.tolist())
        if all(reported) or (deadline is not None and time.monotonic() > deadline):
            return
