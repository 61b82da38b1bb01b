"""Idiomatic PyTorch version of modlab's hier_modular models on the Boolean tasks, for the sweep benchmark.

Written the way the reference code base is: one nn.Module per module MLP in an nn.ModuleList, a
Python loop over the modules of a layer, routing logits per layer with top-k straight-through
selectors, a DataLoader over the training rows (batch 64, shuffled), Adam with parameter groups,
and per-epoch evaluation of the clean train / val / test splits. Runs are executed one after the
other in this process (the sequential baseline), each printed as one JSON line; the last line is a
summary with runs per minute.

    /usr/bin/python3 bench/python/hier_modular_ref.py --models mlp modular --fractions 0.5 0.8 --seeds 0 1 --epochs 300
"""
import argparse
import itertools
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset, random_split

TRUE_ROUTING = {
    (6, 3, 2, 2): ([[[0, 1], [2, 3], [4, 5]], [[0, 1], [1, 2]]], [0, 1], [[0, 0, 0], [1, 1]]),
    (6, 3, 3, 2, 2): ([[[0, 1], [2, 3], [4, 5]], [[0, 1], [1, 2], [0, 2]], [[0, 2], [1, 2]]], [0, 1],
                      [[0, 0, 0], [1, 1, 1], [2, 2]]),
}

# The six configurations of the sweep files (sweeps/hier_modular/*.toml).
MODELS = {
    "mlp": dict(kind="mlp", lr=0.1, wd=1e-3),
    "modular": dict(kind="modular", lr=0.01, lr_input=0.1, tau=2.0),
    "modular_gumbel": dict(kind="modular", lr=0.01, lr_input=0.1, tau=1.0, gumbel=True, per_sample=True),
    "modular_known": dict(kind="modular", lr=0.01, lr_input=0.1, tau=2.0, known_inputs=True),
    "shared": dict(kind="shared", lr=0.01, lr_input=0.1, lr_location=0.1, tau=2.0),
    "shared_known": dict(kind="shared", lr=0.01, lr_input=0.1, lr_location=0.1, tau=2.0, known_inputs=True,
                         known_locations=True),
}


def boolean_table(structure):
    x = torch.tensor(list(itertools.product([0, 1], repeat=6)), dtype=torch.float32)
    f = [(x[:, 0] != x[:, 1]).float(), (x[:, 2] != x[:, 3]).float(), (x[:, 4] != x[:, 5]).float()]
    if structure == (6, 3, 2, 2):
        y = torch.stack([f[0] * f[1], f[1] * f[2]], 1)
    else:
        g1, g2, g3 = f[0] * f[1], f[1] * f[2], f[0] * f[2]
        y = torch.stack([torch.maximum(g1, g3), torch.maximum(g2, g3)], 1)
    return x, y


def splits(structure, fraction, split_seed=40):
    x, y = boolean_table(structure)
    n_train = int(64 * fraction)
    n_val = (64 - n_train) // 2
    return random_split(TensorDataset(x, y), [n_train, n_val, 64 - n_train - n_val],
                        generator=torch.Generator().manual_seed(split_seed))


class MLP(nn.Module):
    def __init__(self, arch=(6, 36, 36, 36, 2)):
        super().__init__()
        layers = []
        for i in range(len(arch) - 1):
            layers.append(nn.Linear(arch[i], arch[i + 1]))
            if i + 2 < len(arch):
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def module_mlp(arch=(2, 12, 1)):
    return nn.Sequential(nn.Linear(arch[0], arch[1]), nn.ReLU(), nn.Linear(arch[1], arch[2]))


def select(x, logits, k, tau, gumbel, per_sample, training):
    """Top-k straight-through selection of x [B, I] for every module of logits [I, M] -> [B, M, k]."""
    if per_sample and training:
        logits = logits.unsqueeze(0).expand(x.shape[0], -1, -1)  # [B, I, M]
    if gumbel and training:
        logits = logits - torch.empty_like(logits).exponential_().log()
    s = torch.sigmoid(logits / tau if training else logits)
    idx = s.topk(k, dim=-2).indices  # [..., k, M]
    outs = []
    for j in range(k):
        onehot = torch.zeros_like(s).scatter_(-2, idx[..., j:j + 1, :], 1.0)
        sel = onehot - s.detach() + s
        outs.append((x.unsqueeze(-1) * sel).sum(-2))  # [B, M]
    return torch.stack(outs, -1)


class Modular(nn.Module):
    def __init__(self, structure, cfg, shared=False):
        super().__init__()
        self.cfg, self.shared = cfg, shared
        layers = list(structure[1:-1])
        widths = [structure[0]] + layers
        truth, out_truth, locations = TRUE_ROUTING[structure]
        self.routing = nn.ParameterList()
        for l, m in enumerate(layers):
            r = torch.randn(widths[l], m)
            if cfg.get("known_inputs"):
                r = torch.zeros(widths[l], m)
                for j, (a, b) in enumerate(truth[l]):
                    r[a, j], r[b, j] = 1.1, 1.0
            self.routing.append(nn.Parameter(r, requires_grad=not cfg.get("known_inputs", False)))
        r = torch.randn(layers[-1], 1)
        if cfg.get("known_inputs"):
            r = torch.zeros(layers[-1], 1)
            r[out_truth[0], 0], r[out_truth[1], 0] = 1.1, 1.0
        self.out_routing = nn.Parameter(r, requires_grad=not cfg.get("known_inputs", False))
        if shared:
            self.pool = nn.ModuleList([module_mlp() for _ in range(len(layers))])
            self.locations = nn.ParameterList()
            for l, m in enumerate(layers):
                loc = torch.randn(m, len(layers))
                if cfg.get("known_locations"):
                    loc = torch.zeros(m, len(layers))
                    for j, s in enumerate(locations[l]):
                        loc[j, s] = 1.0
                self.locations.append(nn.Parameter(loc, requires_grad=not cfg.get("known_locations", False)))
        else:
            self.layers = nn.ModuleList([nn.ModuleList([module_mlp() for _ in range(m)]) for m in layers])

    def route(self, h, logits, k, learned):
        c = self.cfg
        return select(h, logits, k, c.get("tau", 1.0), c.get("gumbel", False) and learned,
                      c.get("per_sample", False) and learned, self.training)

    def forward(self, x):
        h = x
        for l, logits in enumerate(self.routing):
            u = self.route(h, logits, 2, logits.requires_grad)  # [B, M, 2]
            outs = []
            for m in range(u.shape[1]):
                if self.shared:
                    loc = self.locations[l][m]
                    if self.training and loc.requires_grad:
                        w = F.gumbel_softmax(loc, tau=1.0, hard=True)
                    else:
                        w = F.one_hot(loc.argmax(), loc.numel()).float()
                    y = torch.stack([mod(u[:, m]) for mod in self.pool], -1)  # [B, 1, S]
                    outs.append((y * w).sum(-1))
                else:
                    outs.append(self.layers[l][m](u[:, m]))
            h = torch.cat(outs, 1)
        return self.route(h, self.out_routing, 2, self.out_routing.requires_grad).squeeze(1)  # [B, 2]

    def routing_tables(self):
        layers = [[sorted(c) for c in r.detach().topk(2, dim=0).indices.t().tolist()] for r in self.routing]
        out = self.out_routing.detach()[:, 0].topk(2).indices.tolist()
        locs = [l.detach().argmax(1).tolist() for l in self.locations] if self.shared else None
        return layers, out, locs


def recovers(model, structure):
    """Same definition as modlab's routing.hpp: module sets up to module permutations; outputs in order."""
    layers, out, locs = model.routing_tables()
    truth, out_truth, true_locs = TRUE_ROUTING[structure]

    def search(l, prev, relabel):
        if l == len(layers):
            return [prev[o] for o in out] == out_truth
        for perm in itertools.permutations(range(len(layers[l]))):
            ok, rel = True, dict(relabel)
            for m, t in enumerate(perm):
                mapped = sorted(i if l == 0 else prev[i] for i in layers[l][m])
                if mapped != sorted(truth[l][t]):
                    ok = False
                    break
                if locs is not None:
                    a, b = locs[l][m], true_locs[l][t]
                    if rel.get(("l", a), b) != b or rel.get(("t", b), a) != a:
                        ok = False
                        break
                    rel[("l", a)], rel[("t", b)] = b, a
            if ok and search(l + 1, list(perm), rel):
                return True
        return False

    return search(0, None, {})


def evaluate(model, loader):
    model.eval()
    loss, correct, n = 0.0, 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            p = model(x)
            loss += F.binary_cross_entropy_with_logits(p, y, reduction="sum").item() / 2
            correct += ((p > 0).float() == y).float().sum().item() / 2
            n += len(x)
    model.train()
    return loss / max(n, 1), correct / max(n, 1)


def run(name, structure, fraction, seed, epochs, eval_every, noise=0.0, wd=None):
    """One run; `noise`: std of Gaussian noise on training inputs (the reference's --dataset_noise
    uses 0.1); `wd`: weight decay of every parameter group (None: the model's, 0 for modular ones)."""
    cfg = MODELS[name]
    torch.manual_seed(seed)
    train, val, test = splits(structure, fraction)
    if cfg["kind"] == "mlp":
        model = MLP((6, 36, 36, 36, 2))
        groups = [{"params": model.parameters()}]
    else:
        model = Modular(structure, cfg, shared=cfg["kind"] == "shared")
        modules = model.pool.parameters() if model.shared else model.layers.parameters()
        routing = [p for p in list(model.routing) + [model.out_routing] if p.requires_grad]
        groups = [{"params": modules}]
        if routing:
            groups.append({"params": routing, "lr": cfg["lr_input"]})
        if model.shared and all(p.requires_grad for p in model.locations):
            groups.append({"params": list(model.locations), "lr": cfg["lr_location"]})
    wd = cfg.get("wd", 0.0) if wd is None else wd
    opt = torch.optim.Adam(groups, lr=cfg["lr"], weight_decay=wd)
    loader = DataLoader(train, batch_size=64, shuffle=True)
    evals = [DataLoader(s, batch_size=4096) for s in (train, val, test)]
    history = []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            if noise > 0:
                x = x + noise * torch.randn_like(x)
            loss = F.binary_cross_entropy_with_logits(model(x), y)
            loss.backward()
            opt.step()
        if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:
            history.append([evaluate(model, e) for e in evals])
    wall = time.perf_counter() - t0
    out = {"model": name, "structure": list(structure), "fraction": fraction, "seed": seed, "noise": noise, "wd": wd,
           "test_accuracy": history[-1][2][1], "train_accuracy": history[-1][0][1], "seconds": wall,
           "test_zeros_accuracy": float(torch.cat([y for _, y in evals[2]]).eq(0).float().mean())}
    if cfg["kind"] != "mlp":
        out["routing_correct"] = int(recovers(model, structure))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--structure", type=int, nargs="+", default=[6, 3, 2, 2])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--eval-every", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    ap.add_argument("--noise", type=float, default=0.0, help="std of Gaussian noise on training inputs (reference: 0.1)")
    ap.add_argument("--wd", type=float, default=None, help="weight decay of every group (default: the model's)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for name in args.models:
        for fraction in args.fractions:
            for seed in args.seeds:
                print(json.dumps(run(name, tuple(args.structure), fraction, seed, args.epochs, args.eval_every,
                                           args.noise, args.wd)),
                      flush=True)
                n += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"summary": True, "runs": n, "seconds": wall, "cpu_seconds": cpu, "runs_per_minute": 60.0 * n / wall,
                      "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()
