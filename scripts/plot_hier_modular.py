#!/usr/bin/python3
"""Generalization of MLPs and hierarchically modular networks on the Boolean tasks (hier_modular).

Reads finished sweep folders (sweeps/hier_modular/*.toml run with `modlab run`) and prints, per task
structure and protocol (the reference README's settings, or the ablation without input noise and
weight decay), the final test accuracy against the training fraction s (mean ± sample std over
seeds and the 95 % t-interval of the mean), the all-zeros baseline of each test split, how many
runs recover the true routing (`test_routing_correct`: up to the order of a module's inputs and
permutations of the modules in a layer; plugins/models/hier_modular/README.md) and how many end
exactly on the baseline. With --doc it writes the whole results page (docs/results/hier_modular.md
is written so, by `scripts/reproduce hier_modular`).

    /usr/bin/python3 scripts/plot_hier_modular.py results/hier_modular_mlp results/hier_modular_modular \\
        results/hier_modular_shared --out hier_modular.png
    /usr/bin/python3 scripts/plot_hier_modular.py results/hier_modular_mnist results/hier_modular_mnist_mlp \\
        results/hier_modular_mnist_reference results/hier_modular_mnist_mlp_reference

The MNIST variant's runs are grouped by protocol (the reference's 200 epochs and 1000 image pairs
per train pair, or what differs) and the protocols compared paired by seed. With --doc and --keep,
the page's Boolean or MNIST part is rewritten from the sweeps given of that kind (all of them) and
the rest of the page kept as it was (`scripts/reproduce hier_modular --only mnist`).
"""
import argparse
import math
import os
import re
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sweep_summary import (completed_runs, duration, interval_text, last_metric, mean_ci,  # noqa: E402
                           old_page, run_times, sweep_command, wall)

# The reference README's training settings for the Boolean tasks (../shared/spec/hier_modular.md).
REFERENCE = {"train_noise": 0.1, "weight_decay": 1e-3, "epochs": 1000, "batch_size": 64}


def variant(config):
    """A readable name of the model variant of one run, from its resolved config."""
    m = config["model"]
    plugin = m["plugin"]
    if plugin == "mlp":
        q = float(m.get("pruning_ratio", 0.0))
        return "MLP" + (f" pruned {q:g}%" if q > 0 else "")
    if plugin in ("hierarchically_modular", "hierarchically_modular_shared_modules"):
        name = "modular" if plugin == "hierarchically_modular" else "shared modules"
        if m.get("known_module_inputs", False):
            known = "known routing" + (" + locations" if m.get("known_module_locations", False) else "")
            return f"{name}, {known}"
        parts = ["learned routing"]
        if plugin != "hierarchically_modular" and m.get("known_module_locations", False):
            parts.append("known locations")
        if m.get("use_gumbel", False):
            parts.append("Gumbel")
        if m.get("per_sample_routing", False):
            parts.append("per-sample")
        parts.append(f"τ={float(m.get('tau', 1.0)):g}")
        return f"{name}, " + ", ".join(parts)
    return plugin


def protocol(config):
    """"yes" when the run used the reference README's training settings, else what differs."""
    d, t = config["dataset"], config.get("train", {})
    have = {"train_noise": float(d.get("train_noise", 0.0)), "weight_decay": float(t.get("weight_decay", 0.0)),
            "epochs": int(t.get("epochs", 0)), "batch_size": int(t.get("batch_size", 0))}
    words = {"train_noise": "input noise σ", "weight_decay": "weight decay", "epochs": "epochs", "batch_size": "batch"}
    diff = [f"{words[k]} {have[k]:g} (reference {REFERENCE[k]:g})" for k in REFERENCE if have[k] != REFERENCE[k]]
    return "yes" if not diff else "no: " + ", ".join(diff)


def read_run(run_id, run, config):
    d = config["dataset"]
    return {
        "structure": ",".join(str(x) for x in d.get("structure", [6, 3, 2, 2])),
        "variant": variant(config),
        "protocol": protocol(config),
        "fraction": float(d.get("train_fraction", 0.8)),
        "seed": int(config["run"].get("seed", 0)),
        "test_accuracy": last_metric(run, "test_accuracy"),
        "train_accuracy": last_metric(run, "train_accuracy"),
        "zeros": last_metric(run, "test_zeros_accuracy"),
        "routing_correct": last_metric(run, "test_routing_correct"),
        **run_times(run),
    }


def aggregate(records):
    """(protocol, structure, variant, fraction) → accuracy statistics, baseline, recovery counts."""
    groups = defaultdict(list)
    for r in records:
        groups[(r["protocol"], r["structure"], r["variant"], r["fraction"])].append(r)
    out = {}
    for key, rs in groups.items():
        n, mean, std, half = mean_ci(r["test_accuracy"] for r in rs)
        rc = [r["routing_correct"] for r in rs if not math.isnan(r["routing_correct"])]
        zeros = [r["zeros"] for r in rs if not math.isnan(r["zeros"])]
        out[key] = {"n": n, "mean": mean, "std": std, "half": half, "zeros": zeros[0] if zeros else math.nan,
                    "recovered": sum(x == 1.0 for x in rc), "routed": len(rc),
                    "on_baseline": sum(abs(r["test_accuracy"] - r["zeros"]) < 1e-6 for r in rs),
                    "train_fit": sum(r["train_accuracy"] == 1.0 for r in rs)}
    return out


def order(variants):
    rank = lambda v: (0 if v.startswith("MLP") else 1 if v.startswith("modular") else 2, "known" not in v, v)  # noqa: E731
    return sorted(variants, key=rank)


def structures_of(stats):
    return sorted({k[1] for k in stats}, key=lambda s: (len(s), s))


def protocols_of(stats):
    return sorted({k[0] for k in stats}, key=lambda p: (p != "yes", p))


def cell_text(st):
    """An accuracy cell from aggregate()'s statistics, its interval clipped to [0, 1]."""
    if not st:
        return ""
    return interval_text(st["n"], st["mean"], st["std"], st["half"], 3, 0.0, 1.0)


def accuracy_table(stats, proto, structure):
    keys = [k for k in stats if k[0] == proto and k[1] == structure]
    fractions = sorted({k[3] for k in keys})
    n = sorted({stats[k]["n"] for k in keys})
    lines = [f"\n### [{structure}], reference protocol: {proto}\n",
             f"Final test accuracy: mean ± sample std over {'/'.join(map(str, n))} seeds [95 % interval of the mean].\n",
             "| model | reference protocol? | " + " | ".join(f"s={s:g}" for s in fractions) + " |",
             "|---|---|" + "---|" * len(fractions)]
    for v in order({k[2] for k in keys}):
        cells = [cell_text(stats.get((proto, structure, v, s))) for s in fractions]
        lines.append(f"| {v} | {proto} | " + " | ".join(cells) + " |")
    zeros = [stats[next(k for k in keys if k[3] == s)]["zeros"] for s in fractions]
    lines.append("| all-zeros baseline (predict 0 for every bit) | – | " +
                 " | ".join("" if math.isnan(z) else f"{z:.3f}" for z in zeros) + " |")
    routed = [v for v in order({k[2] for k in keys}) if not v.startswith("MLP")]
    if routed:
        lines += ["\nRuns whose routing recovers the true one / runs ending exactly on the all-zeros baseline "
                  "(test accuracy):\n",
                  "| model | " + " | ".join(f"s={s:g}" for s in fractions) + " |", "|---|" + "---|" * len(fractions)]
        for v in routed:
            cells = []
            for s in fractions:
                st = stats.get((proto, structure, v, s))
                cells.append(f"{st['recovered']}/{st['routed']} · {st['on_baseline']}" if st else "")
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def effect_table(stats, structure, ablation):
    """Reference protocol minus the ablation, per cell, marked where the two 95 % intervals overlap."""
    keys = [k for k in stats if k[0] == "yes" and k[1] == structure]
    fractions = sorted({k[3] for k in keys})
    lines = [f"\n### [{structure}]: reference protocol − ablation ({ablation[4:]})\n",
             "Difference of mean test accuracy; `~` where the two 95 % intervals overlap (these runs do not "
             "separate the two settings there).\n",
             "| model | " + " | ".join(f"s={s:g}" for s in fractions) + " |", "|---|" + "---|" * len(fractions)]
    for v in order({k[2] for k in keys if (ablation, structure, k[2], k[3]) in stats}):
        cells = []
        for s in fractions:
            a, b = stats.get(("yes", structure, v, s)), stats.get((ablation, structure, v, s))
            if not a or not b or math.isnan(a["half"]) or math.isnan(b["half"]):
                cells.append("")
                continue
            overlap = abs(a["mean"] - b["mean"]) <= a["half"] + b["half"]
            cells.append(f"{a['mean'] - b['mean']:+.3f}" + (" ~" if overlap else ""))
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tables(stats):
    parts = []
    for structure in structures_of(stats):
        for proto in protocols_of(stats):
            if any(k[0] == proto and k[1] == structure for k in stats):
                parts.append(accuracy_table(stats, proto, structure))
    for structure in structures_of(stats):
        for ablation in [p for p in protocols_of(stats) if p != "yes"]:
            if any(k[0] == ablation and k[1] == structure for k in stats):
                parts.append(effect_table(stats, structure, ablation))
    return "\n".join(parts)


def plot(stats, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    structures = structures_of(stats)
    fig, axes = plt.subplots(len(structures), 2, figsize=(12, 4 * len(structures)), squeeze=False)
    for row, structure in enumerate(structures):
        keys = [k for k in stats if k[0] == "yes" and k[1] == structure] or [k for k in stats if k[1] == structure]
        proto = keys[0][0]
        for v in order({k[2] for k in keys}):
            fs = sorted(k[3] for k in keys if k[2] == v)
            st = [stats[(proto, structure, v, s)] for s in fs]
            m = np.array([x["mean"] for x in st])
            h = np.array([0.0 if math.isnan(x["half"]) else x["half"] for x in st])
            (line,) = axes[row][0].plot(fs, m, marker="o", label=v)
            axes[row][0].fill_between(fs, m - h, m + h, alpha=0.15, color=line.get_color())
            if st[0]["routed"]:
                rec = np.array([x["recovered"] / x["routed"] for x in st])
                axes[row][1].plot(fs, rec, marker="o", label=v, color=line.get_color())
        fs = sorted({k[3] for k in keys})
        axes[row][0].plot(fs, [stats[next(k for k in keys if k[3] == s)]["zeros"] for s in fs], "k--",
                          label="all-zeros baseline")
        title = "reference protocol" if proto == "yes" else proto
        axes[row][0].set_title(f"[{structure}], {title}: test accuracy (mean, 95 % interval)", fontsize=9)
        axes[row][0].set_xlabel("training fraction s")
        axes[row][0].set_ylabel("per-bit test accuracy")
        axes[row][0].set_ylim(0.4, 1.02)
        axes[row][1].set_title(f"[{structure}], {title}: learned routing recovers the true one", fontsize=9)
        axes[row][1].set_xlabel("training fraction s")
        axes[row][1].set_ylabel("fraction of runs")
        axes[row][1].set_ylim(-0.03, 1.03)
        for ax in axes[row]:
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return out


def findings(stats):
    """Statements computed from the tables (reference protocol)."""
    out = []
    for structure in structures_of(stats):
        ref = {k: v for k, v in stats.items() if k[0] == "yes" and k[1] == structure}
        if not ref:
            continue
        learned = [v for k, v in ref.items() if "learned" in k[2]]
        if learned:
            rec, runs = sum(v["recovered"] for v in learned), sum(v["routed"] for v in learned)
            base = sum(v["on_baseline"] for v in learned)
            total = sum(v["n"] for v in learned)
            out.append(f"[{structure}]: learned routing recovered the true routing in {rec} of {runs} runs; "
                       f"{base} of {total} learned-routing runs end with a test accuracy exactly equal to the "
                       f"all-zeros baseline.")
        fractions = sorted({k[3] for k in ref})
        for s in fractions[:1]:
            cells = sorted(((v["mean"], k[2]) for k, v in ref.items() if k[3] == s), reverse=True)
            zeros = next(v["zeros"] for k, v in ref.items() if k[3] == s)
            above = [name for mean, name in cells if mean > zeros]
            out.append(f"[{structure}] at s = {s:g} (all-zeros baseline {zeros:.3f}): best {cells[0][1]} "
                       f"({cells[0][0]:.3f}), worst {cells[-1][1]} ({cells[-1][0]:.3f}); "
                       f"{len(above)} of {len(cells)} models above the baseline on average.")
    return out


def protocol_findings(stats):
    """Per structure: learned-routing runs on the baseline under each protocol."""
    out = []
    for structure in structures_of(stats):
        parts = []
        for proto in protocols_of(stats):
            cells = [v for k, v in stats.items() if k[0] == proto and k[1] == structure and "learned" in k[2]]
            if cells:
                parts.append(f"{sum(v['on_baseline'] for v in cells)} of {sum(v['n'] for v in cells)} with "
                             f"{'the reference protocol' if proto == 'yes' else 'the ablation (' + proto[4:] + ')'}")
        if len(parts) > 1:
            out.append(f"[{structure}]: learned-routing runs ending on the all-zeros baseline: " + "; ".join(parts) + ".")
    return out


def pytorch_table(path):
    """The cross-check of bench/python/hier_modular_ref.py (a PyTorch implementation written like the
    reference's code), one JSON line per run: test accuracy, runs on the baseline, recovered routing."""
    import json

    rows = defaultdict(list)
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if "model" in r:
                rows[(r["model"], ",".join(map(str, r["structure"])), r["fraction"], r.get("noise", 0.0),
                      r.get("wd", 0.0))].append(r)
    lines = ["| PyTorch model | structure | s | input noise σ | weight decay | runs | test accuracy | all-zeros baseline "
             "| runs on the baseline | routing recovered |", "|---|---|---|---|---|---|---|---|---|---|"]
    for (model, structure, s, noise, wd), rs in sorted(rows.items()):
        n, mean, std, half = mean_ci(r["test_accuracy"] for r in rs)
        zeros = rs[0]["test_zeros_accuracy"]
        on = sum(abs(r["test_accuracy"] - zeros) < 1e-6 for r in rs)
        rec = sum(r.get("routing_correct", 0) for r in rs)
        lines.append(f"| {model} | [{structure}] | {s:g} | {noise:g} | {wd:g} | {n} | {cell_text({'n': n, 'mean': mean, 'std': std, 'half': half})} "
                     f"| {zeros:.3f} | {on} | {rec} |")
    return "\n".join(lines)


def run_summary(sweeps, commands, kept=None):
    """The runs table: a row per sweep; `kept` ({sweep: row} of a page written earlier) keeps the rows
    of sweeps not among `sweeps`, in their order."""
    rows = dict(kept or {})
    for name, runs in sweeps.items():
        _, _, span = wall(runs)
        seeds = sorted({r["seed"] for r in runs})
        seed_text = f"{seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else str(seeds[0]) if seeds else "–"
        train = sum(r["time_s"] for r in runs if not math.isnan(r["time_s"]))
        rows[name] = f"| {name} | {len(runs)} | {seed_text} | {span} | {duration(train)} | `{commands.get(name, '')}` |"
    return "\n".join(["| sweep | completed runs | seeds | wall time | training time summed | command |",
                      "|---|---|---|---|---|---|"] + list(rows.values()))


MNIST_METRICS = (("train_accuracy", "train accuracy"),
                 ("test1_accuracy", "test1 accuracy (train pairs, MNIST test images)"),
                 ("test2_accuracy", "test2 accuracy (unseen pairs)"),
                 ("test2_routing_correct", "fraction of runs recovering the routing"),
                 ("test2_images_correct", "fraction of runs reading the two images with different modules"))


def mnist_label(config):
    m = config["model"]
    if m["plugin"] == "mlp":
        return "MLP"
    if m.get("known_module_inputs", False):
        return "modular, known routing" + (" + known images" if m.get("known_image_inputs", False) else "")
    return "modular, learned routing" + ("" if m.get("known_image_inputs", False) else " + image selection")


# The reference's MNIST protocol (../shared/spec/hier_modular.md §5.2, §5.3): 200 epochs and
# 100–1000 image pairs per train pair (1000, the top of the range, is what it is checked against).
MNIST_REFERENCE = {"epochs": 200, "samples_per_pair": 1000}


def mnist_protocol(config):
    """"yes" when an MNIST run used the reference's epochs and sample count, else what differs."""
    have = {"epochs": int(config.get("train", {}).get("epochs", 0)),
            "samples_per_pair": int(config["dataset"].get("samples_per_pair", 100))}
    words = {"epochs": "epochs", "samples_per_pair": "image pairs per train pair"}
    diff = [f"{have[k]} {words[k]} (reference {MNIST_REFERENCE[k]})" for k in MNIST_REFERENCE
            if have[k] != MNIST_REFERENCE[k]]
    return "yes" if not diff else "no: " + ", ".join(diff)


def read_mnist_run(run_id, run, config):
    r = {k: last_metric(run, k) for k, _ in MNIST_METRICS}
    r.update({"label": mnist_label(config), "fraction": float(config["dataset"]["train_fraction"]),
              "protocol": mnist_protocol(config), "zeros": last_metric(run, "test2_zeros_accuracy"),
              "seed": int(config["run"].get("seed", 0)), **run_times(run)})
    return r


def mnist_findings(records):
    """test2 (unseen pairs) against its all-zeros baseline, per model over all fractions."""
    rows = defaultdict(list)
    for r in records:
        rows[r["label"]].append(r)
    out = []
    for label, rs in sorted(rows.items()):
        below = sum(r["test2_accuracy"] < r["zeros"] for r in rs)
        out.append(f"{label}: test2 accuracy {np.nanmean([r['test2_accuracy'] for r in rs]):.3f} against an all-zeros "
                   f"baseline of {np.nanmean([r['zeros'] for r in rs]):.3f} (mean over {len(rs)} runs); "
                   f"{below} of {len(rs)} runs below their baseline.")
    return out


def by_label_fraction(records):
    rows = defaultdict(list)
    for r in records:
        rows[(r["label"], r["fraction"])].append(r)
    return rows


def mnist_tables(records, proto):
    """Tables of one protocol of the MNIST variant (rotated_mnist mode = "digit_pairs",
    sweeps/hier_modular/mnist*.toml): final train / test1 (train pairs, MNIST test images) / test2
    (unseen pairs) accuracy, mean ± std [95 % interval] over seeds with test2's all-zeros baseline,
    and the share of runs recovering the routing and reading the two images with different image
    modules."""
    rows = by_label_fraction(records)
    labels = sorted({k[0] for k in rows})
    fractions = sorted({k[1] for k in rows})
    out = []
    for key, title in MNIST_METRICS:
        out += [f"\n#### {title}, reference protocol: {proto}\n",
                "| model | reference protocol? | " + " | ".join(f"s={x:g}" for x in fractions) + " |",
                "|---|---|" + "---|" * len(fractions)]
        for label in labels:
            cells = []
            for x in fractions:
                n, mean, std, half = mean_ci(r[key] for r in rows.get((label, x), []))
                if n == 0:
                    cells.append("–")
                elif "accuracy" in key:
                    cells.append(cell_text({"n": n, "mean": mean, "std": std, "half": half}))
                else:
                    cells.append(f"{mean:.2f}")
            out.append(f"| {label} | {proto} | " + " | ".join(cells) + " |")
        if key == "test2_accuracy":
            # the pair split depends on the seed: the baseline is averaged over the runs
            zeros = [np.nanmean([r["zeros"] for k, rs in rows.items() if k[1] == x for r in rs]) for x in fractions]
            out.append("| all-zeros baseline of test2 (mean over the runs' pair splits) | – | " +
                       " | ".join("–" if math.isnan(z) else f"{z:.3f}" for z in zeros) + " |")
    return "\n".join(out)


def paired_cell(a, b):
    """mean of a − b over the seeds in both runs lists, with its 95 % interval; `~` where it contains 0."""
    x, y = {r["seed"]: r for r in a}, {r["seed"]: r for r in b}
    return lambda key: paired_mean([x[s][key] - y[s][key] for s in x if s in y])


def paired_mean(d):
    n, mean, _, half = mean_ci(d)
    if n < 2:
        return "–"
    return f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}]" + (" ~" if abs(mean) <= half else "")


def mnist_difference(first, other, p_first, p_other):
    """Per model and fraction, protocol `p_first` minus `p_other` on train / test1 / test2
    accuracy, paired by seed (a seed gives the same pair split under both protocols)."""
    a, b = by_label_fraction(first), by_label_fraction(other)
    keys = sorted(k for k in a if k in b)
    out = [f"\n### MNIST: {protocol_name(p_first)} − {protocol_name(p_other)}\n",
           "Difference of final accuracy paired by seed (a seed draws the same digit-pair split under both; the "
           "images drawn differ), mean [95 % interval]; `~` where the interval contains 0.\n",
           "| model | s | runs paired | train accuracy | test1 accuracy | test2 accuracy |", "|---|---|---|---|---|---|"]
    for label, s in keys:
        cell = paired_cell(a[(label, s)], b[(label, s)])
        n = len({r["seed"] for r in a[(label, s)]} & {r["seed"] for r in b[(label, s)]})
        out.append(f"| {label} | {s:g} | {n} | {cell('train_accuracy')} | {cell('test1_accuracy')} | "
                   f"{cell('test2_accuracy')} |")
    return "\n".join(out)


HEADER = """# hier_modular: generalization of MLPs and hierarchically modular networks on Boolean tasks

Question (hier_modular §5): on the hierarchically modular Boolean functions of 6 bits, how does
test accuracy grow with the fraction s of the 64 truth-table rows used for training, for an MLP, a
hierarchically modular network with learned or known routing, and a network of shared modules with
learned or known locations, and how often does learned routing recover the true structure?

This page is written by `scripts/plot_hier_modular.py`, run by `scripts/reproduce hier_modular`,
from the run files of the sweeps below; every number comes from those files.

## Setup

- Data: `toy`, `task = "boolean"`, structures [6,3,2,2] (y = [f1∧f2, f2∧f3], f_i = XOR of an
  input pair) and [6,3,3,2,2] (y = [g1∨g3, g2∨g3]); s ∈ {0.3, …, 0.9}; the reference split
  (random_split with seed 40: ⌊64·s⌋ train rows, the rest halved into val and test, so the test
  split has 23 rows at s = 0.3 and 4 at s = 0.9).
- **Reference protocol** (the reference README, ../shared/spec/hier_modular.md §5.1, §5.3): Gaussian
  noise σ = 0.1 on training inputs at every access (train-eval, val and test clean), Adam with
  weight decay 1e-3 on every parameter group including the routing and location logits, batch 64,
  1000 epochs (one optimizer step each: batch 64 > the at most 57 training rows), 10 seeds:
  - MLP 6-36-36-36-2, lr 0.1;
  - modular (`hierarchically_modular`, modules 2-12-1, top-2 routing), lr 0.01, routing lr 0.1:
    learned routing with τ = 2; learned routing with Gumbel noise, τ = 1 and per-sample routing;
    known routing (only the modules train);
  - shared modules (`hierarchically_modular_shared_modules`, one pool module per hidden layer),
    lr 0.01, routing and location lr 0.1, τ = 2 (location noise and temperature follow
    `use_gumbel` and τ, as the reference): everything learned; known routing and locations.
- **Ablation**: the same runs without input noise and with weight decay 0 (the MLP keeps its weight
  decay 1e-3: the reference README gives it), the settings of modlab's earlier tables except that
  those ran 500 epochs and, for shared modules, always drew location noise at τ = 1 (it now
  follows `use_gumbel` and τ in both protocols).
- Deliberately different from the reference: every s from 0.3 to 0.9 (the README runs s = 0.5);
  evaluation every 10 epochs (the final values are those of the last epoch either way).
- Accuracy is per-bit accuracy of the final epoch on the test split. The **all-zeros baseline** is
  the per-bit accuracy of predicting 0 everywhere on the same split (`test_zeros_accuracy`; the
  Boolean targets are mostly 0). Intervals are 95 % t-intervals of the mean over seeds, clipped to
  [0, 1]; std is the sample std. "Recovers the true routing": the final routing equals the true wiring up to input
  order within a module, module permutations within a layer and, for shared modules, relabelling of
  the pool (`test_routing_correct`, plugins/models/hier_modular/README.md).

Wall time: first run start to last run end, as measured on the 2-core development machine, which
may have been running other sweeps or builds at the same time; training time: the runs' epoch
times summed.
"""

MNIST_HEADER = """## MNIST variant (§5.2)

Two MNIST images of digits 0..7 (3 bits each) labelled by the [6,3,2,2] function of the 6 bits
(rotated_mnist `mode = "digit_pairs"`). A fraction s of the 64 digit pairs trains; the held-out
pairs give val and test2 (unseen pairs, 100 image pairs each from the MNIST test file); test1 = the
train pairs on MNIST test images. Pair split and image draws use the run's seed. Models: MLP
1568-256-128-36-36-36-36-2; modular with image modules 784-128-64-3 (learned Gumbel-softmax image
selection and learned routing, τ = 2, routing lr 0.1), and the same with known image selection and
known routing (only the modules train). Adam lr 0.001, batch 64, no input noise or weight decay,
5 seeds, s ∈ {0.3, 0.5, 0.8}.

Two protocols: the **reference's**, 200 epochs and 1000 image pairs per train pair (the top of its
100–1000 range; `sweeps/hier_modular/mnist_reference.toml`, `mnist_mlp_reference.toml`), and a
**small** one, 30 epochs and 100 image pairs per train pair (`mnist.toml`, `mnist_mlp.toml`), with
1/67 of the compute. Deliberately different from the reference in both: evaluation every 10 epochs
(the final values are those of the last epoch either way), 5 seeds.
"""

# The reference protocol's compute against the small one's: 200 / 30 epochs × 1000 / 100 train pairs.
MNIST_REFERENCE_FACTOR = 200 / 30 * 1000 / 100


def protocol_name(p):
    return "reference protocol" if p == "yes" else p[4:]


def mnist_cost(by_proto):
    """The runs' training time per protocol; without reference-protocol runs, how long they would
    take with --jobs 2, scaled from the others."""
    train = {p: sum(r["time_s"] for r in rs) for p, rs in by_proto.items()}
    if "yes" in train:
        return ("Training time summed over the runs: " +
                "; ".join(f"{protocol_name(p)}: {duration(t)}" for p, t in train.items()) + ".\n")
    t = sum(train.values())
    return (f"The reference protocol's sweeps have not been run here. Scaled from these runs (training time "
            f"{duration(t)} in all), they need {MNIST_REFERENCE_FACTOR:.0f}× their compute, about "
            f"{duration(t * MNIST_REFERENCE_FACTOR / 2)} with --jobs 2 on 2 cores.\n")


def missing_reference(by_proto):
    """The models run under another protocol but not under the reference's, with the time their
    reference-protocol runs would take with --jobs 2, from the reference runs' mean training time."""
    done = {r["label"] for r in by_proto.get("yes", [])}
    missing = defaultdict(set)
    for p, rs in by_proto.items():
        for r in rs:
            if p != "yes" and r["label"] not in done:
                missing[r["label"]].add((r["fraction"], r["seed"]))
    if not done or not missing:
        return ""
    per_run = np.mean([r["time_s"] for r in by_proto["yes"]])
    n = sum(len(v) for v in missing.values())
    sweeps = sorted({"mnist_mlp_reference.toml" if label == "MLP" else "mnist_reference.toml" for label in missing})
    return (f"Not run here under the reference protocol: {'; '.join(sorted(missing))} ({n} runs, "
            f"{', '.join(f'`sweeps/hier_modular/{x}`' for x in sweeps)}); at the measured {duration(per_run)} of "
            f"training per reference-protocol run, about {duration(n * per_run / 2)} with --jobs 2 on 2 cores.\n")


# The Boolean model each MNIST model is compared with (the same model on the 6 bits themselves).
BOOLEAN_OF_MNIST = {"MLP": "MLP", "modular, known routing + known images": "modular, known routing",
                    "modular, learned routing + image selection": "modular, learned routing, τ=2"}


def boolean_gap(stats, records):
    """Each MNIST model's test2 accuracy (reference protocol) against the same model's test
    accuracy on the Boolean task ([6,3,2,2], reference protocol) at the same s: what reading the
    bits from images costs."""
    out = []
    for (label, s), rs in sorted(by_label_fraction(records).items()):
        st = stats.get(("yes", "6,3,2,2", BOOLEAN_OF_MNIST.get(label, ""), s))
        if st:
            n, mean, _, half = mean_ci(r["test2_accuracy"] for r in rs)
            out.append(f"{label}, s = {s:g}: test2 accuracy {accuracy_interval(mean, half)} on MNIST "
                       f"(all-zeros baseline {np.nanmean([r['zeros'] for r in rs]):.3f}) against "
                       f"{st.get('text') or accuracy_interval(st['mean'], st['half'])} test accuracy on the Boolean "
                       f"task (baseline {st['zeros']:.3f}).")
    return out


def accuracy_interval(mean, half):
    """"mean [lo, hi]" with the interval clipped to [0, 1], as in the tables."""
    return f"{mean:.3f} [{max(0.0, mean - half):.3f}, {min(1.0, mean + half):.3f}]"


def kept_boolean_stats(lines):
    """The reference-protocol cells of the Boolean section of a page written earlier, read back
    ({"text": "mean [lo, hi]", "zeros": baseline} under aggregate()'s keys): the MNIST comparison's
    Boolean side when --keep keeps that section."""
    stats, structure, fractions = {}, None, []
    for line in lines:
        if line.startswith("### "):
            m = re.match(r"### \[([\d,]+)\], reference protocol: yes$", line)
            structure = m.group(1) if m else None
        cells = [c.strip() for c in line.strip("|").split("|")]
        if structure is None or not line.startswith("| ") or len(cells) < 3:
            continue
        if cells[:2] == ["model", "reference protocol?"]:
            fractions = [float(c[2:]) for c in cells[2:]]
        elif cells[0].startswith("all-zeros baseline"):
            for s, z in zip(fractions, cells[2:]):
                for key in [k for k in stats if k[1] == structure and k[3] == s]:
                    stats[key]["zeros"] = float(z)
        elif cells[1] == "yes":
            for s, cell in zip(fractions, cells[2:]):
                m = re.match(r"([\d.]+) ± [\d.]+ (\[[\d.]+, [\d.]+\])", cell)
                if m:
                    stats[("yes", structure, cells[0], s)] = {"text": f"{m.group(1)} {m.group(2)}", "zeros": math.nan}
    return stats


def mnist_section(mnist, stats=None):
    """The MNIST part of the page: per protocol the findings and tables, then the differences
    between the first protocol (the reference's, where run) and each other."""
    by_proto = defaultdict(list)
    for runs in mnist.values():
        for r in runs:
            by_proto[r["protocol"]].append(r)
    protos = sorted(by_proto, key=lambda p: (p != "yes", p))
    parts = [MNIST_HEADER, mnist_cost(by_proto), missing_reference(by_proto)]
    for p in protos:
        parts += [f"### MNIST, reference protocol: {p}\n", "Findings (computed from the runs):\n"]
        parts += [f"- {f}" for f in mnist_findings(by_proto[p])]
        if p == "yes" and stats:
            parts += [f"- {f}" for f in boolean_gap(stats, by_proto[p])]
        parts += [mnist_tables(by_proto[p], p), ""]
    for p in protos[1:]:
        parts += [mnist_difference(by_proto[protos[0]], by_proto[p], protos[0], p), ""]
    return parts


def is_mnist(config):
    return config["dataset"].get("plugin") == "rotated_mnist"


def read_any(run_id, run, config):
    return read_mnist_run(run_id, run, config) if is_mnist(config) else read_run(run_id, run, config)


PYTORCH_TEXT = """### Cross-check with a PyTorch implementation

`bench/python/hier_modular_ref.py` implements the same models the way the reference's code base does
(nn.ModuleList of module MLPs, DataLoader, torch.optim.Adam with `weight_decay` on every group). Run
with the reference protocol (`--noise 0.1 --wd 1e-3`, 1000 epochs) on a few cells, it shows whether
what modlab's runs show under that protocol is the protocol's doing or modlab's:
"""


BOOLEAN_TITLE = "## Boolean tasks"
MNIST_TITLE = MNIST_HEADER.splitlines()[0]
THROUGHPUT = ("Throughput of these sweeps against the reference's PyTorch code: bench/README.md, "
              "`bench_hier_modular`.")


def page(boolean, mnist, commands, figure, pytorch=None, old=None):
    """The page from the runs; `old` (old_page() of the page as it was: --keep) keeps the runs-table
    rows of the sweeps not given and the Boolean or MNIST part when no sweep of that kind is given."""
    kept_rows, kept = old or ({}, {})
    parts = [HEADER, "## Runs\n", run_summary({**boolean, **mnist}, commands, kept_rows), ""]
    records = [r for runs in boolean.values() for r in runs]
    stats = aggregate(records) if records else None
    if not stats and BOOLEAN_TITLE in kept:
        parts += kept[BOOLEAN_TITLE]
        stats = kept_boolean_stats(kept[BOOLEAN_TITLE])
    elif stats:
        parts += [BOOLEAN_TITLE + "\n", "Findings (computed from the tables below):\n"]
        parts += [f"- {f}" for f in findings(stats) + protocol_findings(stats)]
        parts += [tables(stats), ""]
        if figure:
            parts.append(f"![test accuracy and routing recovery, reference protocol]({figure})\n")
        if pytorch:
            parts += [PYTORCH_TEXT, f"`{pytorch[1]}`\n", pytorch_table(pytorch[0]), ""]
    if any(mnist.values()):
        parts += mnist_section(mnist, stats)
    elif MNIST_TITLE in kept:
        lines = [line for line in kept[MNIST_TITLE] if line != THROUGHPUT]
        while lines and not lines[-1].strip():
            lines.pop()
        parts += lines + [""]
    parts.append("\n" + THROUGHPUT + "\n")
    return "\n".join(parts)


def check_keep(kept_rows, boolean, mnist):
    """--keep rewrites the Boolean or the MNIST part from the sweeps given of that kind (their tables
    combine sweeps), so a part rewritten needs every sweep of it that the page lists."""
    for given, kind, of_kind in ((boolean, "Boolean", lambda n: "mnist" not in n),
                                 (mnist, "MNIST", lambda n: "mnist" in n)):
        missing = [n for n in kept_rows if of_kind(n) and n not in given]
        if any(given.values()) and missing:
            sys.exit(f"plot_hier_modular: --keep rewrites the page's {kind} part from the {kind} sweeps given, "
                     f"and the page lists more: give their folders too ({', '.join(missing)})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", help="sweep output folders (each with sweep.h5); MNIST sweeps are told "
                    "apart by their dataset")
    ap.add_argument("--out", default="hier_modular.png", help="figure file (default: hier_modular.png)")
    ap.add_argument("--no-plot", action="store_true", help="print the tables only")
    ap.add_argument("--doc", help="write the whole results page here (the figure goes to --out)")
    ap.add_argument("--pytorch", help="JSON lines of bench/python/hier_modular_ref.py runs, for the cross-check table")
    ap.add_argument("--pytorch-command", default="", help="the command that wrote --pytorch, quoted in the page")
    ap.add_argument("--keep", action="store_true",
                    help="with --doc: keep the page's rows of sweeps whose folders are not given (or hold no sweep "
                         "yet), and its Boolean or MNIST part when no sweep of that kind is given")
    args = ap.parse_args()
    if args.keep and not args.doc:
        ap.error("--keep needs --doc")
    if args.keep:
        args.folders = [f for f in args.folders if os.path.exists(os.path.join(f, "sweep.h5"))]
    old = old_page(args.doc) if args.keep and os.path.exists(args.doc) else None
    boolean, mnist, commands = {}, {}, {}
    for folder in args.folders:
        name, runs = completed_runs(folder, read_any)
        commands[name] = sweep_command(folder)
        (mnist if runs and "label" in runs[0] else boolean)[name] = runs
    if old:
        check_keep(old[0], boolean, mnist)
    elif not any(boolean.values()) and not any(mnist.values()):
        sys.exit("no completed runs in " + ", ".join(args.folders))
    records = [r for runs in boolean.values() for r in runs]
    figure = None
    if records and not args.no_plot:
        figure = plot(aggregate(records), args.out)
    if args.doc:
        rel = os.path.relpath(os.path.abspath(figure), os.path.dirname(os.path.abspath(args.doc))) if figure else None
        with open(args.doc, "w") as f:
            f.write(page(boolean, mnist, commands, rel,
                         (args.pytorch, args.pytorch_command) if args.pytorch else None, old))
        print(f"wrote {args.doc}" + (f" and {figure}" if figure else ""))
        return
    if records:
        print(f"{len(records)} completed runs")
        print(tables(aggregate(records)))
    if any(mnist.values()):
        print("\n".join(mnist_section(mnist)))
    if figure:
        print(f"\nfigure: {figure}")


if __name__ == "__main__":
    main()
