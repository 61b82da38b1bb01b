"""Each model plugin's own figures for the HTML report (report.py), drawn by the plot scripts of
the checkout (scripts/plot_<plugin>.py) and, for the routing of hier_modular, here.

``figures(model, folder)`` returns a list of PluginFigure (kind, configuration or "", caption, PNG
bytes), or None when no script draws figures of that model (model = the config's model.plugin).
"""
import contextlib
import importlib
import io
import os
import re
import sys
import tempfile

import numpy as np

from .reader import list_tensors, tensors

SCRIPTS = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
DPI = 80


class PluginFigure:
    def __init__(self, kind, config, caption, png):
        self.kind, self.config, self.caption, self.png = kind, config, caption, png


def script(name):
    """The plot script scripts/<name>.py as a module."""
    if not os.path.isfile(os.path.join(SCRIPTS, name + ".py")):
        raise FileNotFoundError(f"{SCRIPTS}/{name}.py not found (the report draws the plugins' figures with the "
                                "plot scripts of a modlab checkout)")
    if SCRIPTS not in sys.path:
        sys.path.insert(0, SCRIPTS)
    return importlib.import_module(name)


def png_of(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def saved(draw, kinds):
    """Runs `draw(folder)` on a temporary folder and returns a PluginFigure per PNG it wrote there
    that `kinds(filename)` names: kinds returns (kind, configuration, caption) or None to skip."""
    out = []
    with tempfile.TemporaryDirectory(prefix="modlab_report_") as tmp:
        with contextlib.redirect_stdout(io.StringIO()):
            draw(tmp)
        for name in sorted(os.listdir(tmp)):
            what = kinds(name)
            if what and name.endswith(".png"):
                out.append(PluginFigure(*what, read(os.path.join(tmp, name))))
    return out


def close_pyplot_figures(before):
    """Closes the pyplot figures a script opened and left open (those not in `before`)."""
    import matplotlib.pyplot as plt

    for num in set(plt.get_fignums()) - set(before):
        plt.close(num)


def pyplot_figures():
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.get_fignums()


# ---------------------------------------------------------------------------------------------
# moe: scripts/plot_moe.py returns its figures


def moe(folder):
    pm = script("plot_moe")
    rows, swept = pm.load_summary(folder, "scripts/report")
    _, groups = pm.table(rows, swept)
    return [PluginFigure(f.kind, f.config, f"{f.config}: {f.caption}", png_of(f.figure))
            for f in pm.figures(folder, groups)]


# ---------------------------------------------------------------------------------------------
# mode: scripts/plot_mode.py writes its figures into a folder

MODE_CAPTIONS = {
    "probing": "Expert probing on the test split, first seed: each expert's accuracy on the examples the gate "
               "routes to it and on all examples (bar label: examples routed to it).",
    "gate_heatmap": "Gate weights (the allocation to experts) of the first test examples, rows labelled with "
                    "the examples' classes, first seed.",
    "losses": "Training and validation cross-entropy and the distillation term per epoch, first seed.",
}


def mode(folder):
    pm = script("plot_mode")
    rows, swept = pm.load(folder)
    groups = pm.groups_of(rows, swept)
    names = list(groups)

    def kinds(filename):
        if filename == "accuracy_vs_alpha.png":
            return "accuracy_vs_alpha", "", "Test accuracy against alpha (mean ± std over seeds); dashed: alpha = 0."
        if filename == "probing.png":
            return "probing_all", "", "Expert probing per configuration: mean over experts ± std over seeds."
        m = re.match(r"config(\d+)_[0-9a-f]+_(\w+)\.png$", filename)
        if m and m.group(2) in MODE_CAPTIONS and int(m.group(1)) < len(names):
            config = names[int(m.group(1))]
            return m.group(2), config, f"{config}: {MODE_CAPTIONS[m.group(2)]}"
        return None

    before = pyplot_figures()
    try:
        return saved(lambda tmp: pm.draw([folder], rows, swept, groups, tmp), kinds)
    finally:
        close_pyplot_figures(before)


# ---------------------------------------------------------------------------------------------
# hier_modular: scripts/plot_hier_modular.py (accuracy and routing recovery against the training
# fraction) and the learned routing of each configuration, drawn here


def hier_modular(folder):
    ph = script("plot_hier_modular")
    _, runs = ph.completed_runs(folder, ph.read_any)
    records = [r for r in runs if "variant" in r]  # the Boolean tasks (MNIST pairs have no such plot)
    if not records:
        return []
    before = pyplot_figures()
    try:
        out = saved(lambda tmp: ph.plot(ph.aggregate(records), os.path.join(tmp, "hier_modular.png")),
                    lambda name: ("accuracy_routing", "", "Per-bit test accuracy (mean and 95 % interval over seeds, "
                                  "with the all-zeros baseline) and the "
                                  "fraction of runs whose learned routing recovers the true one, against the "
                                  "training fraction s, per model variant and task structure."))
    finally:
        close_pyplot_figures(before)
    return out + routing_figures(folder)


def routing_layers(names):
    """The routing tensors of a run: [(title, logits name, selected name, true name)], layers first."""
    layers = sorted((int(m.group(1)) for m in (re.fullmatch(r"routing\.logits\.layer(\d+)", n) for n in names) if m))
    out = [(f"layer {k}", f"routing.logits.layer{k}", f"routing.layer{k}", f"routing.true.layer{k}") for k in layers]
    if "routing.logits.output" in names:
        out.append(("output", "routing.logits.output", "routing.output", "routing.true.output"))
    return out


def routing_figure(folder, run_id, title):
    """One panel per layer (and the output routing): the routing logits of every task and module
    (rows) over the layer's inputs (columns); dots mark the inputs the evaluation routing selects,
    crosses the true routing."""
    from matplotlib.figure import Figure

    names = list_tensors(folder, run_id)
    layers = routing_layers(names)
    logits = {name: tensors(folder, run_id, z) for name, z, _, _ in layers}
    scale = max(float(np.abs(z).max()) for z in logits.values()) or 1.0
    fig = Figure(figsize=(2.2 + 2.0 * len(layers), 3.6), layout="constrained")
    axes = fig.subplots(1, len(layers), squeeze=False)[0]
    for ax, (name, _, chosen, true) in zip(axes, layers):
        z = logits[name]
        z = z.reshape(z.shape[0], -1, z.shape[-1])                 # [T, M, I] (output: M = 1)
        tasks, modules, inputs = z.shape
        im = ax.imshow(z.reshape(tasks * modules, inputs), aspect="auto", cmap="coolwarm", vmin=-scale, vmax=scale)
        for picks, marker, colour in ((chosen, "o", "black"), (true, "x", "lime")):
            if picks in names:
                sel = tensors(folder, run_id, picks).reshape(tasks * modules, -1)
                rows = np.repeat(np.arange(tasks * modules), sel.shape[1])
                ax.scatter(sel.ravel(), rows, marker=marker, s=18, color=colour, linewidths=1.2)
        ax.set_yticks(range(tasks * modules), [f"t{t} m{m}" for t in range(tasks) for m in range(modules)], fontsize=6)
        ax.set_xticks(range(inputs))
        ax.tick_params(labelsize=6)
        ax.set_xlabel("input", fontsize=7)
        ax.set_title(name, fontsize=8)
    fig.colorbar(im, ax=list(axes), label="routing logit")
    fig.suptitle(f"{title}   (o selected, x true)", fontsize=8)
    return fig


def routing_figures(folder):
    """The learned routing of the first completed run of each configuration that has one."""
    from .report import Sweep

    sweep = Sweep(folder)
    done = sweep.completed()
    out = []
    for label in sweep.configs:
        runs = done[done["config"] == label]
        if runs.empty:
            continue
        run_id, seed = runs["run_id"].iloc[0], runs["seed"].iloc[0]
        if not routing_layers(list_tensors(folder, run_id)):
            continue
        fig = routing_figure(folder, run_id, f"{label}, seed {seed}")
        out.append(PluginFigure("routing", label, f"{label}: learned routing of seed {seed} (run {run_id}): the "
                                "routing logits of each task t and module m (rows) over the layer's inputs "
                                "(columns); o = the inputs the evaluation routing selects, x = the true routing "
                                "(when the structure has one; the learned one recovers it when it matches up to "
                                "a permutation of the modules of a layer and of each module's inputs).",
                                png_of(fig)))
    return out


# ---------------------------------------------------------------------------------------------
# masked_analyzer and goe: the figure functions of scripts/plot_masked.py and scripts/plot_goe.py


def masked(folder):
    pm = script("plot_masked")
    _, runs = pm.load_sweep(folder)
    variants = {}
    for r in runs:
        variants.setdefault(r["variant"], []).append(r)
    out = []
    with tempfile.TemporaryDirectory(prefix="modlab_report_") as tmp:
        for v, rs in variants.items():
            first = min(rs, key=lambda r: r["seed"])
            splits = sorted({k.split("/")[0] for k in first["tables"] if k.endswith("/accuracy")})
            path = os.path.join(tmp, "f.png")
            if splits:
                pm.plot_inverse(first, splits[0], path)
                out.append(PluginFigure("inverse", v, f"{v}, seed {first['seed']}: accuracy on `{splits[0]}` per "
                                        "sub-task with each stage's mask and with its inverse (¬).", read(path)))
            if pm.plot_iou(first, path):
                out.append(PluginFigure("iou", v, f"{v}, seed {first['seed']}: IoU between the sub-task masks, per "
                                        "masked weight.", read(path)))
            if pm.plot_mask(first, path):
                out.append(PluginFigure("mask", v, f"{v}, seed {first['seed']}: one masked weight matrix, each weight "
                                        "coloured by which sub-task masks keep it.", read(path)))
    return out


def goe(folder):
    pg = script("plot_goe")
    _, runs = pg.load_sweep(folder)
    if not runs:
        return []
    out = []
    with tempfile.TemporaryDirectory(prefix="modlab_report_") as tmp:
        path = os.path.join(tmp, "f.png")
        pg.plot_accuracy(runs, path)
        out.append(PluginFigure("accuracy", "", "Test accuracy (mean ± std over seeds) against inference MACs per "
                                "model; dashed: the same GoE with random routing.", read(path)))
        if pg.plot_routing(runs, path):
            out.append(PluginFigure("routing", "", "Routing: share of each group's test examples on each leaf, for "
                                    "the routed models at the largest width (first seed).", read(path)))
        if pg.plot_reconstructions(runs, path):
            out.append(PluginFigure("reconstructions", "", "Test digits and their VQ-VAE reconstructions (the "
                                    "latent router of the first seed).", read(path)))
    return out


PROVIDERS = {
    "moe": moe,
    "mode": mode,
    "hierarchically_modular": hier_modular,
    "hierarchically_modular_shared_modules": hier_modular,
    "mlp": hier_modular,
    "masked_analyzer": masked,
    "goe": goe,
}


def scripts_for(models):
    """[(model names, draw function or None)]: the models of a sweep grouped by the function that
    draws their figures (mlp and hierarchically_modular runs of one sweep share one set)."""
    out = {}
    for model in models:
        draw = PROVIDERS.get(model)
        out.setdefault(draw or model, (draw, []))[1].append(model)
    return [(names, draw) for draw, names in out.values()]
