#!/usr/bin/python3
"""Tables and figures of masked_analyzer sweeps (docs/results/masked_analyzer.md is written by this).

Reads finished sweep folders (sweeps/masked/*.toml run with `modlab run`). For every configuration
(the runs of a sweep that differ only in seed) it averages the analysis tables the runs recorded
(tensors/tables/...: accuracy with each mask and its inverse per sub-task, IoU / shared fractions
between the stage masks, the add/mul confusion) and draws, from the first seed:
  <name>_inverse.png  accuracy on each sub-task with each stage's mask and with its inverse
  <name>_iou.png      IoU between the sub-task masks, per masked weight
  <name>_mask.png     one weight matrix, each weight coloured by which sub-task masks keep it

    /usr/bin/python3 scripts/plot_masked.py results/masked_tuple_fnn results/masked_addmul_fnn \\
        --figures docs/results/masked_analyzer --doc docs/results/masked_analyzer.md --with-header

Without --doc the Markdown goes to stdout.
"""
import math
import os
from collections import defaultdict

import h5py
import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sweep_summary import completed_runs, duration, results_page, text  # noqa: E402




def read_table(run, name):
    t = run[f"tensors/tables/{name}"]
    return [text(r) for r in t.attrs["rows"]], [text(c) for c in t.attrs["columns"]], t[()]


def variant(config):
    """A readable name of a configuration: task, network, alpha."""
    d, m = config["dataset"], config["model"]
    inner = m.get("inner", {})
    data = d["plugin"] + ("/" + d["task"] if "task" in d else "") + ("/" + d["encoding"] if "encoding" in d else "")
    net = inner.get("plugin", "?")
    if "layer_sizes" in inner:
        net += " " + "x".join(str(x) for x in inner["layer_sizes"])
    if "state_size" in inner:
        net += f" {inner.get('n_layers', 2)}x{inner['state_size']}"
    alpha = m.get("mask_loss_weight", 1e-4)
    return f"{data}, {net}, α={alpha:g}"


def read_run(run_id, run, config):
    """A run as a dict with config, seed, tables, masks, times."""
    tables = {}

    def visit(n, obj):
        if isinstance(obj, h5py.Dataset) and "rows" in obj.attrs:
            tables[n] = read_table(run, n)

    if "tensors/tables" in run:
        run["tensors/tables"].visititems(visit)
    masks = {}
    if "tensors/masks" in run:
        for stage in run["tensors/masks"]:
            masks[stage] = {}

            def grab(n, obj, stage=stage):
                if isinstance(obj, h5py.Dataset):
                    masks[stage][n] = obj[()].astype(bool)

            run[f"tensors/masks/{stage}"].visititems(grab)
    return {
        "id": run_id,
        "config": config,
        "seed": int(config["run"].get("seed", 0)),
        "variant": variant(config),
        "tables": tables,
        "masks": masks,
        "stages": text(run.attrs.get("note.masked_analyzer.stages", "")).split(","),
        "params": text(run.attrs.get("note.masked_analyzer.parameters", "")).split(","),
        "time_s": float(np.nansum(run["metrics/time_s"][()])),
        "start": text(run.attrs.get("start_time", "")),
        "end": text(run.attrs.get("end_time", "")),
    }


def load_sweep(folder):
    """(sweep name, runs) of a finished masked_analyzer sweep."""
    return completed_runs(folder, read_run)


def mean_table(runs, name):
    """rows, columns, mean, std over the runs that have table `name`."""
    have = [r["tables"][name] for r in runs if name in r["tables"]]
    if not have:
        return None
    rows, cols = have[0][0], have[0][1]
    stack = np.stack([h[2] for h in have if h[0] == rows and h[1] == cols])
    return rows, cols, np.nanmean(stack, 0), np.nanstd(stack, 0), len(stack)


def md_table(rows, cols, mean, std, n, first="", digits=3, only_rows=None):
    lines = [f"| {first} | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for i, r in enumerate(rows):
        if only_rows is not None and r not in only_rows:
            continue
        cells = []
        for j in range(len(cols)):
            m = mean[i, j]
            cells.append("" if math.isnan(m) else (f"{m:.{digits}f} ± {std[i, j]:.{digits}f}" if n > 1 else f"{m:.{digits}f}"))
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def slug(s):
    keep = "".join(c if c.isascii() and c.isalnum() else "_" for c in s)
    return "_".join(p for p in keep.split("_") if p)[:80]


def plot_inverse(run, split, path):
    rows, cols, vals = run["tables"][f"{split}/accuracy"]
    keep = [i for i, r in enumerate(rows) if r.startswith(("mask ", "inverse ")) or r == "trained"]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(keep)), 3.2))
    width = 0.8 / len(cols)
    for j, c in enumerate(cols):
        ax.bar(np.arange(len(keep)) + j * width, [vals[i, j] for i in keep], width, label=c)
    ax.set_xticks(np.arange(len(keep)) + 0.4 - width / 2)
    ax.set_xticklabels([rows[i].replace("inverse ", "¬") for i in keep], rotation=30, ha="right")
    ax.set_ylabel(f"{split} accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(title="evaluated on", fontsize=7, ncol=len(cols))
    ax.set_title(run["variant"], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_iou(run, path):
    if "iou" not in run["tables"]:
        return False
    rows, cols, vals = run["tables"]["iou"]
    keep = [j for j, c in enumerate(cols) if not c.startswith("full ~")][:6] or list(range(min(6, len(cols))))
    cols, vals = [cols[j] for j in keep], vals[:, keep]
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(rows)), 3))
    width = 0.8 / len(cols)
    for j, c in enumerate(cols):
        ax.bar(np.arange(len(rows)) + j * width, vals[:, j], width, label=c)
    ax.set_xticks(np.arange(len(rows)) + 0.4 - width / 2)
    ax.set_xticklabels(rows, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("IoU")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title(run["variant"], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_mask(run, path):
    """The second masked weight matrix (the first hidden-to-hidden one), up to 200 x 200 entries,
    coloured by which sub-task stages keep each weight."""
    stages = [s for s in run["stages"] if s and s != "full"][:2]
    weights = [p for p in run["params"] if p and all(p in run["masks"].get(s, {}) for s in stages)
               and run["masks"][stages[0]][p].ndim == 2] if stages else []
    if len(stages) < 2 or not weights:
        return False
    p = weights[1] if len(weights) > 1 else weights[0]
    a, b = run["masks"][stages[0]][p][:200, :200], run["masks"][stages[1]][p][:200, :200]
    img = np.ones(a.shape + (3,))
    img[a & ~b] = (0.85, 0.2, 0.2)
    img[b & ~a] = (0.2, 0.35, 0.85)
    img[a & b] = (0.55, 0.1, 0.6)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.imshow(img, interpolation="nearest")
    ax.set_title(f"{p}: red {stages[0]} only, blue {stages[1]} only, purple both", fontsize=7)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def cell(t, row, col):
    """Mean of one cell of a mean_table result, NaN when absent."""
    if t is None or row not in t[0] or col not in t[1]:
        return math.nan
    return float(t[2][t[0].index(row), t[1].index(col)])


def findings(rs, split):
    """Sentences with the numbers that answer the paper's questions, from the mean tables."""
    acc = mean_table(rs, f"{split}/accuracy")
    if acc is None:
        return []
    subs = [c for c in acc[1] if c != "full"]
    out = []
    for s in subs[:4]:
        others = [o for o in subs if o != s]
        if not others:
            continue
        rest = ", ".join(f"{o} {cell(acc, f'inverse {s}', o):.3f}" for o in others[:3])
        out.append(f"- Without {s}'s weights (inverse mask): {s} at {cell(acc, f'inverse {s}', s):.3f} "
                   f"(trained {cell(acc, 'trained', s):.3f}); {rest}.")
    iou = mean_table(rs, "iou")
    if iou is not None and len(subs) >= 2:
        pair = f"{subs[0]} ~ {subs[1]}"
        if pair in iou[1]:
            weights = [r for r in iou[0] if r != "total"]
            out.append(f"- IoU of the {subs[0]} and {subs[1]} masks: {cell(iou, 'total', pair):.3f} in total; "
                       f"{cell(iou, weights[0], pair):.3f} in the first masked weight ({weights[0]}), "
                       f"{cell(iou, weights[-1], pair):.3f} in the last ({weights[-1]}).")
    conf = mean_table(rs, f"{split}/confusion")
    if conf is not None and len(subs) >= 2:
        a, b = subs[0], subs[1]
        out.append(f"- With only the {a} mask, {b} examples get the {a} result in "
                   f"{cell(conf, f'mask {a} | {b}', f'= {a}'):.1%} of cases and the {b} result in "
                   f"{cell(conf, f'mask {a} | {b}', f'= {b}'):.1%}; with only the {b} mask, {a} examples get the "
                   f"{b} result in {cell(conf, f'mask {b} | {a}', f'= {b}'):.1%}.")
    return out




def section(name, runs, figures, doc_dir):
    by_variant = defaultdict(list)
    for r in runs:
        by_variant[r["variant"]].append(r)
    total = sum(r["time_s"] for r in runs)
    starts = sorted(r["start"] for r in runs if r["start"])
    ends = sorted(r["end"] for r in runs if r["end"])
    out = [f"\n## {name}\n",
           f"{len(runs)} completed runs; training time summed over runs {duration(total)} "
           f"(first start {starts[0] if starts else '?'}, last end {ends[-1] if ends else '?'}).\n"]
    for v, rs in by_variant.items():
        seeds = sorted(r["seed"] for r in rs)
        out.append(f"\n### {v}\n\nseeds {seeds}; run ids {', '.join(r['id'] for r in rs)}; "
                   f"training time per run {duration(np.mean([r['time_s'] for r in rs]))}.\n")
        splits = sorted({k.split("/")[0] for r in rs for k in r["tables"] if k.endswith("/accuracy")})
        if splits:
            found = findings(rs, splits[0])
            if found:
                out.append("\nFindings (computed from the tables below):\n\n" + "\n".join(found) + "\n")
        for split in splits:
            t = mean_table(rs, f"{split}/accuracy")
            out.append(f"\nAccuracy on `{split}` (rows: mask; columns: evaluated on; mean ± std over {t[4]} runs):\n")
            out.append(md_table(*t, first="mask"))
            c = mean_table(rs, f"{split}/confusion")
            if c:
                out.append(f"\nPrediction equals the sum / the product / neither, by true op (`{split}`):\n")
                out.append(md_table(*c, first="mask | true op"))
        for name_t, what in (("kept", "fraction of weights each mask keeps"),
                             ("iou", "IoU between masks"), ("iomin", "IoMin between masks"),
                             ("shared", "shared fraction |m_i ∧ ∨_{j≠i} m_j| / |m_i|"),
                             ("control_kept", "fraction of the control mask kept"),
                             ("member_kept", "fraction of each expert's / module's weights kept"),
                             ("sequential_shared", "fraction of each task's mask shared with earlier tasks")):
            t = mean_table(rs, name_t)
            if t:
                out.append(f"\n{what[0].upper() + what[1:]} (`{name_t}`, per masked weight and total):\n")
                out.append(md_table(*t, first="weight"))
        first = sorted(rs, key=lambda r: r["seed"])[0]
        stem = slug(f"{name}_{v}")
        figs = []
        for split in splits[:1]:
            p = os.path.join(figures, stem + "_inverse.png")
            plot_inverse(first, split, p)
            figs.append(p)
        p = os.path.join(figures, stem + "_iou.png")
        if plot_iou(first, p):
            figs.append(p)
        p = os.path.join(figures, stem + "_mask.png")
        if plot_mask(first, p):
            figs.append(p)
        out.append("\n" + " ".join(f"![{os.path.basename(f)}]({os.path.relpath(f, doc_dir)})" for f in figs) + "\n")
    return "\n".join(out)


HEADER = """# masked_analyzer: which weights does each sub-task use?

Question (masked_analyzer §4, Csordás et al. 2021): train a network, freeze it, and train a binary
weight mask for the full task and one for each sub-task. Does removing a sub-task's weights (its
inverse mask) destroy that sub-task and spare the others, and how many weights do the sub-task
masks share? The paper's qualitative answer: the inverse mask of sub-task t destroys t and keeps
the other; the masks of the two tuple pairs share few weights; add and mul share more in the first
layers than in the last.

This page is written by `scripts/plot_masked.py` from the run files of the sweeps below; every
number comes from those files.

How to read the accuracy tables: a row is a mask configuration (`trained`: no mask; `mask s`: only
the weights stage s's mask keeps; `inverse s`: every weight except those; `half first` /
`half second`: the control mask on the first / last half of the layers only). A column is what it
is evaluated on: `full` = the whole task (every output right), a sub-task = its examples with the
other sub-tasks' inputs zeroed, scored on its outputs only (§4.3). For the LSTM, zeroing the other
tuple's input changes what the network sees, so a sub-task column can sit below `full`.

## Setup and what differs from the reference

- Data: `tuple_rnn` (two-digit "double addition" and add/mul mod 100, numpy RandomState with the
  reference's seeds; 1,000,000 training and 10,000 validation examples), digits one-hot, least
  significant first. Evaluation on `valid`.
- Networks as the reference: FNN 80 → 800×4 → 40 run once per tuple (other tuple zeroed), FNN
  42 → 400,400,200 / 800×4 → 20 for add/mul, LSTM 2×256 (the reference's cell); Adam 1e-3, batch
  128, gradient clip 1; masks: logits 2.0, K = 4, τ = 1, Adam 1e-2, biases unmasked, α as listed.
- **Differs: step counts.** The reference trains 20,000 steps and each mask 20,000 steps, 10
  seeds. Here (2 CPU cores, shared with builds while these ran): 5,000 training steps and 1,000
  per mask for the FNNs, 2,000 and 500 for the LSTM, one seed; the 2000×4 FNN and the α scan
  (1e-5, 1e-3 on 800×4) are in the sweep files but were not run here (the 2000×4 network costs
  about six times the 800×4 one). The masks may therefore keep more weights than the reference's,
  which train twenty times longer; where the findings below differ from the paper's (an inverse
  mask that also damages the other sub-task, much sharing between the tuple pairs), this is the
  first difference to rule out with the reference's step counts.
- Masks are trained on batches drawn with replacement by the trainer (the reference: an
  infinite sampler, seed 1234); the frozen weights get no gradient (the reference lets theirs
  accumulate into the clip norm).
- Cross-model runs (moe, hier_modular, mode) have no reference: short training, one seed.
- Permuted MNIST: 4 tasks of 1,000 steps each (the reference: 11 tasks of 30,000 steps), so each
  task's mask is less pruned and each task less trained than the reference's; the sweep gives the
  reference's counts.

Commands (from the repository root):

```sh
build/bin/modlab run sweeps/masked/smoke.toml --jobs 2 --out results/masked_smoke
build/bin/modlab run sweeps/masked/tuple_fnn.toml --jobs 1 --threads 1 --out results/masked_tuple_fnn \\
    --set 'sweep.zip=[{"model.inner.layer_sizes" = [[800, 800, 800, 800]], "model.mask_loss_weight" = [1e-4]}]'
build/bin/modlab run sweeps/masked/tuple_lstm.toml --jobs 1 --threads 1 --out results/masked_tuple_lstm
    # (its only_one_io run was resumed alone, --threads 2)
build/bin/modlab run sweeps/masked/addmul_fnn.toml --jobs 1 --threads 1 --out results/masked_addmul_fnn \\
    --set 'sweep.zip=[{"model.inner.layer_sizes" = [[400, 400, 200], [800, 800, 800, 800]], "model.mask_loss_weight" = [1e-4, 1e-4]}]'
build/bin/modlab run sweeps/masked/cross_model.toml --jobs 1 --threads 1 --out results/masked_cross_model
build/bin/modlab run sweeps/masked/permuted_mnist.toml --jobs 1 --threads 1 --out results/masked_permuted_mnist
/usr/bin/python3 scripts/plot_masked.py results/masked_smoke results/masked_tuple_fnn \\
    results/masked_tuple_lstm results/masked_addmul_fnn results/masked_cross_model \\
    results/masked_permuted_mnist \\
    --figures docs/results/masked_analyzer --doc docs/results/masked_analyzer.md --with-header
```

Wall times: each section gives the runs' training time summed from their `time_s` metrics and
their start and end; up to three sweeps ran at a time next to builds on the 2-core machine, so
they are upper bounds (the smoke sweep was run alone, with `--jobs 2`).
"""


def main():
    results_page(__doc__.split("\n")[0], HEADER, load_sweep, section)


if __name__ == "__main__":
    main()
