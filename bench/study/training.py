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
