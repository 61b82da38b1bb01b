"""Idiomatic PyTorch version of modlab's mode (MoDE) on MNIST, for the one-epoch benchmark.

The model and training step follow the MoDE reference code: E experts in a ModuleList, each an MLP
784 -> H -> H -> 10 with ReLU + Dropout(0.2) after each hidden layer; a gate 784 -> 64 -> ReLU -> E
-> softmax; the prediction is the gated sum of expert logits (a loop over experts); the training
step computes CE on it, then evaluates every expert again (separate forwards, new dropout masks)
and the gate again, and the distillation loss as a double loop over expert pairs
(KL(softmax(z_j/T) detached || softmax(z_i/T)), batchmean, weighted by the two batch-mean gates,
divided by E(E-1); MSE for E = 2); L = CE + alpha * L_KD; Adam; `.item()` of the three losses per
step, as the reference logs them.

Data: the MNIST training file read from the IDX .gz into one float tensor, normalised with
(0.1307, 0.3081) and flattened, 10 % held out (random_split with a torch.Generator seeded 42), and
batched by a DataLoader over a TensorDataset (batch 64, shuffled). The reference's torchvision
dataset applies PIL -> ToTensor -> Normalize per example, which is slower still; it is not used,
so the comparison measures the model and training loop only.

Prints one line: seconds for one full epoch, then the number of steps.
"""
import argparse
import gzip
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Expert(nn.Module):
    def __init__(self, d, h, c):
        super().__init__()
        self.fc1 = nn.Linear(d, h)
        self.fc2 = nn.Linear(h, h)
        self.fc3 = nn.Linear(h, c)
        self.dropout = nn.Dropout(0.2)

    def forward(self, x):
        x = self.dropout(F.relu(self.fc1(x)))
        x = self.dropout(F.relu(self.fc2(x)))
        return self.fc3(x)


class GatingNetwork(nn.Module):
    def __init__(self, d, e):
        super().__init__()
        self.fc1 = nn.Linear(d, 64)
        self.fc2 = nn.Linear(64, e)

    def forward(self, x):
        return F.softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


class MoDE(nn.Module):
    def __init__(self, e, d, h, c, temp, alpha):
        super().__init__()
        self.experts = nn.ModuleList([Expert(d, h, c) for _ in range(e)])
        self.gate = GatingNetwork(d, e)
        self.temp, self.alpha = temp, alpha

    def forward(self, x):
        gates = self.gate(x)
        out = torch.zeros(x.size(0), self.experts[0].fc3.out_features)
        for i, expert in enumerate(self.experts):
            out += expert(x) * gates[:, i].unsqueeze(1)
        return out

    def distillation_loss(self, expert_outputs, gates):
        e = len(self.experts)
        loss = 0
        if e == 2:
            p1 = F.softmax(expert_outputs[0] / self.temp, dim=1)
            p2 = F.softmax(expert_outputs[1] / self.temp, dim=1)
            return F.mse_loss(p1, p2) * gates[:, 0].mean() * gates[:, 1].mean()
        for i in range(e):
            for j in range(e):
                if i != j:
                    with torch.no_grad():
                        soft_targets = F.softmax(expert_outputs[j] / self.temp, dim=1)
                    log_probs = F.log_softmax(expert_outputs[i] / self.temp, dim=1)
                    kl = F.kl_div(log_probs, soft_targets, reduction="batchmean")
                    loss = loss + kl * gates[:, i].mean() * gates[:, j].mean()
        return loss / (e * (e - 1))


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--root", required=True, help="folder with train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz")
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=50, help="steps before the timed epoch")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.from_numpy(read_idx(os.path.join(a.root, "train-images-idx3-ubyte.gz")).copy()).float().div_(255.0)
    x = ((x - 0.1307) / 0.3081).reshape(x.size(0), -1)
    y = torch.from_numpy(read_idx(os.path.join(a.root, "train-labels-idx1-ubyte.gz")).astype(np.int64))
    full = torch.utils.data.TensorDataset(x, y)
    n_val = int(0.1 * len(full))
    train, _ = torch.utils.data.random_split(full, [len(full) - n_val, n_val], generator=torch.Generator().manual_seed(42))
    loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True)
    model = MoDE(a.experts, 784, a.hidden, 10, 0.02, 0.01)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ce_fn = nn.CrossEntropyLoss()
    model.train()

    def step(xb, yb):
        opt.zero_grad()
        out = model(xb)
        ce = ce_fn(out, yb)
        expert_outputs = [expert(xb) for expert in model.experts]
        gates = model.gate(xb)
        kd = model.distillation_loss(expert_outputs, gates)
        total = ce + model.alpha * kd
        total.backward()
        opt.step()
        return total.item(), ce.item(), kd.item()

    for i, (xb, yb) in enumerate(loader):  # warm-up
        if i >= a.warmup:
            break
        step(xb, yb)
    n, t0 = 0, time.perf_counter()
    for xb, yb in loader:
        step(xb, yb)
        n += 1
    print(f"{time.perf_counter() - t0:.4f} {n}")


if __name__ == "__main__":
    main()
