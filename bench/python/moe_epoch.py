"""Idiomatic PyTorch versions of modlab's moe for the per-epoch benchmark (bench/bench_moe_epoch.cpp).

--task mnist: the AISTATS MNIST MoE of moe §1.6 (E CNN experts Conv(1->1, 3x3) -> ReLU -> MaxPool 2
  -> 169 -> 5 -> 32 -> 10 -> softmax, CNN gate Conv(1->1) -> 169 -> 128 -> 32 -> E -> softmax),
  y = sum_e g_e f_e, NLL(log(y + 1e-15)), Adam(1e-3), shuffled batches of 512 over the 60,000
  training images (normalised with 0.1307 / 0.3081).
--task toy: E linear experts and a linear gate (softmax of the scores / T, T = 1, as the reference
  gate) on 2,400 2-D points, 6 classes, RMSprop(0.01, momentum 0.9), batches of 32 (as
  bench/python/moe_step.py).
As the reference code: a ModuleList of expert modules stacked per forward, a DataLoader over a
TensorDataset, loss.item() per step. Runs --warmup epochs, then --epochs timed epochs, and prints
the mean wall-clock and process-CPU seconds per timed epoch.
"""
import argparse
import gzip
import os
import time

import numpy as np
import torch
import torch.nn as nn


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    nd = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 * (nd + 1)).reshape(dims)


class CnnExpert(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)
        self.fc1 = nn.Linear(169, 5)
        self.fc2 = nn.Linear(5, 32)
        self.out = nn.Linear(32, classes)

    def forward(self, x):
        h = torch.max_pool2d(torch.relu(self.conv(x)), 2).flatten(1)
        h = torch.relu(self.fc2(torch.relu(self.fc1(h))))
        return torch.softmax(self.out(h), dim=1)


class CnnGate(nn.Module):
    def __init__(self, experts):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)
        self.fc1 = nn.Linear(169, 128)
        self.fc2 = nn.Linear(128, 32)
        self.out = nn.Linear(32, experts)

    def forward(self, x):
        h = torch.max_pool2d(torch.relu(self.conv(x)), 2).flatten(1)
        h = torch.relu(self.fc2(torch.relu(self.fc1(h))))
        return torch.softmax(self.out(h), dim=1)


class LinearExpert(nn.Module):
    def __init__(self, d, classes):
        super().__init__()
        self.fc = nn.Linear(d, classes)

    def forward(self, x):
        return torch.softmax(self.fc(x), dim=1)


class LinearGate(nn.Module):
    """Linear(d -> E) + softmax(./T), as the reference's toy gate (moe §1.6; T = 1 in its runs)."""

    def __init__(self, d, experts):
        super().__init__()
        self.fc = nn.Linear(d, experts)

    def forward(self, x, T=1.0):
        return torch.softmax(self.fc(x) / T, dim=1)


class MoE(nn.Module):
    def __init__(self, experts, gate):
        super().__init__()
        self.experts = nn.ModuleList(experts)
        self.gate = gate

    def forward(self, x):
        expert_outputs = torch.stack([e(x) for e in self.experts], dim=1)  # B x E x C
        gate_outputs = self.gate(x)                                         # B x E
        return (gate_outputs.unsqueeze(2) * expert_outputs).sum(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=["mnist", "toy"], required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--experts", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--data", default="", help="folder with the MNIST IDX files")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.task == "mnist":
        img = read_idx(os.path.join(a.data, "train-images-idx3-ubyte.gz"))
        lab = read_idx(os.path.join(a.data, "train-labels-idx1-ubyte.gz"))
        x = (torch.tensor(img, dtype=torch.float32).unsqueeze(1) / 255.0 - 0.1307) / 0.3081
        y = torch.tensor(lab, dtype=torch.long)
        model = MoE([CnnExpert(10) for _ in range(a.experts)], CnnGate(a.experts))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        batch = 512
    else:
        rng = np.random.RandomState(0)
        x = torch.tensor(rng.rand(2400, 2), dtype=torch.float32)
        y = torch.tensor(rng.randint(0, 6, 2400), dtype=torch.long)
        model = MoE([LinearExpert(2, 6) for _ in range(a.experts)], LinearGate(2, a.experts))
        opt = torch.optim.RMSprop(model.parameters(), lr=0.01, momentum=0.9)
        batch = 32
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch, shuffle=True)
    crit = nn.NLLLoss()

    def epoch():
        model.train()
        running = 0.0
        for xb, yb in loader:
            opt.zero_grad()
            out = model(xb)
            loss = crit(torch.log(out + 1e-15), yb)
            loss.backward()
            opt.step()
            running += loss.item()
        return running

    for _ in range(a.warmup):
        epoch()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(a.epochs):
        epoch()
    print(f"{(time.perf_counter() - t0) / a.epochs:.6f} {(time.process_time() - c0) / a.epochs:.6f}")


if __name__ == "__main__":
    main()
