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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sweep_summary import (ci_text, completed_runs, config_name, duration, load as load_summary,  # noqa: E402
                           count_runs, old_page, paired_text, run_times, sweep_command, text, wall)

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


# ------------------------------------------------------------------ the results page (--doc)

def findings(finds):
    """The list of paired differences under a section's table (nothing when there are none)."""
    return (["Paired differences (computed from the runs):", ""] + [f"- {x}" for x in finds] + [""]) if finds else []


def paired(rows_a, rows_b, key, scale=100.0):
    """a − b (× scale) over the seeds present in both, with its 95 % interval, as text."""
    by_seed = lambda rows: {r["seed"]: scale * r.get(key, math.nan) for r in rows}  # noqa: E731
    return paired_text(by_seed(rows_a), by_seed(rows_b))


def value(row, key):
    v = row.get(key)
    try:
        return float(v)
    except (TypeError, ValueError):
        return text(v).strip('"') if v is not None else None


def aistats_label(r):
    e, gating = int(value(r, "model.num_experts")), value(r, "model.gating")
    if e == 1:
        return "single CNN (E = 1)"
    name = f"E = {e}, " + ("attentive gate" if gating == "attentive" else "softmax gate")
    if value(r, "model.w_importance"):
        name += f" + importance {value(r, 'model.w_importance'):g}"
    if value(r, "model.beta_same") or value(r, "model.beta_diff"):
        name += f" + L_s (β_s {value(r, 'model.beta_same'):g}, β_d {value(r, 'model.beta_diff'):g})"
    return name


def xai_label(r, sweep):
    if sweep == "moe_mnist_xai_experts":
        return "1: experts trained alone on their class pairs (gate untrained)"
    if sweep == "moe_mnist_xai_gate":
        return "2: gate trained over the prechosen experts"
    if sweep == "moe_mnist_xai_scratch":
        return "4: unrestricted mixture trained jointly from scratch"
    same = int(value(r, "model.expert_init_seed")) == 1000
    if sweep == "moe_mnist_xai_scratch_reuse":
        return "5: stage 4's gate + new experts, " + ("same initial weights as stage 4" if same else
                                                      "other random initial weights")
    if not value(r, "model.init_gate_from"):
        return "3: the restricted mixture trained jointly from scratch (modlab's comparison)"
    return "3: stage 2's gate + new experts, " + ("same initial weights as stage 1" if same else
                                                 "other random initial weights")


def grouped(rows, label):
    groups = OrderedDict()
    for r in rows:
        if r.get("status") == "completed":
            groups.setdefault(label(r), []).append(r)
    return groups


def group_table(groups, columns, protocol):
    lines = ["| configuration | reference protocol? | runs | " + " | ".join(c[0] for c in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for name, rs in groups.items():
        cells = [ci_text([fn(r) for r in rs], d, 0.0, 100.0 if "%" in title else math.inf) for title, fn, d in columns]
        lines.append(f"| {name} | {protocol(name)} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


ERR = ("test error %", lambda r: 100.0 * (1.0 - r.get("test_accuracy", math.nan)), 2)
HU = ("H_u test", lambda r: r.get("test_gate_usage_entropy", math.nan), 2)
MI = ("I(E;Y) test", lambda r: r.get("test_gate_mutual_information", math.nan), 2)
AISTATS_COLUMNS = (ERR, ("train error % (training batches)", lambda r: 100.0 * r.get("fit_error", math.nan), 2),
                   ("H_s (training batches)", lambda r: r.get("fit_gate_sample_entropy", math.nan), 2),
                   ("H_u (training batches)", lambda r: r.get("fit_gate_usage_entropy", math.nan), 2), HU,
                   ("I(E;Y) (training batches)", lambda r: r.get("fit_gate_mutual_information", math.nan), 2), MI)


def aistats_section(rows, title=None, intro=""):
    """The AISTATS table (MNIST, or with `title` and `intro` another dataset's): one row per
    configuration; each against the E-expert softmax gate, and the attentive gate's I(E;Y)."""
    groups = grouped(rows, aistats_label)
    seeds = sorted({int(r["seed"]) for rs in groups.values() for r in rs})
    out = [title or AISTATS_TITLE, "",
           f"{intro}Seeds {', '.join(map(str, seeds))}. Final epoch. \"Training batches\": accumulated over the last "
           "epoch's training forwards as the reference logs them (`fit_*`); \"test\": the 10,000 test images. "
           "Entropies and I(E;Y) in bits (H_u at most log2 E; I(E;Y) counts the selected expert's predicted "
           "class, as the reference).", "",
           group_table(groups, AISTATS_COLUMNS, lambda n: "yes (5 of its 10 runs)"), ""]
    base = next((n for n in groups if n.startswith("E = ") and n.endswith(", softmax gate")), None)
    plain = groups.get(base)
    finds = []
    if plain:
        for n, rs in groups.items():
            if n != base:
                finds.append(f"{n} − {base}, test error (points): {paired(rs, plain, 'test_accuracy', -100.0)}")
    att = next((rs for n, rs in groups.items() if n.startswith("E = ") and n.endswith(", attentive gate")), None)
    if att and plain:
        finds.append(f"attentive − softmax gate, test I(E;Y) (bits): "
                     f"{paired(att, plain, 'test_gate_mutual_information', 1.0)}")
    return out + findings(finds)


def fmnist_section(rows):
    return aistats_section(rows, FMNIST_TITLE,
                           "`sweeps/moe/fmnist.toml`: the configurations of the MNIST table above on Fashion-MNIST with the "
                           "reference's Fashion networks (expert conv(1→1) → 169 → 64 → 32 → 10; gate conv(1→8) + BN → "
                           "8·169 → 512 → 32 → E), normalised with (0.2859, 0.3530); Adam 1e-3, batch 512, 20 epochs. ")


def importance_section(rows):
    """The w_imp scan: one row per gate and weight; each weight against the lowest, per gate."""
    label = lambda r: (("attentive" if value(r, "model.gating") == "attentive" else "softmax") +  # noqa: E731
                       f" gate, w_imp {value(r, 'model.w_importance'):g}")
    groups = grouped(rows, label)
    seeds = sorted({int(r["seed"]) for rs in groups.values() for r in rs})
    out = [IMPORTANCE_TITLE, "",
           f"`sweeps/moe/mnist_importance.toml`: the settings of the AISTATS table above (E = 5, Adam 1e-3, batch "
           f"512, 20 epochs) with the importance weight w_imp ∈ {{0.2, 0.4, 0.6, 0.8, 1.0}}, softmax and attentive "
           f"gate. Seeds {', '.join(map(str, seeds))}. Columns as above.", "",
           group_table(groups, AISTATS_COLUMNS, lambda n: "yes (5 of its 10 runs)"), ""]
    finds = []
    for gate in ("softmax gate", "attentive gate"):
        scan = sorted(((value(rs[0], "model.w_importance"), n, rs) for n, rs in groups.items() if gate in n),
                      key=lambda t: t[0])
        for w, n, rs in scan[1:]:
            finds.append(f"{n} − {scan[0][1]}, test error (points): {paired(rs, scan[0][2], 'test_accuracy', -100.0)}")
        if len(scan) > 1:
            finds.append(f"{scan[-1][1]} − {scan[0][1]}, H_u test (bits): "
                         f"{paired(scan[-1][2], scan[0][2], 'test_gate_usage_entropy', 1.0)}")
    return out + findings(finds)


def experts_section(rows):
    """E = 10 and 15: one row per size and gate; attentive − softmax gate per size."""
    groups = grouped(rows, aistats_label)
    seeds = sorted({int(r["seed"]) for rs in groups.values() for r in rs})
    out = [EXPERTS_TITLE, "",
           "`sweeps/moe/mnist_experts.toml`: the settings of the AISTATS table above with E = 10 (20 epochs) and "
           f"E = 15 (10 epochs, as the reference), softmax and attentive gate, no regulariser. Seeds "
           f"{', '.join(map(str, seeds))}. Columns as above.", "",
           group_table(groups, AISTATS_COLUMNS, lambda n: "yes (5 of its 10 runs)"), ""]
    finds = []
    for n, rs in groups.items():
        soft = groups.get(n.replace("attentive gate", "softmax gate"))
        if "attentive gate" in n and soft:
            finds.append(f"{n} − softmax gate, test error (points): {paired(rs, soft, 'test_accuracy', -100.0)}")
            finds.append(f"{n} − softmax gate, test I(E;Y) (bits): "
                         f"{paired(rs, soft, 'test_gate_mutual_information', 1.0)}")
    return out + findings(finds)


def sample_similarity_label(r):
    gate = "attentive" if value(r, "model.gating") == "attentive" else "softmax"
    return f"{gate} gate, β_s {value(r, 'model.beta_same'):g}, β_d {value(r, 'model.beta_diff'):g}"


def sample_similarity_findings(groups):
    """Per gate: the lowest mean test error against the weakest setting (smallest β_s, then β_d);
    per gate and β_s the largest β_d against the smallest, and at the smallest β_d the largest β_s
    against the smallest, on test error and the gate's entropies."""
    finds = []
    mean_err = lambda rs: sum(100.0 * (1.0 - r.get("test_accuracy", math.nan)) for r in rs) / len(rs)  # noqa: E731
    for gate in ("softmax gate", "attentive gate"):
        cells = {(value(rs[0], "model.beta_same"), value(rs[0], "model.beta_diff")): (n, rs)
                 for n, rs in groups.items() if n.startswith(gate)}
        if len(cells) < 2:
            continue
        weakest, base = min(cells), cells[min(cells)]
        best = min(cells.values(), key=lambda c: mean_err(c[1]))
        if best is not base:
            finds.append(f"{best[0]} (the lowest mean test error of the {gate}) − {base[0]}, test error (points): "
                         f"{paired(best[1], base[1], 'test_accuracy', -100.0)}")
        pairs = [sorted(k for k in cells if k[0] == bs) for bs in sorted({k[0] for k in cells})]  # β_d scans
        column = sorted(k for k in cells if k[1] == weakest[1])  # the β_s scan at the smallest β_d
        for keys in pairs + [column]:
            if len(keys) > 1:
                finds += sample_similarity_pair(cells[keys[-1]], cells[keys[0]])
    return finds


def sample_similarity_pair(hi, lo):
    """hi − lo, each (name, runs), on test error and the gate's entropies and information."""
    out = []
    for what, key, scale in (("test error (points)", "test_accuracy", -100.0),
                             ("H_s training batches (bits)", "fit_gate_sample_entropy", 1.0),
                             ("H_u training batches (bits)", "fit_gate_usage_entropy", 1.0),
                             ("I(E;Y) test (bits)", "test_gate_mutual_information", 1.0)):
        out.append(f"{hi[0]} − {lo[0]}, {what}: {paired(hi[1], lo[1], key, scale)}")
    return out


def sample_similarity_section(rows):
    """The L_s grid: one row per gate, β_s and β_d; the paired differences of sample_similarity_findings."""
    groups = grouped(rows, sample_similarity_label)
    seeds = sorted({int(r["seed"]) for rs in groups.values() for r in rs})
    betas = lambda key: ", ".join(f"{b:g}" for b in sorted({value(rs[0], key) for rs in groups.values()}))  # noqa: E731
    out = [SAMPLE_SIMILARITY_TITLE, "",
           "`sweeps/moe/mnist_sample_similarity.toml`: the settings of the AISTATS table above (E = 5, Adam 1e-3, "
           "batch 512, 20 epochs) with the sample-similarity loss in the reference's form (β_s·same − β_d·diff/B²) "
           f"over β_s ∈ {{{betas('model.beta_same')}}} and β_d ∈ {{{betas('model.beta_diff')}}}, softmax and "
           f"attentive gate. Seeds {', '.join(map(str, seeds))}. Columns as above; the runs without L_s are the "
           "AISTATS table's.", "",
           group_table(groups, AISTATS_COLUMNS, lambda n: "yes (5 of its 10 runs)"), ""]
    return out + findings(sample_similarity_findings(groups))


def simple_section(title, intro, rows, label, columns, protocol):
    groups = grouped(rows, label)
    return [title, "", intro, "", group_table(groups, columns, protocol), ""]


def toy_exp2_extra(rows):
    """Train-split allocation of the fast (lr 0.01) and the slow (1e-4) expert after the last epoch."""
    fast = [r.get("train_expert0_count", math.nan) for r in rows if r.get("status") == "completed"]
    slow = [r.get("train_expert1_count", math.nan) for r in rows if r.get("status") == "completed"]
    total = [a + b for a, b in zip(fast, slow)]
    all_fast = sum(1 for a, t in zip(fast, total) if t > 0 and a >= 0.99 * t)
    return [f"Examples of the train split whose argmax gate is the fast expert (lr 0.01) / the slow one (1e-4), "
            f"last epoch: {ci_text(fast, 0, 0.0)} / {ci_text(slow, 0, 0.0)}; in {all_fast} of {len(fast)} runs the fast expert "
            f"gets ≥ 99 % of them.", ""]


def toy_exp2_section(rows):
    return simple_section(TOY_EXP2_TITLE,
                          "E = 2 linear experts, RMSprop 0.01 / momentum 0.9, 30 epochs, the experts' "
                          "learning rates 0.01 and 1e-4 (`expert_lr_scale = [1.0, 0.01]`).",
                          rows, lambda r: "E = 2, expert lr 0.01 / 1e-4", (ERR, HU),
                          lambda n: "yes") + toy_exp2_extra(rows)


def toy_em_section(rows):
    return simple_section(TOY_EM_TITLE,
                          "E = 4 linear experts and gate on the toy multi_class task; the reference's "
                          "M-step loss against the complete-data form.",
                          rows, lambda r: f"EM, M-step loss {value(r, 'model.em_loss_form')}", (ERR, HU, MI),
                          lambda n: "yes" if "reference" in n else "no: the complete-data M-step loss")


def xai_section(rows):
    return simple_section(XAI_TITLE,
                          "The three staged sweeps `sweeps/moe/mnist_xai_{1_experts,2_gate,3_reuse}.toml`: "
                          "first 10,048 training and 2,000 test images, Normalize(0.5, 0.5), batch 32, "
                          "RMSprop(1e-3, momentum 0.9), 20 epochs, E = 5, experts restricted to the class "
                          "pairs [[0,1],[2,5],[3,4],[6,9],[7,8]] in stages 1–3 and unrestricted in stages 4–5 "
                          "(`mnist_xai_4_scratch.toml`, `mnist_xai_5_scratch_reuse.toml`); test split of "
                          "2,000 images. Stage 1's gate has not trained, so its error says only that the "
                          "stages are separate.",
                          rows, lambda r: r["_label"], (ERR, HU, MI), lambda n: "yes")


MOE_HEADER = """# moe: MNIST and toy results

This page is written by `scripts/plot_moe.py --doc`, run by `scripts/reproduce moe`, from the run
files of the sweeps below; every number comes from those files. Cells: mean ± sample std over seeds
[95 % t-interval of the mean]; differences between configurations are paired by seed. The tables
are the reference's experiments with its settings unless the column "reference protocol?" names a
difference. `scripts/reproduce moe --only SWEEP` runs one sweep and rewrites its row and section
only: the others stay as they were written from their own runs.

Wall time: first run start to last run end, as measured on the 2-core development machine, which
may have been running other sweeps or builds at the same time; training time: the runs' epoch
times summed.
"""

AISTATS_TITLE = "## AISTATS MNIST table (moe §1.6)"
SAMPLE_SIMILARITY_TITLE = "## AISTATS sample-similarity grid (moe §1.6)"
FMNIST_TITLE = "## AISTATS Fashion-MNIST table (moe §1.6)"
IMPORTANCE_TITLE = "## AISTATS importance-weight scan (moe §1.6)"
EXPERTS_TITLE = "## AISTATS MNIST with more experts: E = 10 and 15 (moe §1.6)"
TOY_EXP2_TITLE = "## Toy: two experts with different learning rates (XAI Exp. 2)"
TOY_EM_TITLE = "## Toy: the EM method (moe §1.3.3)"
XAI_TITLE = "## MNIST (XAI) Exp. 2: prechosen experts, then the gate, then the gate reused"
NOT_RUN_TITLE = "## Committed, not run here yet"
XAI_SWEEPS = ("moe_mnist_xai_experts", "moe_mnist_xai_gate", "moe_mnist_xai_reuse", "moe_mnist_xai_scratch",
              "moe_mnist_xai_scratch_reuse")
# The page's sections in order: (the sweeps it is computed from, its title, its writer given their rows).
SECTIONS = ((("moe_mnist",), AISTATS_TITLE, aistats_section),
            (("moe_mnist_sample_similarity",), SAMPLE_SIMILARITY_TITLE, sample_similarity_section),
            (("moe_fmnist",), FMNIST_TITLE, fmnist_section),
            (("moe_mnist_importance",), IMPORTANCE_TITLE, importance_section),
            (("moe_mnist_experts",), EXPERTS_TITLE, experts_section),
            (("moe_toy_exp2",), TOY_EXP2_TITLE, toy_exp2_section),
            (("moe_toy_em",), TOY_EM_TITLE, toy_em_section),
            (XAI_SWEEPS, XAI_TITLE, xai_section))
SWEEP_ORDER = [name for sweeps, _, _ in SECTIONS for name in sweeps]

# Committed sweeps not run here: (sweep name, file, what, relative cost of a run against an E = 5 MNIST run).
NOT_RUN = (("moe_mnist_sample_similarity", "mnist_sample_similarity.toml",
            "the AISTATS L_s grid: β_s ∈ {1e-6, 1e-5} × β_d ∈ {1e-6 … 1e-1}, softmax and attentive gate, "
            "reference form", 1.0),
           ("moe_mnist_importance", "mnist_importance.toml",
            "the AISTATS w_imp scan {0.2 … 1.0}, softmax and attentive gate", 1.0),
           ("moe_mnist_experts", "mnist_experts.toml", "E = 10 (20 epochs) and 15 (10 epochs), softmax and attentive "
            "gate; a run costs about 0.6× an E = 5 one (measured here: 33 min of training for the 20 runs)", 0.6),
           ("moe_fmnist", "fmnist.toml", "the AISTATS Fashion-MNIST table; an E = 5 run costs about 5.4× an MNIST one "
            "(the wider gate; measured here: 439 s of training against 82 s, other work beside both); needs the "
            "Fashion-MNIST files (`scripts/setup --data`)", 5.4))


def not_run_section(mnist_runs, present):
    """The committed sweeps not run here (not in `present`), with their run counts and the time they
    would take with --jobs 2, scaled from the measured training time of E = 5 MNIST runs."""
    e5 = [r["time_s"] for r in mnist_runs if r.get("experts") == 5]
    per_run = sum(e5) / len(e5) if e5 else math.nan
    lines = [NOT_RUN_TITLE, "",
             f"Estimated time with --jobs 2 on 2 cores: runs × the mean training time of this page's E = 5 MNIST "
             f"runs ({duration(per_run) if e5 else 'not measured'}) × the relative cost / 2.", "",
             "| sweep | what | runs | estimated time |", "|---|---|---|---|"]
    sweeps = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sweeps", "moe")
    for name, file, what, cost in NOT_RUN:
        if name in present:
            continue
        n = count_runs(os.path.join(sweeps, file))
        est = duration(n * per_run * cost / 2) if e5 else "?"
        lines.append(f"| `sweeps/moe/{file}` | {what} | {n} | about {est} |")
    return lines + [""]


def timed_runs(folder):
    """(sweep name, [run_times + experts of each completed run]) of a sweep folder."""
    return completed_runs(folder, lambda run_id, run, config: dict(
        run_times(run), experts=int(config.get("model", {}).get("num_experts", 4))))


def run_table(folder, name, runs):
    return (f"| {name} | {len(runs)} | {wall(runs)[2]} | {duration(sum(r['time_s'] for r in runs))} | "
            f"`{sweep_command(folder, '--jobs 2 --threads 1')}` |")


def write_page(folders, doc, keep=False):
    """The page from the sweep folders. With `keep`, the row and section of every sweep not among
    the folders (or whose folder holds no sweep yet) are those of the page as it was."""
    if keep:
        folders = [f for f in folders if os.path.exists(os.path.join(f, "sweep.h5"))]
    old_rows, old_sections = old_page(doc) if keep and os.path.exists(doc) else ({}, {})
    old_rows = {name: row for name, row in old_rows.items() if name in SWEEP_ORDER}
    timed = {}
    for folder in folders:
        name, runs = timed_runs(folder)
        timed[name] = (folder, runs)
    rows = {name: run_table(folder, name, runs) for name, (folder, runs) in timed.items()}
    for name, row in old_rows.items():
        rows.setdefault(name, row)
    parts = [MOE_HEADER, "## Runs", "", "| sweep | completed runs | wall time | training time summed | command |",
             "|---|---|---|---|---|"]
    parts += [rows[n] for n in SWEEP_ORDER if n in rows] + [rows[n] for n in rows if n not in SWEEP_ORDER] + [""]
    for sweeps, title, section in SECTIONS:
        given = [n for n in sweeps if n in timed]
        if given and (not keep or len(given) == len(sweeps) or title not in old_sections):
            section_rows = []
            for n in given:
                loaded, _ = load_summary(timed[n][0], "plot_moe.py")
                section_rows += [dict(r, _label=xai_label(r, n)) if n in XAI_SWEEPS else r for r in loaded]
            parts += section(section_rows)
        elif title in old_sections:
            parts += old_sections[title]
    mnist = [r for n in ("moe_mnist", "moe_mnist_importance") if n in timed for r in timed[n][1]]
    if mnist or NOT_RUN_TITLE not in old_sections:
        parts += not_run_section(mnist, set(rows))
    else:
        parts += [l for l in old_sections[NOT_RUN_TITLE]
                  if not any(f"`sweeps/moe/{file}`" in l for name, file, _, _ in NOT_RUN if name in rows)]
    with open(doc, "w") as f:
        f.write("\n".join(parts) + "\n")
    print(f"wrote {doc}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", help="sweep output folders (holding sweep.h5)")
    ap.add_argument("--out", help="folder for the figures (default <folder>/plots)")
    ap.add_argument("--no-figures", action="store_true", help="print the tables only")
    ap.add_argument("--per-expert", action="store_true",
                    help="also print each expert's allocated sample count and gate-weighted loss (last epoch)")
    ap.add_argument("--doc", help="write the results page (docs/results/moe.md) from the folders, nothing else")
    ap.add_argument("--keep", action="store_true",
                    help="with --doc: keep the page's rows and sections of sweeps whose folders are not given or "
                         "hold no sweep yet (scripts/reproduce moe --only)")
    args = ap.parse_args()
    if args.doc:
        write_page(args.folders, args.doc, args.keep)
        return
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
