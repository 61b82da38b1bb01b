#!/usr/bin/python3
"""Generalization of MLPs and hierarchically modular networks on the Boolean tasks (hier_modular).

Reads finished sweep folders (sweeps/hier_modular/*.toml run with `modlab run`), and for every
task structure plots the final test accuracy against the training fraction s (mean ± std over
seeds, one line per model variant) and the fraction of runs whose learned routing recovers the
true one (the `test_routing_correct` metric: up to the order of a module's inputs and permutations
of the modules in a layer; see plugins/models/hier_modular/README.md). Prints the numbers as
Markdown tables.

    /usr/bin/python3 scripts/plot_hier_modular.py results/hier_modular_mlp results/hier_modular_modular \
        results/hier_modular_shared --out hier_modular.png
"""
import argparse
import math
import os
import sys
import tomllib
from collections import defaultdict

import h5py
import numpy as np


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


def last_value(run, name):
    """Final (last non-NaN) value of metrics/<name>, or NaN."""
    if f"metrics/{name}" not in run:
        return math.nan
    v = run[f"metrics/{name}"][:]
    v = v[~np.isnan(v)]
    return float(v[-1]) if len(v) else math.nan


def load(folders):
    """One record per completed run: structure, variant, fraction, seed, metrics."""
    records = []
    for folder in folders:
        path = os.path.join(folder, "sweep.h5")
        if not os.path.exists(path):
            sys.exit(f"{path}: no sweep index (run the sweep first: modlab run SWEEP.toml --out {folder})")
        with h5py.File(path, "r") as f:
            summary = f["summary"][:]
            for row in summary:
                status = row["status"].decode() if isinstance(row["status"], bytes) else row["status"]
                run_id = row["run_id"].decode() if isinstance(row["run_id"], bytes) else row["run_id"]
                if status != "completed" or run_id not in f["runs"]:
                    continue
                run = f["runs"][run_id]
                attr = run.attrs["config"]
                config = tomllib.loads(attr.decode() if isinstance(attr, bytes) else attr)
                d = config["dataset"]
                records.append({
                    "structure": ",".join(str(x) for x in d.get("structure", [6, 3, 2, 2])),
                    "variant": variant(config),
                    "fraction": float(d.get("train_fraction", 0.8)),
                    "seed": int(config["run"].get("seed", 0)),
                    "test_accuracy": last_value(run, "test_accuracy"),
                    "train_accuracy": last_value(run, "train_accuracy"),
                    "routing_correct": last_value(run, "test_routing_correct"),
                    "epochs": int(config.get("train", {}).get("epochs", 0)),
                })
    return records


def aggregate(records):
    """(structure, variant, fraction) → n, accuracy mean/std, recovered fraction (NaN for MLPs)."""
    groups = defaultdict(list)
    for r in records:
        groups[(r["structure"], r["variant"], r["fraction"])].append(r)
    out = {}
    for key, rs in groups.items():
        acc = np.array([r["test_accuracy"] for r in rs])
        rc = np.array([r["routing_correct"] for r in rs])
        out[key] = {
            "n": len(rs),
            "acc_mean": float(np.nanmean(acc)),
            "acc_std": float(np.nanstd(acc)),
            "recovered": float(np.nanmean(rc)) if np.any(~np.isnan(rc)) else math.nan,
        }
    return out


def order(variants):
    rank = lambda v: (0 if v.startswith("MLP") else 1 if v.startswith("modular") else 2, "known" not in v, v)
    return sorted(variants, key=rank)


def tables(stats):
    """Markdown: per structure, test accuracy (mean ± std) and the recovered fraction, by s."""
    lines = []
    for structure in sorted({k[0] for k in stats}, key=lambda s: (len(s), s)):
        keys = [k for k in stats if k[0] == structure]
        fractions = sorted({k[2] for k in keys})
        variants = order({k[1] for k in keys})
        n = sorted({stats[k]["n"] for k in keys})
        lines.append(f"\n### [{structure}]: test accuracy (mean ± std over {'/'.join(map(str, n))} seeds)\n")
        lines.append("| model | " + " | ".join(f"s={s:g}" for s in fractions) + " |")
        lines.append("|---|" + "---|" * len(fractions))
        for v in variants:
            cells = []
            for s in fractions:
                st = stats.get((structure, v, s))
                cells.append(f"{st['acc_mean']:.3f} ± {st['acc_std']:.3f}" if st else "")
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
        modular = [v for v in variants if not v.startswith("MLP")]
        if modular:
            lines.append(f"\n### [{structure}]: fraction of runs whose routing recovers the true one\n")
            lines.append("| model | " + " | ".join(f"s={s:g}" for s in fractions) + " |")
            lines.append("|---|" + "---|" * len(fractions))
            for v in modular:
                cells = []
                for s in fractions:
                    st = stats.get((structure, v, s))
                    cells.append("" if not st or math.isnan(st["recovered"]) else f"{st['recovered']:.2f}")
                lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(stats, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    structures = sorted({k[0] for k in stats}, key=lambda s: (len(s), s))
    fig, axes = plt.subplots(len(structures), 2, figsize=(12, 4 * len(structures)), squeeze=False)
    for row, structure in enumerate(structures):
        keys = [k for k in stats if k[0] == structure]
        for v in order({k[1] for k in keys}):
            fs = sorted(k[2] for k in keys if k[1] == v)
            st = [stats[(structure, v, s)] for s in fs]
            m = np.array([x["acc_mean"] for x in st])
            sd = np.array([x["acc_std"] for x in st])
            (line,) = axes[row][0].plot(fs, m, marker="o", label=v)
            axes[row][0].fill_between(fs, m - sd, m + sd, alpha=0.15, color=line.get_color())
            rec = np.array([x["recovered"] for x in st])
            if not np.all(np.isnan(rec)):
                axes[row][1].plot(fs, rec, marker="o", label=v, color=line.get_color())
        axes[row][0].set_title(f"[{structure}]: test accuracy (mean ± std)")
        axes[row][0].set_xlabel("training fraction s")
        axes[row][0].set_ylabel("per-bit test accuracy")
        axes[row][0].set_ylim(0.4, 1.02)
        axes[row][0].grid(alpha=0.3)
        axes[row][0].legend(fontsize=8)
        axes[row][1].set_title(f"[{structure}]: learned routing recovers the true one")
        axes[row][1].set_xlabel("training fraction s")
        axes[row][1].set_ylabel("fraction of runs")
        axes[row][1].set_ylim(-0.03, 1.03)
        axes[row][1].grid(alpha=0.3)
        axes[row][1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"\nfigure: {out}")


def mnist_tables(folders):
    """Tables of the MNIST variant (rotated_mnist mode = "digit_pairs", sweeps/hier_modular/mnist*.toml):
    final train / test1 (train pairs, MNIST test images) / test2 (unseen pairs) accuracy, mean ± std
    over seeds, and the share of runs recovering the routing and reading the two images with
    different image modules."""
    rows = defaultdict(list)
    for folder in folders:
        runs = os.path.join(folder, "runs")
        for name in sorted(os.listdir(runs)):
            if not name.endswith(".h5"):
                continue
            with open(os.path.join(runs, name[:-3] + ".toml"), "rb") as f:
                config = tomllib.load(f)
            m = config["model"]
            if m["plugin"] == "mlp":
                label = "MLP"
            elif m.get("known_module_inputs", False):
                label = "modular, known routing" + (" + known images" if m.get("known_image_inputs", False) else "")
            else:
                label = "modular, learned routing" + ("" if m.get("known_image_inputs", False) else " + image selection")
            with h5py.File(os.path.join(runs, name), "r") as f:
                if f.attrs.get("status", b"completed") not in ("completed", b"completed"):
                    continue
                met = f["metrics"]
                rows[(label, float(config["dataset"]["train_fraction"]))].append(
                    {k: float(met[k][-1]) if k in met else math.nan
                     for k in ("train_accuracy", "test1_accuracy", "test2_accuracy", "test2_routing_correct",
                               "test2_images_correct")})
    labels = sorted({k[0] for k in rows})
    fractions = sorted({k[1] for k in rows})
    out = []
    for key, title in (("train_accuracy", "train accuracy"),
                       ("test1_accuracy", "test1 accuracy (train pairs, MNIST test images)"),
                       ("test2_accuracy", "test2 accuracy (unseen pairs)"),
                       ("test2_routing_correct", "fraction of runs recovering the routing"),
                       ("test2_images_correct", "fraction of runs reading the two images with different modules")):
        out.append(f"\n### MNIST pairs: {title}\n")
        out.append("| model | " + " | ".join(f"s={x:g}" for x in fractions) + " |")
        out.append("|---|" + "---|" * len(fractions))
        for label in labels:
            cells = []
            for x in fractions:
                v = np.array([r[key] for r in rows.get((label, x), [])])
                if v.size == 0 or np.all(np.isnan(v)):
                    cells.append("–")
                elif "accuracy" in key:
                    cells.append(f"{v.mean():.3f} ± {v.std():.3f}")
                else:
                    cells.append(f"{v.mean():.2f}")
            out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", help="sweep output folders (each with sweep.h5)")
    ap.add_argument("--out", default="hier_modular.png", help="figure file (default: hier_modular.png)")
    ap.add_argument("--no-plot", action="store_true", help="print the tables only")
    ap.add_argument("--mnist", action="store_true",
                    help="the folders hold the MNIST variant (sweeps/hier_modular/mnist*.toml): print its tables")
    args = ap.parse_args()
    if args.mnist:
        print(mnist_tables(args.folders))
        return
    records = load(args.folders)
    if not records:
        sys.exit("no completed runs in " + ", ".join(args.folders))
    stats = aggregate(records)
    epochs = sorted({r["epochs"] for r in records})
    print(f"{len(records)} completed runs, epochs {'/'.join(map(str, epochs))}")
    print(tables(stats))
    if not args.no_plot:
        plot(stats, args.out)


if __name__ == "__main__":
    main()
