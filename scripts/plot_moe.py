#!/usr/bin/python3
"""Results of moe sweeps (plugins/models/moe): tables and figures from a finished sweep folder.

Reads `<folder>/sweep.h5` (the `summary` table and the `runs/<id>` links to the run files) and
- prints a Markdown table per sweep: one row per configuration (the swept keys), mean ± std over
  seeds of the test error (%), the gate's expert-usage entropy H_u and mutual information I(E;Y)
  (bits), and the number of finished runs;
- draws, for the first seed of every configuration, the expert × class heatmap of
  `tensors/allocation` (examples of each true class sent to each argmax-gate expert);
- for runs on 2-D inputs (the toy tasks), draws the decision regions of the gate and of every
  expert over the recorded 100 × 100 grid (`tensors/decision/*`);
- for every configuration, the per-expert allocated sample count (mean gate probability × N) and
  the gate-weighted expert loss on the train split over epochs, mean ± std over seeds (the
  reference's two-expert different-lr plots, toy Exp. 2), and prints the last epoch's values.

    /usr/bin/python3 scripts/plot_moe.py results/quickstart [more folders] [--out DIR]

Figures go to `<folder>/plots/` unless --out is given.
"""
import argparse
import math
import os
import sys
from collections import OrderedDict

import h5py
import numpy as np

from sweep_summary import config_name, load as load_summary

def mean_std(values):
    v = [x for x in values if not math.isnan(x)]
    if not v:
        return "n/a"
    m = float(np.mean(v))
    s = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return f"{m:.3f} ± {s:.3f}"


def table(rows, swept):
    groups = OrderedDict()
    for r in rows:
        if r.get("status") != "completed":
            continue
        groups.setdefault(config_name(r, swept), []).append(r)
    lines = ["| configuration | runs | test error % | H_u (bits) | I(E;Y) (bits) |", "|---|---|---|---|---|"]
    for name, rs in groups.items():
        err = [100.0 * (1.0 - r.get("test_accuracy", float("nan"))) for r in rs]
        hu = [r.get("test_gate_usage_entropy", float("nan")) for r in rs]
        mi = [r.get("test_gate_mutual_information", float("nan")) for r in rs]
        lines.append(f"| {name} | {len(rs)} | {mean_std(err)} | {mean_std(hu)} | {mean_std(mi)} |")
    return "\n".join(lines), groups


def run_group(sweep_file, run_id):
    return sweep_file["runs"][run_id]


def draw(folder, groups, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    written = []
    with h5py.File(os.path.join(folder, "sweep.h5"), "r") as f:
        for i, (name, rs) in enumerate(groups.items()):
            r = rs[0]
            try:
                run = run_group(f, r["run_id"])
            except KeyError:
                continue
            stem = os.path.join(out_dir, f"config{i:02d}_{r['run_id']}")
            if "tensors/allocation" in run:
                alloc = run["tensors/allocation"][()]
                fig, ax = plt.subplots(figsize=(1 + 0.5 * alloc.shape[1], 1 + 0.5 * alloc.shape[0]))
                im = ax.imshow(alloc, cmap="viridis", aspect="auto")
                for e in range(alloc.shape[0]):
                    for c in range(alloc.shape[1]):
                        ax.text(c, e, str(int(alloc[e, c])), ha="center", va="center", color="w", fontsize=7)
                ax.set_xlabel("true class")
                ax.set_ylabel("expert (argmax gate)")
                ax.set_title(f"experts used per class\n{name}, seed {int(r['seed'])}", fontsize=8)
                fig.colorbar(im, ax=ax)
                fig.tight_layout()
                fig.savefig(stem + "_allocation.png", dpi=100)
                plt.close(fig)
                written.append(stem + "_allocation.png")
            if "tensors/decision/gate" in run:
                xs = run["tensors/decision/x"][()]
                ys = run["tensors/decision/y"][()]
                gate = run["tensors/decision/gate"][()]
                experts = run["tensors/decision/experts"][()]
                panels = [("gate: argmax expert", gate)] + [(f"expert {e}: argmax class", experts[e])
                                                            for e in range(experts.shape[0])]
                n = len(panels)
                fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.6), squeeze=False)
                for ax, (title, grid) in zip(axes[0], panels):
                    ax.pcolormesh(xs, ys, grid, shading="auto", cmap="tab10", vmin=0, vmax=9)
                    ax.set_title(title, fontsize=8)
                    ax.set_xticks([])
                    ax.set_yticks([])
                fig.suptitle(f"{name}, seed {int(r['seed'])}", fontsize=8)
                fig.tight_layout()
                fig.savefig(stem + "_decision.png", dpi=100)
                plt.close(fig)
                written.append(stem + "_decision.png")
            per_expert = per_expert_curves(f, rs)
            if per_expert is not None:
                alloc, loss = per_expert
                epochs = np.arange(1, alloc.shape[1] + 1)
                fig, axes = plt.subplots(1, 2, figsize=(8, 3))
                for e in range(alloc.shape[2]):
                    for ax, data in ((axes[0], alloc), (axes[1], loss)):
                        m, sd = data[:, :, e].mean(0), data[:, :, e].std(0)
                        ax.plot(epochs, m, label=f"expert {e}")
                        ax.fill_between(epochs, m - sd, m + sd, alpha=0.2)
                axes[0].set_ylabel("allocated samples (mean g x N)")
                axes[1].set_ylabel("gate-weighted expert loss")
                for ax in axes:
                    ax.set_xlabel("epoch")
                    ax.legend(fontsize=7)
                fig.suptitle(f"train split, {name}, {alloc.shape[0]} seeds", fontsize=8)
                fig.tight_layout()
                fig.savefig(stem + "_per_expert.png", dpi=100)
                plt.close(fig)
                written.append(stem + "_per_expert.png")
    return written


def per_expert_curves(f, rs):
    """[seeds, epochs, E] allocated counts and gate-weighted losses on the train split, or None."""
    alloc, loss = [], []
    for r in rs:
        try:
            run = run_group(f, r["run_id"])
        except KeyError:
            continue
        if "tensors/train/gate_mean" not in run or "tensors/train/expert_loss" not in run:
            continue
        g = run["tensors/train/gate_mean"][()]
        n = run["tensors/train/expert_counts"][()].sum(1, keepdims=True)
        alloc.append(g * n)
        loss.append(run["tensors/train/expert_loss"][()])
    if not alloc or len({a.shape for a in alloc}) != 1:
        return None
    return np.stack(alloc), np.stack(loss)


def per_expert_table(folder, groups):
    """Last-epoch allocated count and gate-weighted loss per expert (train split), mean ± std over seeds."""
    lines = []
    with h5py.File(os.path.join(folder, "sweep.h5"), "r") as f:
        for name, rs in groups.items():
            curves = per_expert_curves(f, rs)
            if curves is None:
                continue
            alloc, loss = curves
            cells = [f"expert {e}: {mean_std(list(alloc[:, -1, e]))} samples, loss {mean_std(list(loss[:, -1, e]))}"
                     for e in range(alloc.shape[2])]
            lines.append(f"- {name}: " + "; ".join(cells))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", help="sweep output folders (holding sweep.h5)")
    ap.add_argument("--out", help="folder for the figures (default <folder>/plots)")
    ap.add_argument("--no-figures", action="store_true", help="print the tables only")
    ap.add_argument("--per-expert", action="store_true",
                    help="also print each expert's allocated sample count and gate-weighted loss (last epoch)")
    args = ap.parse_args()
    for folder in args.folders:
        rows, swept = load_summary(folder, "plot_moe.py")
        md, groups = table(rows, swept)
        print(f"## {folder}\n")
        print(md)
        print()
        if args.per_expert:
            print("Per expert after the last epoch (train split, mean ± std over seeds):\n")
            print(per_expert_table(folder, groups))
            print()
        if not args.no_figures:
            out = args.out or os.path.join(folder, "plots")
            written = draw(folder, groups, out)
            print(f"{len(written)} figures in {out}")


if __name__ == "__main__":
    main()
