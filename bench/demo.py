"""A first look: train a plain and a highway net of the same depth on scikit-learn's digits, print both losses.

    python -m bench.demo --depth 50 --steps 300 --gate-bias -4
"""
import argparse
import time

import torch
import torch.nn.functional as F

from highway import highway_mlp, plain_mlp


def load_digits_tensors():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    return (x - x.mean(0)) / (x.std(0) + 1e-3), torch.tensor(data.target)


def train_losses(net, x, y, steps, lr, batch=64, seed=0):
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return F.cross_entropy(net(x), y).item()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--gate-bias", type=float, default=-4.0,
                        help="transform-gate bias; the FAQ: lower it until a deep net trains (-2 stalls at depth 50)")
    args = parser.parse_args(argv)
    x, y = load_digits_tensors()
    print(f"digits: {len(x)} images of 8x8; depth {args.depth}; SGD momentum 0.9, lr {args.lr}, {args.steps} steps")
    for name, build in (("plain", lambda: plain_mlp(64, 71, args.depth, 10)),
                        ("highway", lambda: highway_mlp(64, 50, args.depth, 10, gate_bias=args.gate_bias))):
        torch.manual_seed(0)
        start = time.perf_counter()
        loss = train_losses(build(), x, y, args.steps, args.lr)
        print(f"{name:8s} training cross-entropy {loss:.4f}  ({time.perf_counter() - start:.1f}s, CPU)")


if __name__ == "__main__":
    main()
