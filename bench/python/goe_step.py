"""Idiomatic PyTorch graph of experts (Rotated MNIST, 3 levels) for the per-step benchmark.

As the reference code: one nn.Module class per depth (LayerOne, LayerTwo, LayerThree), a ModuleList
of 2^d instances per depth, and routing by boolean masks per node (the path bit of the samples at
that node), outputs scattered back into batch order. Empty branches are skipped (the reference calls
them anyway). Adam(lr 0.005), cross-entropy, batch 32 of random images with a random rotation id
each (the oracle path). Prints "ms_per_step <value>" for each p given.
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerOne(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.conv = nn.Conv2d(1, p, 3, padding=1)

    def forward(self, x):
        return F.relu(F.max_pool2d(self.conv(x), 2))


class LayerTwo(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.conv = nn.Conv2d(p, 2 * p, 3, padding=1)

    def forward(self, x):
        return F.relu(F.max_pool2d(self.conv(x), 2))


class LayerThree(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.fc1 = nn.Linear(98 * p, 4 * p)
        self.fc2 = nn.Linear(4 * p, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


class GoE(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.layers = nn.ModuleList([
            nn.ModuleList([LayerOne(p)]),
            nn.ModuleList([LayerTwo(p) for _ in range(2)]),
            nn.ModuleList([LayerThree(p) for _ in range(4)]),
        ])

    def forward(self, x, path):
        return self.node(x, path, depth=0, index=0)

    def node(self, x, path, depth, index):
        h = self.layers[depth][index](x)
        if depth == len(self.layers) - 1:
            return h
        out = None
        for bit in (0, 1):
            mask = path[:, depth] == bit
            if not mask.any():
                continue
            y = self.node(h[mask], path[mask], depth + 1, 2 * index + bit)
            if out is None:
                out = torch.zeros(x.shape[0], y.shape[1], dtype=y.dtype)
            out[mask] = y
        return out


def time_steps(p, steps, batch):
    torch.manual_seed(0)
    model = GoE(p)
    opt = torch.optim.Adam(model.parameters(), lr=0.005)
    data = [(torch.rand(batch, 1, 28, 28), torch.randint(10, (batch,)), torch.randint(4, (batch,)))
            for _ in range(16)]
    table = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]])

    def step(i):
        x, y, r = data[i % len(data)]
        opt.zero_grad()
        loss = F.cross_entropy(model(x, table[r]), y)
        loss.backward()
        opt.step()
        return loss.item()

    for i in range(20):
        step(i)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    return (time.perf_counter() - t0) / steps * 1000.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--p", type=int, nargs="+", default=[4, 8, 16])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for p in a.p:
        print(f"ms_per_step {p} {time_steps(p, a.steps, a.batch):.4f}", flush=True)


if __name__ == "__main__":
    main()
