#!/usr/bin/python3
"""Results of moe sweeps (plugins/models/moe): tables and figures from a finished sweep folder.

Reads `<folder>/sweep.h5` (the `summary` table and the `runs/<id>` links to the run files) and
- prints a Markdown table per sweep: one row per configuration (the swept keys), mean ± std over
  seeds of the test error (%), the gate's expert-usage entropy H_u and mutual information I(E;Y)
  (bits), and the number of finished runs;
- draws, for every configuration, the expert × class heatmap of `tensors/allocation` (examples of
  each true class sent to each argmax-gate expert), one panel per seed;
- for runs on 2-D inputs (the toy tasks), draws the decision regions of the first seed over the
  recorded 100 × 100 grid (`tensors/decision/*`): the gate's argmax expert, the mixture's predicted
  class and every expert's argmax class, with the input features x1, x2 on the axes and a legend;
- for every configuration, the per-expert allocated sample count (mean gate probability × N) and
  the gate-weighted expert loss on the train split over epochs (the reference's two-expert
  different-lr plots, toy Exp. 2), one row per seed, and with --per-expert prints the last epoch's
  values.

Experts are interchangeable: which expert takes which part of the data differs from seed to seed,
so expert e of one seed has nothing to do with expert e of another. The per-expert curves are
therefore drawn per seed, never averaged; the --per-expert table averages over seeds only after
ranking each seed's experts by their final allocated count (rank 1 = the most samples), except when
the config gives every expert its own role (`model.expert_lr_scale` with different factors, or
`model.expert_classes`): then expert e is the same expert in every seed and keeps its number.
Colours: an expert has the same dark colour (Dark2) in every figure; classes are drawn in light
colours (Set3), and every map says which is which.

    /usr/bin/python3 scripts/plot_moe.py results/quickstart [more folders] [--out DIR]

Figures go to `<folder>/plots/` unless --out is given. `figures(folder, groups)` returns them as
matplotlib figures (scripts/report embeds them in its HTML page).
"""
import argparse
import math
import os
import sys
from collections import OrderedDict

import h5py
import numpy as np

from sweep_summary import config_name, load as load_summary, text

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


# Colours: an expert has the same dark colour (Dark2) in every figure; classes are drawn in light
# colours (Set3, tab20 beyond 12 classes), so a colour never means an expert in one panel and a
# class in the next.
EXPERT_COLOURS = "Dark2"
CLASS_COLOURS = "Set3"

CAPTIONS = {
    "allocation": "Experts used per class: the examples of each true class whose argmax-gate expert is e after "
                  "training (tensors/allocation: the test split, or the last evaluated split without one), one "
                  "panel per seed. Expert numbers are each seed's own; the expert labels have the experts' colours.",
    "decision": "Decision regions over the two input features x1, x2 (seed {seed}): the gate's argmax expert in "
                "the expert colours (dark), the mixture's predicted class and each expert's argmax class in the "
                "class colours (light).",
    "per_expert": "Allocated samples (mean gate probability × N) and gate-weighted expert loss on the train split "
                  "per epoch, one row per seed, each expert in its colour. Not averaged over seeds: which expert "
                  "takes which part of the data differs from seed to seed.",
}


class MoeFigure:
    """One figure of a configuration: `kind` (allocation, decision, per_expert), the configuration's
    position and name, its first run's id, a caption, and the matplotlib Figure."""

    def __init__(self, kind, index, config, run_id, caption, figure):
        self.kind, self.index, self.config, self.run_id = kind, index, config, run_id
        self.caption, self.figure = caption, figure

    def filename(self):
        return f"config{self.index:02d}_{self.run_id}_{self.kind}.png"


def palette(name, n):
    """n colours of the qualitative colour map `name`, cycled when it has fewer."""
    from matplotlib import colormaps

    cmap = colormaps[name]
    return [cmap(i % cmap.N) for i in range(n)]


def expert_colours(n):
    return palette(EXPERT_COLOURS if n <= 8 else "tab20b", n)


def class_colours(n):
    return palette(CLASS_COLOURS if n <= 12 else "tab20", n)


def colour_legend(fig, colours, what, title, y, width):
    """Patches naming each colour ("expert 0", "class 0", ...) in a row at height `y` (a figure
    fraction) from the left edge of the figure `fig`, `width` inches wide."""
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=c, edgecolor="0.3", label=f"{what} {i}") for i, c in enumerate(colours)]
    fig.legend(handles=handles, title=title, loc="lower left", bbox_to_anchor=(0.005, y),
               ncol=max(1, min(len(handles), int(width / 0.95))), fontsize=7, title_fontsize=7, frameon=False)


def legend_rows(n, width):
    return -(-n // max(1, min(n, int(width / 0.95))))


def allocation_figure(allocs, name):
    """Expert × class heatmaps of tensors/allocation, one panel per (seed, array) of `allocs`."""
    from matplotlib.figure import Figure

    allocs = [(s, a) for s, a in allocs if a.shape == allocs[0][1].shape]
    n_exp, n_cls = allocs[0][1].shape
    colours = expert_colours(n_exp)
    vmax = max(float(a.max()) for _, a in allocs) or 1.0
    cols = min(5, len(allocs))
    rows = -(-len(allocs) // cols)
    fig = Figure(figsize=(1.2 + (1.1 + 0.45 * n_cls) * cols, 0.4 + (1.0 + 0.4 * n_exp) * rows), layout="constrained")
    grid = fig.subplots(rows, cols, squeeze=False)
    axes = grid.ravel()[:len(allocs)]
    for ax in grid.ravel()[len(allocs):]:
        ax.set_visible(False)
    for ax, (seed, a) in zip(axes, allocs):
        im = ax.imshow(a, cmap="viridis", vmin=0, vmax=vmax, aspect="auto")
        for e in range(n_exp):
            for c in range(n_cls):
                ax.text(c, e, str(int(a[e, c])), ha="center", va="center", fontsize=7,
                        color="white" if a[e, c] < 0.6 * vmax else "black")
        ax.set_xticks(range(n_cls))
        ax.set_yticks(range(n_exp), [f"expert {e}" for e in range(n_exp)], fontsize=7)
        for e, label in enumerate(ax.get_yticklabels()):
            label.set_color(colours[e])
            label.set_fontweight("bold")
        ax.set_xlabel("true class", fontsize=8)
        ax.set_title(f"seed {seed}", fontsize=8)
    for ax in grid[:, 0]:
        ax.set_ylabel("argmax-gate expert", fontsize=8)
    fig.colorbar(im, ax=list(grid.ravel()), label="examples")
    fig.suptitle(f"experts used per class: {name}", fontsize=8)
    return fig


def num_classes(run, grids):
    if "tensors/allocation" in run:
        return int(run["tensors/allocation"].shape[1])
    return int(max(g.max() for g in grids)) + 1


def decision_figure(run, title):
    """The decision maps over the recorded grid of inputs (tensors/decision/*): the gate's argmax
    expert (expert colours), the mixture's predicted class and every expert's argmax class (class
    colours), with the input features x1, x2 on the axes and a legend for each colour scheme."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    xs, ys = run["tensors/decision/x"][()], run["tensors/decision/y"][()]
    gate, experts = run["tensors/decision/gate"][()], run["tensors/decision/experts"][()]
    pred = run["tensors/decision/prediction"][()] if "tensors/decision/prediction" in run else None
    ecol = expert_colours(experts.shape[0])
    ccol = class_colours(num_classes(run, list(experts) + ([pred] if pred is not None else [])))
    panels = [("gate: argmax expert", gate, ecol, "black")]
    if pred is not None:
        panels.append(("mixture: predicted class", pred, ccol, "black"))
    panels += [(f"expert {e}: argmax class", experts[e], ccol, ecol[e]) for e in range(experts.shape[0])]
    width = 2.4 * len(panels) + 0.4
    expert_rows, class_rows = legend_rows(len(ecol), width), legend_rows(len(ccol), width)
    legends = 0.2 * (expert_rows + class_rows) + 0.5              # inches: rows and titles
    height = 3.1 + legends
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=0.5 / width, right=1 - 0.1 / width, bottom=(legends + 0.45) / height,
                        top=1 - 0.6 / height, wspace=0.12)
    axes = fig.subplots(1, len(panels), sharex=True, sharey=True)
    for ax, (name, grid, colours, frame) in zip(axes, panels):
        ax.pcolormesh(xs, ys, grid, shading="auto", cmap=ListedColormap(colours), vmin=-0.5, vmax=len(colours) - 0.5)
        ax.set_title(name, fontsize=8, color=frame)
        ax.set_xlabel("x1", fontsize=8)
        ax.tick_params(labelsize=7)
        for spine in ax.spines.values():
            spine.set_edgecolor(frame)
            spine.set_linewidth(2 if frame != "black" else 0.8)
    axes[0].set_ylabel("x2", fontsize=8)
    colour_legend(fig, ecol, "expert", "expert (gate map; frame and title of each expert's map)",
                  (0.2 * class_rows + 0.3) / height, width)
    colour_legend(fig, ccol, "class", "class (mixture and expert maps)", 0.0, width)
    fig.suptitle(title, fontsize=8)
    return fig


def per_expert_figure(curves, name):
    """Allocated samples and gate-weighted expert loss per expert over epochs (train split), one row
    per seed: expert numbers are not comparable between seeds, so nothing is averaged over them."""
    from matplotlib.figure import Figure

    colours = expert_colours(curves[0]["alloc"].shape[1])
    fig = Figure(figsize=(8, 0.6 + 1.9 * len(curves)), layout="constrained")
    axes = fig.subplots(len(curves), 2, squeeze=False, sharex=True)
    for row, c in zip(axes, curves):
        for e in range(c["alloc"].shape[1]):
            row[0].plot(c["epochs"], c["alloc"][:, e], color=colours[e % len(colours)], label=f"expert {e}")
            row[1].plot(c["epochs"], c["loss"][:, e], color=colours[e % len(colours)])
        row[0].set_ylabel(f"seed {c['seed']}\nallocated samples\n(mean g × N)", fontsize=7)
        row[1].set_ylabel("gate-weighted\nexpert loss", fontsize=7)
        for ax in row:
            ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("epoch", fontsize=8)
    axes[0][1].legend(*axes[0][0].get_legend_handles_labels(), loc="upper left", bbox_to_anchor=(1.02, 1),
                      fontsize=7, frameon=False)
    fig.suptitle(f"train split, per seed (not averaged: expert numbers differ between seeds): {name}", fontsize=8)
    return fig


def figures(folder, groups):
    """The figures of each configuration (`groups`: configuration name → summary rows, from table())
    as MoeFigure objects: the allocation heatmaps of every seed, the decision maps of the first seed
    (2-D inputs only) and the per-expert curves of every seed."""
    with h5py.File(os.path.join(folder, "sweep.h5"), "r") as f:
        for i, (name, rs) in enumerate(groups.items()):
            runs = [(r, run_group(f, r["run_id"])) for r in rs if r["run_id"] in f["runs"]]
            if not runs:
                continue
            first, run = runs[0]

            def made(kind, caption, figure):
                return MoeFigure(kind, i, name, first["run_id"], caption, figure)

            allocs = [(int(r["seed"]), g["tensors/allocation"][()]) for r, g in runs if "tensors/allocation" in g]
            if allocs:
                yield made("allocation", CAPTIONS["allocation"], allocation_figure(allocs, name))
            if "tensors/decision/gate" in run:
                seed = int(first["seed"])
                yield made("decision", CAPTIONS["decision"].format(seed=seed),
                           decision_figure(run, f"{name}, seed {seed}"))
            curves = per_expert_curves(f, rs)
            if curves:
                yield made("per_expert", CAPTIONS["per_expert"], per_expert_figure(curves, name))


def draw(folder, groups, out_dir):
    """Writes the figures of figures() as PNG files into `out_dir`; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for fig in figures(folder, groups):
        path = os.path.join(out_dir, fig.filename())
        fig.figure.savefig(path, dpi=100, bbox_inches="tight")
        written.append(path)
    return written


def eval_epochs(run, split, n):
    """The epochs of the `n` evaluations of `split` (rows where its gate metrics were logged), or
    0 .. n-1 when they cannot be told."""
    key = f"metrics/{split}_gate_usage_entropy"
    if key in run:
        epochs = run["metrics/epoch"][()][~np.isnan(run[key][()])]
        if len(epochs) == n:
            return epochs
    return np.arange(n)


def per_expert_curves(f, rs):
    """Per run of `rs` with the train split's per-expert tensors, a dict: seed, run_id, config,
    epochs, alloc and loss ([evaluations, E] allocated counts and gate-weighted losses)."""
    import tomllib

    curves = []
    for r in rs:
        if r["run_id"] not in f["runs"]:
            continue
        run = run_group(f, r["run_id"])
        if "tensors/train/gate_mean" not in run or "tensors/train/expert_loss" not in run:
            continue
        g = run["tensors/train/gate_mean"][()]
        n = run["tensors/train/expert_counts"][()].sum(1, keepdims=True)
        config = tomllib.loads(text(run.attrs["config"]))
        curves.append({"seed": int(r["seed"]), "run_id": r["run_id"], "config": config,
                       "epochs": eval_epochs(run, "train", len(g)), "alloc": g * n,
                       "loss": run["tensors/train/expert_loss"][()]})
    return curves


def experts_have_roles(config):
    """True when the config gives each expert its own role (different expert_lr_scale values, or
    expert_classes), so that expert e means the same thing in every seed."""
    m = config.get("model", {})
    return len(set(m.get("expert_lr_scale", []))) > 1 or bool(m.get("expert_classes", []))


def canonical(curve):
    """(labels, order) of a run's experts: by expert number when the config gives them roles,
    otherwise ranked by their final allocated count, rank 1 = the most samples."""
    n = curve["alloc"].shape[1]
    if experts_have_roles(curve["config"]):
        return [f"expert {e}" for e in range(n)], list(range(n))
    return [f"rank {k + 1}" for k in range(n)], list(np.argsort(-curve["alloc"][-1], kind="stable"))


def per_expert_table(folder, groups):
    """Last-epoch allocated count and gate-weighted loss per expert (train split), mean ± std over
    seeds after putting each seed's experts in canonical order (see canonical())."""
    lines = []
    with h5py.File(os.path.join(folder, "sweep.h5"), "r") as f:
        for name, rs in groups.items():
            curves = per_expert_curves(f, rs)
            curves = [c for c in curves if c["alloc"].shape == curves[0]["alloc"].shape]
            if not curves:
                continue
            labels, _ = canonical(curves[0])
            orders = [canonical(c)[1] for c in curves]
            alloc = np.stack([c["alloc"][-1, o] for c, o in zip(curves, orders)])
            loss = np.stack([c["loss"][-1, o] for c, o in zip(curves, orders)])
            cells = [f"{labels[k]}: {mean_std(list(alloc[:, k]))} samples, loss {mean_std(list(loss[:, k]))}"
                     for k in range(len(labels))]
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
            print("Per expert after the last epoch (train split, mean ± std over seeds; each seed's experts "
                  "ranked by final allocation, rank 1 = most samples, unless the config gives every expert its "
                  "own role):\n")
            print(per_expert_table(folder, groups))
            print()
        if not args.no_figures:
            out = args.out or os.path.join(folder, "plots")
            written = draw(folder, groups, out)
            print(f"{len(written)} figures in {out}")


if __name__ == "__main__":
    main()
