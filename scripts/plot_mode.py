#!/usr/bin/python3
"""Results of mode sweeps (plugins/models/mode): a Markdown table and figures from a finished sweep folder.

Reads `<folder>/sweep.h5` (the `summary` table and the `runs/<id>` links to the run files) and
- prints a Markdown table: one row per configuration (the swept keys except the seed), mean ± std
  (n − 1) over seeds of validation and test accuracy (%), test loss (CE), and the expert probing on
  the test split — each expert's accuracy on the examples the gate routes to it (argmax gate,
  averaged over the experts that receive any), on all examples (averaged over experts), and the
  accuracy of predicting with the argmax-gate expert alone;
- draws test accuracy against alpha (log axis, mean ± std over seeds) with the alpha = 0 runs (the
  plain MoE) as a horizontal line, when `model.alpha` is swept;
- draws the expert-probing bars (routed vs all-example accuracy, mean over experts ± std over seeds)
  per configuration, and per expert for the first seed of each configuration;
- draws, for the first seed of every configuration, the loss curves (fit_ce, fit_distill,
  val_loss per epoch) and the gate heatmap (gate weights of the first N test examples).

    /usr/bin/python3 scripts/plot_mode.py /tmp/mode_results_mnist [more folders] [--out DIR] [--no-figures]
    /usr/bin/python3 scripts/plot_mode.py --merge /tmp/mode_results_mnist /tmp/mode_results_alpha

Figures go to `<folder>/plots/` unless --out is given. With --merge the folders are read as one set
of runs (e.g. the alpha scan together with the alpha = 0 / 0.01 runs of mnist.toml); figures then go
to `<first folder>/plots_merged/`.
"""
import argparse
import math
import os
import sys
from collections import OrderedDict

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sweep_summary import (completed_runs, config_name, ci_text, duration, last_metric,  # noqa: E402
                           load as load_summary, paired_text, run_times, sweep_command, wall)

def load(folder):
    """The summary rows of `folder` (each tagged with its folder) and the swept keys."""
    rows, swept = load_summary(folder, "plot_mode.py")
    for r in rows:
        r["_folder"] = folder
    return rows, swept


def values(rs, key, scale=1.0):
    return [scale * r.get(key, float("nan")) for r in rs]


def as_float(v):
    """Swept values come as TOML literals (strings) in the summary table."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def sort_key(row, swept):
    return tuple((0, as_float(row.get(k)), "") if not math.isnan(as_float(row.get(k))) else (1, 0.0, str(row.get(k)))
                 for k in swept)


def mean_std(v, digits=2):
    v = [x for x in v if not math.isnan(x)]
    if not v:
        return "n/a"
    s = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return f"{float(np.mean(v)):.{digits}f} ± {s:.{digits}f}"


def groups_of(rows, swept):
    groups = OrderedDict()
    for r in rows:
        if r.get("status") == "completed":
            groups.setdefault(config_name(r, swept), []).append(r)
    return groups


def table(groups):
    lines = [
        "| configuration | runs | val acc % | test acc % | test CE | probe: routed acc % | probe: all-example acc % "
        "| probe: argmax-gate expert acc % | fit_distill (last epoch) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rs in groups.items():
        lines.append(
            f"| {name} | {len(rs)} | {mean_std(values(rs, 'val_accuracy', 100))} "
            f"| {mean_std(values(rs, 'test_accuracy', 100))} | {mean_std(values(rs, 'test_loss'), 4)} "
            f"| {mean_std(values(rs, 'test_probe_routed_accuracy_mean', 100))} "
            f"| {mean_std(values(rs, 'test_probe_accuracy_mean', 100))} "
            f"| {mean_std(values(rs, 'test_probe_hard_accuracy', 100))} "
            f"| {mean_std(values(rs, 'fit_distill'), 5)} |"
        )
    return "\n".join(lines)


def draw(folders, rows, swept, groups, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    written = []

    # accuracy vs alpha, one series per setting of the other swept keys, the alpha = 0 runs as a line
    if "model.alpha" in swept:
        others = [k for k in swept if k != "model.alpha"]
        series = OrderedDict()
        for r in rows:
            if r.get("status") == "completed":
                series.setdefault(config_name(r, others), {}).setdefault(as_float(r["model.alpha"]), []).append(
                    100.0 * r["test_accuracy"])
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        positive = sorted({a for s in series.values() for a in s if a > 0})
        for i, (name, by_alpha) in enumerate(series.items()):
            color = f"C{i}"
            label = "" if name == "(base)" else f" ({name})"
            xs = [a for a in sorted(by_alpha) if a > 0]
            if xs:
                m = [np.mean(by_alpha[a]) for a in xs]
                s = [np.std(by_alpha[a], ddof=1) if len(by_alpha[a]) > 1 else 0.0 for a in xs]
                ax.errorbar(xs, m, yerr=s, marker="o", capsize=3, color=color, label="MoDE" + label)
            if 0.0 in by_alpha and positive:
                m0 = np.mean(by_alpha[0.0])
                s0 = np.std(by_alpha[0.0], ddof=1) if len(by_alpha[0.0]) > 1 else 0.0
                ax.axhline(m0, color=color, linestyle="--", label="MoE (alpha = 0)" + label)
                ax.axhspan(m0 - s0, m0 + s0, color=color, alpha=0.15)
        ax.set_xscale("log")
        ax.set_xlabel("alpha (distillation weight)")
        ax.set_ylabel("test accuracy %")
        ax.set_title("MoDE: test accuracy vs alpha (mean ± std over seeds)", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = os.path.join(out_dir, "accuracy_vs_alpha.png")
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)

    # probing bars: mean over experts, error bars over seeds
    names = list(groups)
    routed = [values(groups[n], "test_probe_routed_accuracy_mean", 100) for n in names]
    allex = [values(groups[n], "test_probe_accuracy_mean", 100) for n in names]
    fig, ax = plt.subplots(figsize=(1.5 + 1.3 * len(names), 3.8))
    x = np.arange(len(names))
    for off, data, label in [(-0.2, routed, "on routed examples"), (0.2, allex, "on all examples")]:
        m = [np.nanmean(d) for d in data]
        s = [np.nanstd(d, ddof=1) if len(d) > 1 else 0.0 for d in data]
        ax.bar(x + off, m, 0.4, yerr=s, capsize=3, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=20, ha="right", fontsize=7)
    ax.set_ylabel("expert accuracy % (mean over experts)")
    ax.set_title("expert probing on the test split", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    p = os.path.join(out_dir, "probing.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    written.append(p)

    for i, (name, rs) in enumerate(groups.items()):
        r = rs[0]
        with h5py.File(os.path.join(r["_folder"], "sweep.h5"), "r") as f:
            try:
                run = f["runs"][r["run_id"]]
            except KeyError:
                continue
            stem = os.path.join(out_dir, f"config{i:02d}_{r['run_id']}")
            title = f"{name}, seed {int(r['seed'])}"
            if "tensors/probe_routed_accuracy" in run:
                ra = 100 * run["tensors/probe_routed_accuracy"][()]
                aa = 100 * run["tensors/probe_accuracy"][()]
                cnt = run["tensors/probe_count"][()]
                e = np.arange(len(ra))
                fig, ax = plt.subplots(figsize=(1.5 + 0.6 * len(ra), 3.4))
                ax.bar(e - 0.2, np.nan_to_num(ra), 0.4, label="on routed examples")
                ax.bar(e + 0.2, aa, 0.4, label="on all examples")
                for k in e:
                    ax.text(k - 0.2, 2, str(int(cnt[k])), ha="center", fontsize=6, rotation=90, color="w")
                ax.set_xticks(e)
                ax.set_xlabel("expert (bar label: examples routed to it)")
                ax.set_ylabel("accuracy %")
                ax.set_title(f"expert probing (test)\n{title}", fontsize=8)
                ax.legend(fontsize=7)
                fig.tight_layout()
                fig.savefig(stem + "_probing.png", dpi=100)
                plt.close(fig)
                written.append(stem + "_probing.png")
            if "tensors/gate_heatmap" in run:
                hm = run["tensors/gate_heatmap"][()]
                tg = run["tensors/gate_heatmap_targets"][()]
                fig, ax = plt.subplots(figsize=(2 + 0.4 * hm.shape[1], 6))
                im = ax.imshow(hm, aspect="auto", cmap="viridis", vmin=0, vmax=1)
                ax.set_yticks(range(len(tg)))
                ax.set_yticklabels([str(int(t)) for t in tg], fontsize=4)
                ax.set_xlabel("expert")
                ax.set_ylabel("test example (label)")
                ax.set_title(f"gate weights\n{title}", fontsize=8)
                fig.colorbar(im, ax=ax)
                fig.tight_layout()
                fig.savefig(stem + "_gate_heatmap.png", dpi=100)
                plt.close(fig)
                written.append(stem + "_gate_heatmap.png")
            if "metrics/fit_ce" in run:
                fig, ax1 = plt.subplots(figsize=(5, 3.4))
                ep = np.arange(1, len(run["metrics/fit_ce"]) + 1)
                ax1.plot(ep, run["metrics/fit_ce"][()], marker="o", label="train CE")
                if "metrics/val_loss" in run:
                    ax1.plot(ep, run["metrics/val_loss"][()], marker="o", label="val CE")
                ax1.set_xlabel("epoch")
                ax1.set_ylabel("cross-entropy")
                if "metrics/fit_distill" in run:
                    ax2 = ax1.twinx()
                    ax2.plot(ep, run["metrics/fit_distill"][()], marker="s", color="C3", label="alpha * L_KD")
                    ax2.set_ylabel("alpha * L_KD", color="C3")
                ax1.legend(fontsize=7)
                ax1.set_title(f"losses\n{title}", fontsize=8)
                fig.tight_layout()
                fig.savefig(stem + "_losses.png", dpi=100)
                plt.close(fig)
                written.append(stem + "_losses.png")
    return written


# ------------------------------------------------------------------ the results page (--doc)

# The reference's MNIST example (spec mode.md, examples/mnist_example.py).
REFERENCE = {"num_experts": 8, "alpha": 0.01, "kd_outputs": "separate", "kd_gate_gradient": True, "temperature": 0.02,
             "epochs": 5, "batch_size": 64}
COLUMNS = (("val_accuracy", "val acc %", 100, 2), ("test_accuracy", "test acc %", 100, 2), ("test_loss", "test CE", 1, 4),
           ("test_probe_routed_accuracy_mean", "probe: routed acc %", 100, 1),
           ("test_probe_accuracy_mean", "probe: all-example acc %", 100, 1),
           ("test_probe_hard_accuracy", "probe: argmax-gate expert acc %", 100, 1),
           ("test_gate_usage_entropy", "H_u test (bits)", 1, 2))


def protocol(m, t):
    """"yes" for the reference example's settings, else what differs (α = 0 is the plain MoE)."""
    have = {"num_experts": int(m.get("num_experts", 4)), "alpha": float(m.get("alpha", 0.0)),
            "kd_outputs": m.get("kd_outputs", "shared"), "kd_gate_gradient": bool(m.get("kd_gate_gradient", True)),
            "temperature": float(m.get("temperature", 1.0)), "epochs": int(t.get("epochs", 0)),
            "batch_size": int(t.get("batch_size", 0))}
    if have["alpha"] == 0.0:
        have["kd_outputs"], have["kd_gate_gradient"], have["temperature"] = "separate", True, 0.02  # unused at α = 0
    toml = lambda v: str(v).lower() if isinstance(v, bool) else f'"{v}"' if isinstance(v, str) else f"{v:g}"  # noqa: E731
    diff = [f"{k} {toml(have[k])} (reference {toml(REFERENCE[k])})" for k in REFERENCE if have[k] != REFERENCE[k]]
    if have["alpha"] == 0.0:
        return "baseline: the plain MoE (α = 0)" + ("; " + ", ".join(d for d in diff if not d.startswith("alpha"))
                                                   if len(diff) > 1 else "")
    return "yes" if not diff else "no: " + ", ".join(diff)


def read_run(run_id, run, config):
    m, t = config["model"], config.get("train", {})
    counts = [last_metric(run, f"test_expert{e}_count") for e in range(int(m.get("num_experts", 4)))]
    total = sum(c for c in counts if not math.isnan(c))
    r = {k: last_metric(run, k) for k, *_ in COLUMNS}
    r.update({"seed": int(config["run"].get("seed", 0)), "protocol": protocol(m, t),
              "experts": int(m.get("num_experts", 4)),
              "config": f"E={int(m.get('num_experts', 4))}, α={float(m.get('alpha', 0.0)):g}"
                        + ((", L_KD on a separate forward" if m.get("kd_outputs", "shared") == "separate"
                            else ", L_KD on the prediction's forward") if float(m.get("alpha", 0.0)) > 0 else "")
                        + ("" if m.get("kd_gate_gradient", True) else ", gate out of L_KD"),
              "fit_distill": last_metric(run, "fit_distill"),
              "top_share": max(counts) / total if total > 0 else math.nan,
              **run_times(run)})
    return r


def upper(key, scale, experts):
    """The largest value a column can take: 100 for percentages, log2 E bits for an entropy."""
    if scale == 100:
        return 100.0
    return math.log2(experts) if "entropy" in key else math.inf


def doc_table(runs):
    groups = OrderedDict()
    for r in sorted(runs, key=lambda r: r["config"]):
        groups.setdefault(r["config"], []).append(r)
    head = "| configuration | reference protocol? | runs | " + " | ".join(c[1] for c in COLUMNS) + " | collapsed runs |"
    lines = [head, "|---|---|---|" + "---|" * len(COLUMNS) + "---|"]
    for name, rs in groups.items():
        cells = [ci_text([scale * r[k] for r in rs], d, 0.0, upper(k, scale, rs[0]["experts"])) for k, _, scale, d in COLUMNS]
        collapsed = sum(r["top_share"] >= 0.99 for r in rs)
        lines.append(f"| {name} | {rs[0]['protocol']} | {len(rs)} | " + " | ".join(cells) + f" | {collapsed} |")
    return "\n".join(lines), groups


def paired(groups, a, b, key="test_accuracy"):
    """a − b in points (× 100), runs paired by seed, with its 95 % interval, as text."""
    by_seed = lambda name: {r["seed"]: 100 * r[key] for r in groups.get(name, [])}  # noqa: E731
    return paired_text(by_seed(a), by_seed(b))


def mode_findings(groups):
    out = []
    names = list(groups)
    sep = next((n for n in names if n == "E=8, α=0.01, L_KD on a separate forward"), None)
    shared = next((n for n in names if n == "E=8, α=0.01, L_KD on the prediction's forward"), None)
    base = next((n for n in names if n == "E=8, α=0"), None)
    if sep and shared:
        out.append(f"L_KD on a separate forward (reference) − on the prediction's forward, test accuracy (points): "
                   f"{paired(groups, sep, shared)}.")
    if sep and base:
        out.append(f"MoDE (reference protocol) − plain MoE, test accuracy (points): {paired(groups, sep, base)}; "
                   f"all-example expert accuracy (points): {paired(groups, sep, base, 'test_probe_accuracy_mean')}.")
    for n, rs in groups.items():
        c = sum(r["top_share"] >= 0.99 for r in rs)
        if c:
            out.append(f"{n}: in {c} of {len(rs)} runs one expert receives ≥ 99 % of the test images (the gate "
                       f"collapsed; H_u {np.nanmean([r['test_gate_usage_entropy'] for r in rs]):.2f} bits on average).")
    return out


PAGE_HEADER = """# mode: MNIST results

MoDE (plugins/models/mode) on MNIST with the reference's example settings (spec mode.md,
`examples/mnist_example.py`): E = 8 MLP experts 784 → 128 → 128 → 10 with Dropout(0.2), gate
784 → 64 → 8, T = 0.02, α = 0.01, Adam 1e-3, batch 64, 5 epochs, 10 % of the training file held out
for validation (`val_fraction = 0.1`, `val_seed = 42`), inputs normalised with (0.1307, 0.3081),
and L_KD on a separate forward of the experts (`kd_outputs = "separate"`, their own dropout masks)
as the reference computes it. The reference commits no numbers; the spec expects ~97–98 % for an
MNIST MLP MoE.

This page is written by `scripts/plot_mode.py --doc`, run by `scripts/reproduce mode`, from the run
files of the sweeps below; every number comes from those files. Cells: mean ± sample std over seeds
[95 % t-interval of the mean]. Accuracy and CE of the gated logit sum on the full 10,000-image test
set (val: the 6,000 held-out images), after the last epoch. Probing on the test split: "routed" =
each expert's accuracy on the examples whose argmax gate is that expert, averaged over the experts
that receive any; "all-example" = each expert's accuracy on all 10,000 images, averaged over experts;
"argmax-gate expert" = predicting every example with its argmax-gate expert alone. H_u = entropy of
the mean test gate (of log2 E bits). "Collapsed": one expert receives ≥ 99 % of the test images.

Note on the data: the shared MNIST training images are a reconstruction (images 6,309 onward are
inverted PNG exports, 97.4 % of pixels exact, the rest off by one grey level; shared/data/README);
the test file is the original.

Wall time: first run start to last run end, as measured on the 2-core development machine, which
may have been running other sweeps or builds at the same time; training time: the runs' epoch
times summed.
"""

SECTION_TEXT = {
    "mode_mnist": "## The reference's example: MoDE against the plain MoE, and where L_KD is computed",
    "mode_alpha_scan": "## α scan (modlab's scan: the reference's example uses α = 0.01)",
    "mode_e2": "## E = 2 (the MSE path; an exploration, two seeds)",
    "mode_gate_gradient": "## Keeping the gate out of L_KD (`kd_gate_gradient = false`; not in the reference, two seeds)",
}


def write_page(folders, doc):
    sweeps = OrderedDict()
    commands = {}
    for folder in folders:
        name, runs = completed_runs(folder, read_run)
        sweeps[name] = runs
        commands[name] = sweep_command(folder, "--jobs 2 --threads 1")
    parts = [PAGE_HEADER, "## Runs\n", "| sweep | completed runs | seeds | wall time | training time summed | command |",
             "|---|---|---|---|---|---|"]
    for name, runs in sweeps.items():
        seeds = sorted({r["seed"] for r in runs})
        train = sum(r["time_s"] for r in runs if not math.isnan(r["time_s"]))
        parts.append(f"| {name} | {len(runs)} | {', '.join(map(str, seeds))} | {wall(runs)[2]} | {duration(train)} "
                     f"| `{commands[name]}` |")
    all_groups = OrderedDict()
    for name, runs in sweeps.items():
        table_md, groups = doc_table(runs)
        all_groups.update(groups)
        parts += ["", SECTION_TEXT.get(name, f"## {name}"), "", table_md, ""]
        found = mode_findings(groups)
        if found:
            parts += ["Findings (computed from the runs above):", ""] + [f"- {x}" for x in found] + [""]
    with open(doc, "w") as f:
        f.write("\n".join(parts) + "\n")
    print(f"wrote {doc}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", help="sweep output folders (holding sweep.h5)")
    ap.add_argument("--out", help="folder for the figures (default <folder>/plots)")
    ap.add_argument("--no-figures", action="store_true", help="print the tables only")
    ap.add_argument("--merge", action="store_true", help="read all folders as one set of runs")
    ap.add_argument("--doc", help="write the results page (docs/results/mode.md) from the folders, nothing else")
    args = ap.parse_args()
    if args.doc:
        write_page(args.folders, args.doc)
        return
    if args.merge:
        rows, swept = [], []
        for folder in args.folders:
            r, s = load(folder)
            rows += r
            swept += [k for k in s if k not in swept]
        rows.sort(key=lambda r: sort_key(r, swept))
        groups = groups_of(rows, swept)
        print(f"## {' + '.join(args.folders)}\n")
        print(table(groups))
        print()
        if not args.no_figures:
            out = args.out or os.path.join(args.folders[0], "plots_merged")
            written = draw(args.folders, rows, swept, groups, out)
            print(f"{len(written)} figures in {out}")
        return
    for folder in args.folders:
        rows, swept = load(folder)
        groups = groups_of(rows, swept)
        print(f"## {folder}\n")
        print(table(groups))
        print()
        if not args.no_figures:
            out = args.out or os.path.join(folder, "plots")
            written = draw([folder], rows, swept, groups, out)
            print(f"{len(written)} figures in {out}")


if __name__ == "__main__":
    main()
