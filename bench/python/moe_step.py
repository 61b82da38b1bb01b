"""Idiomatic PyTorch version of modlab's basic moe on toy multi_class, for the per-step benchmark.

The model follows the reference code: a ModuleList of linear experts (each ending in softmax), a
linear gate with softmax, y = sum_e g_e f_e, loss NLL(log(y + 1e-15)), RMSprop(lr 0.01, momentum 0.9),
shuffled batches of 32. Prints the mean milliseconds per training step.
"""
import argparse
import time

import numpy as np
import torch
import torch.nn as nn


class Expert(nn.Module):
    def __init__(self, d, c):
        super().__init__()
        self.fc = nn.Linear(d, c)

    def forward(self, x):
        return torch.softmax(self.fc(x), dim=1)


class Gate(nn.Module):
    def __init__(self, d, e):
        super().__init__()
        self.fc = nn.Linear(d, e)

    def forward(self, x, T=1.0):
        return torch.softmax(self.fc(x) / T, dim=1)


class MoE(nn.Module):
    def __init__(self, d, c, e):
        super().__init__()
        self.experts = nn.ModuleList([Expert(d, c) for _ in range(e)])
        self.gate = Gate(d, e)

    def forward(self, x):
        expert_outputs = torch.stack([e(x) for e in self.experts], dim=1)  # B x E x C
        gate_outputs = self.gate(x)                                         # B x E
        return (gate_outputs.unsqueeze(2) * expert_outputs).sum(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=1500)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rng = np.random.RandomState(0)
    x = torch.tensor(rng.rand(2400, 2), dtype=torch.float32)
    y = torch.tensor(rng.randint(0, 6, 2400), dtype=torch.long)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
    model = MoE(2, 6, 4)
    opt = torch.optim.RMSprop(model.parameters(), lr=0.01, momentum=0.9)
    crit = nn.NLLLoss()

    def epoch(limit):
        n = 0
        for xb, yb in loader:
            opt.zero_grad()
            out = model(xb)
            loss = crit(torch.log(out + 1e-15), yb)
            loss.backward()
            opt.step()
            loss.item()  # the reference logs the running loss every step
            n += 1
            if n >= limit:
                break
        return n

    epoch(200)  # warm-up
    done, t0 = 0, time.perf_counter()
    while done < a.steps:
        done += epoch(a.steps - done)
    print(f"{1000.0 * (time.perf_counter() - t0) / done:.5f}")


if __name__ == "__main__":
    main()
