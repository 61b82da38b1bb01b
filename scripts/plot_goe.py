#!/usr/bin/python3
"""Tables and figures of goe sweeps (docs/results/goe.md is written by this).

Reads finished sweep folders (sweeps/goe/*.toml run with `modlab run`). For every model (ref_sqB,
goe_oracle, goe_latent, ...) and width p it averages over seeds the final test accuracy, the test
accuracy with random paths, the routing purity, and reads the MACs and parameter counts from the
runs' cost tables. Figures:
  <sweep>_accuracy.png   accuracy (mean ± std) against inference MACs per model; random-routing
                         curves dashed (as the reference's figure)
  <sweep>_routing.png    routing confusion: share of each group's test examples on each leaf, for
                         the oracle and latent GoE at the largest p (first seed)
  <sweep>_vqvae.png      test digits and their VQ-VAE reconstructions (one latent run)

    /usr/bin/python3 scripts/plot_goe.py results/goe_rotated_mnist --figures docs/results/goe \\
        --doc docs/results/goe.md --with-header
"""
import os
from collections import defaultdict

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sweep_summary import completed_runs, duration, results_page, text, wall  # noqa: E402

HEADER = """# goe: graph of experts on Rotated MNIST

Question (goe §2, the graph-of-experts reference): a binary tree of modules where a frozen router
sends every sample down one root-to-leaf path costs what one chain costs at inference. At equal
inference MACs, does the tree beat the chain when the router knows the groups (oracle: the rotation
of the digit), how much of that does a router learned without labels keep (latent: a VQ-VAE, k-means
on its codes, one cluster per leaf), and what is left when the paths are random? The reference's
figure: the oracle GoE above the chain at every width, the latent GoE close to the oracle, random
routing far below both.

This page is written by `scripts/plot_goe.py` from the run files of the sweep below; every number
comes from those files.

## Setup and what differs from the reference

- Data: Rotated MNIST as the reference (`rotated_mnist`, default mode): every MNIST train image in 4
  rotations (0° colour-inverted), split 70/20/10 with seed 40, each split subsampled 1 in 20 →
  8,400 / 2,400 / 1,200; batch 32, not shuffled; Adam lr 0.005; cross-entropy on the leaf logits.
- Models: `ref_sqB` (one chain: Conv p → Conv 2p → FC 4p → 10), the oracle GoE (path = rotation
  index), the latent GoE (VQ-VAE: h 32, 2 shared residual layers, 128 codes of 4 dimensions, β 0.25,
  1000 updates of batch 128, Adam 3e-4 with AMSGrad; k-means, 4 clusters, 10 restarts; balanced
  2-means from clusters to leaves). Every GoE run is also evaluated with a uniform random path per
  test example ("w/ Random Routing", dashed).
- MACs: one-sample inference, router excluded (as the reference's x axis; its plot adds 30,000 to
  the latent curve for the router). The router's own MACs are in the table.
- **Differs: epochs.** Fewer epochs than the reference's 100 (each section below says how many), so
  that the 90 runs fit in about an hour on two CPU cores; the accuracies are therefore those of
  shorter training, lower for every model than the reference's: the ordering is what to compare.
- Differs: the subsample of each split is drawn with the run's seed (the reference's
  `np.random.choice` is unseeded), the router's k-means is modlab's (k-means++, Lloyd), the VQ-VAE
  decoder outputs one channel (the reference outputs three and broadcasts the loss), and the first
  2-means split sets the root bit (`path_order = "top_split_first"`; the reference's order sets the
  last bit). See plugins/models/goe/README.md.
"""




def read_table(run, name):
    if f"tensors/tables/{name}" not in run:
        return None
    t = run[f"tensors/tables/{name}"]
    return [text(r) for r in t.attrs["rows"]], [text(c) for c in t.attrs["columns"]], t[()]


def last(run, metric):
    """Last logged (non-NaN) value of a metric column, NaN when absent."""
    if f"metrics/{metric}" not in run:
        return float("nan")
    v = run[f"metrics/{metric}"][()]
    v = v[~np.isnan(v)]
    return float(v[-1]) if len(v) else float("nan")


def read_run(run_id, run, config):
    rows, _, values = read_table(run, "cost")
    rec = run.get("tensors/router/reconstructions/test")
    return {
        "id": run_id,
        "seed": int(config["run"].get("seed", 0)),
        "model": text(run.attrs.get("note.goe.model", "?")),
        "p": int(config["model"].get("param_factor", 4)),
        "acc": 100 * last(run, "test_accuracy"),
        "random_acc": 100 * last(run, "test_random_routing_accuracy"),
        "purity": last(run, "test_routing_purity"),
        "perplexity": last(run, "test_vq_perplexity"),
        "cost": {r: float(values[i][0]) for i, r in enumerate(rows)},
        "routing": read_table(run, "test/routing_vs_group"),
        "reconstructions": rec[()] if rec is not None else None,
        "epochs": int(config.get("train", {}).get("epochs", 10)),
        "time_s": float(np.nansum(run["metrics/time_s"][()])),
        "start": text(run.attrs.get("start_time", "")),
        "end": text(run.attrs.get("end_time", "")),
    }


def load_sweep(folder):
    return completed_runs(folder, read_run)


ORDER = ["ref_sqB", "ref_sqA", "goe_oracle", "goe_latent", "goe_random"]
COLOURS = {"ref_sqB": "tab:gray", "ref_sqA": "tab:brown", "goe_oracle": "tab:blue", "goe_latent": "tab:orange",
           "goe_random": "tab:green"}


def grouped(runs):
    g = defaultdict(list)
    for r in runs:
        g[(r["model"], r["p"])].append(r)
    return g


def models_of(runs):
    present = {r["model"] for r in runs}
    return [m for m in ORDER if m in present] + sorted(present - set(ORDER))


def mean_std(values):
    v = np.array([x for x in values if not np.isnan(x)])
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def plot_accuracy(runs, path):
    g = grouped(runs)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in models_of(runs):
        ps = sorted(p for (mm, p) in g if mm == m)
        macs = [g[(m, p)][0]["cost"]["macs"] for p in ps]
        acc = [mean_std([r["acc"] for r in g[(m, p)]]) for p in ps]
        ax.errorbar(macs, [a[0] for a in acc], yerr=[a[1] for a in acc], marker="o", capsize=3, color=COLOURS.get(m),
                    label=m)
        if m.startswith("goe"):
            rnd = [mean_std([r["random_acc"] for r in g[(m, p)]]) for p in ps]
            ax.errorbar(macs, [a[0] for a in rnd], yerr=[a[1] for a in rnd], marker="x", capsize=3, linestyle="--",
                        color=COLOURS.get(m), label=f"{m} w/ random routing")
    ax.set_xscale("log")
    ax.set_xlabel("inference MACs per sample (router excluded)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def routing_runs(runs):
    """The first seed's run at the largest p for each routed model that recorded a routing table."""
    out = {}
    for m in ["goe_oracle", "goe_latent", "goe_random"]:
        rs = [r for r in runs if r["model"] == m and r["routing"] is not None]
        if rs:
            pmax = max(r["p"] for r in rs)
            out[m] = min((r for r in rs if r["p"] == pmax), key=lambda r: r["seed"])
    return out


def plot_routing(runs, path):
    chosen = routing_runs(runs)
    if not chosen:
        return False
    fig, axes = plt.subplots(1, len(chosen), figsize=(3.6 * len(chosen), 3.4), squeeze=False)
    for i, (ax, (m, r)) in enumerate(zip(axes[0], chosen.items())):
        rows, cols, v = r["routing"]
        share = v / np.maximum(v.sum(0, keepdims=True), 1)
        im = ax.imshow(share, vmin=0, vmax=1, cmap="viridis")
        rotations = all(c in ("0", "90", "180", "270") for c in cols)
        ax.set_xticks(range(len(cols)), [f"{c}°" if rotations else c for c in cols])
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel("rotation" if rotations else "group")
        if i == 0:
            ax.set_ylabel("leaf path")
        ax.set_title(f"{m}, p = {r['p']}, seed {r['seed']}", fontsize=9)
        for i in range(share.shape[0]):
            for j in range(share.shape[1]):
                ax.text(j, i, f"{share[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] < 0.5 else "black")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="share of the group's test examples")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return True


def plot_reconstructions(runs, path):
    rs = [r for r in runs if r["reconstructions"] is not None]
    if not rs:
        return False
    rec = min(rs, key=lambda r: (r["seed"], r["p"]))["reconstructions"]  # [n, 2, C, H, W]
    n = rec.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(1.1 * n, 2.4), squeeze=False)
    for i in range(n):
        for k in range(2):
            img = rec[i, k]
            axes[k][i].imshow(img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0)).clip(0, 1), cmap="gray")
            axes[k][i].axis("off")
    axes[0][0].set_title("input", fontsize=8, loc="left")
    axes[1][0].set_title("VQ-VAE", fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def fmt(m, s, digits=1):
    return "–" if np.isnan(m) else f"{m:.{digits}f} ± {s:.{digits}f}"


def table(runs):
    g = grouped(runs)
    out = ["| model | p | seeds | parameters | MACs | router MACs | test accuracy % | w/ random routing % | routing purity |",
           "|---|---|---|---|---|---|---|---|---|"]
    for m in models_of(runs):
        for p in sorted(p for (mm, p) in g if mm == m):
            rs = g[(m, p)]
            c = rs[0]["cost"]
            out.append(f"| {m} | {p} | {len(rs)} | {int(c['parameters']):,} | {int(c['macs']):,} | "
                       f"{int(c['router_macs']):,} | {fmt(*mean_std([r['acc'] for r in rs]))} | "
                       f"{fmt(*mean_std([r['random_acc'] for r in rs]))} | "
                       f"{fmt(*mean_std([r['purity'] for r in rs]), digits=3)} |")
    return "\n".join(out)


def findings(runs):
    g = grouped(runs)
    acc = {k: mean_std([r["acc"] for r in v])[0] for k, v in g.items()}
    rnd = {k: mean_std([r["random_acc"] for r in v])[0] for k, v in g.items()}
    ps = sorted({p for (_, p) in g})
    out = []
    both = [p for p in ps if ("goe_oracle", p) in acc and ("ref_sqB", p) in acc]
    if both:
        wins = [p for p in both if acc[("goe_oracle", p)] > acc[("ref_sqB", p)]]
        gaps = ", ".join(f"p={p}: {acc[('goe_oracle', p)] - acc[('ref_sqB', p)]:+.1f}" for p in both)
        out.append(f"- Oracle GoE vs the chain at equal MACs: higher at {len(wins)} of {len(both)} widths "
                   f"(points: {gaps}).")
    lat = [p for p in ps if ("goe_latent", p) in acc and ("goe_oracle", p) in acc]
    if lat:
        gaps = ", ".join(f"p={p}: {acc[('goe_latent', p)] - acc[('goe_oracle', p)]:+.1f}" for p in lat)
        out.append(f"- Latent vs oracle routing (points): {gaps}.")
        pur = [r["purity"] for r in runs if r["model"] == "goe_latent" and not np.isnan(r["purity"])]
        if pur:
            out.append(f"- Latent router: routing purity {np.mean(pur):.3f} on average over {len(pur)} runs "
                       f"(min {np.min(pur):.3f}, max {np.max(pur):.3f}; 1 = each rotation on a leaf of its own, "
                       f"0.25 = no relation).")
    lat_ref = [p for p in ps if ("goe_latent", p) in acc and ("ref_sqB", p) in acc]
    if lat_ref:
        wins = [p for p in lat_ref if acc[("goe_latent", p)] > acc[("ref_sqB", p)]]
        out.append(f"- Latent GoE vs the chain at equal MACs (router excluded): higher at {len(wins)} of "
                   f"{len(lat_ref)} widths.")
    out += latent_routing_findings(runs)
    drops = [acc[k] - rnd[k] for k in acc if k[0].startswith("goe") and not np.isnan(rnd[k])]
    if drops:
        out.append(f"- Random routing costs the GoE {np.min(drops):.1f} to {np.max(drops):.1f} points of test "
                   f"accuracy (mean {np.mean(drops):.1f}).")
    return out




def latent_routing_findings(runs):
    """Per group: the share of its test examples on its most common leaf, over the latent runs; which
    groups share a most common leaf; the router's own MACs against the reference plot's +30,000."""
    lat = [r for r in runs if r["model"] == "goe_latent" and r["routing"] is not None]
    if not lat:
        return []
    cols = lat[0]["routing"][1]
    shares, top = [], []
    for r in lat:
        v = r["routing"][2]
        share = v / np.maximum(v.sum(0, keepdims=True), 1)
        shares.append(share.max(0))
        top.append(tuple(share.argmax(0)))
    mean = np.mean(shares, axis=0)
    out = ["- Latent router, per group, the share of its test examples on its most common leaf (mean over "
           f"{len(lat)} runs): " + ", ".join(f"{c}: {m:.2f}" for c, m in zip(cols, mean)) + "."]
    pairs = defaultdict(int)
    for t in top:
        for i in range(len(cols)):
            for j in range(i + 1, len(cols)):
                if t[i] == t[j]:
                    pairs[(cols[i], cols[j])] += 1
    if pairs:
        out.append("- Groups whose most common leaf is the same: " + ", ".join(
            f"{a} and {b} in {n} of {len(lat)} runs" for (a, b), n in sorted(pairs.items(), key=lambda x: -x[1])) + ".")
    rm = lat[0]["cost"]["router_macs"]
    out.append(f"- The router's own inference cost, counted here: {int(rm):,} MACs per sample (encoder, codebook "
               f"search, k-means), {rm / 30000:.0f}× the +30,000 the reference's figure adds to the latent curve.")
    return out


def section(name, runs, figures, doc_dir):
    first, final, span = wall(runs)
    seeds = sorted({r["seed"] for r in runs})
    lat = [r for r in runs if r["model"] == "goe_latent"]
    trained = [r for r in lat if r["cost"].get("router_reused", 0) == 0]
    out = [f"\n## {name}\n",
           f"{len(runs)} completed runs, seeds {seeds}, {', '.join(str(e) for e in sorted({r['epochs'] for r in runs}))} "
           f"epochs (reference: 100); "
           f"wall time {span} (first start {first}, last end {final}); "
           f"training time summed over runs {duration(sum(r['time_s'] for r in runs))}.\n"]
    if lat:
        out.append(f"Latent router: VQ-VAEs trained: {len(trained)} (one per seed), reused by the other "
                   f"{len(lat) - len(trained)} latent runs; each took "
                   f"{np.mean([r['cost']['router_train_seconds'] for r in trained]):.0f} s for "
                   f"{int(trained[0]['cost']['router_train_updates']) if trained else 0} updates, k-means "
                   f"{np.mean([r['cost']['kmeans_seconds'] for r in trained]):.2f} s; test codebook perplexity "
                   f"{np.nanmean([r['perplexity'] for r in lat]):.1f}.\n")
    found = findings(runs)
    if found:
        out.append("\nFindings (computed from the table below):\n\n" + "\n".join(found) + "\n")
    out.append("\nFinal test accuracy (mean ± std over seeds), MACs of a one-sample forward, routing purity = the "
               "share of test examples on their rotation's most common leaf:\n\n" + table(runs) + "\n")
    slug = name.replace("/", "_")
    rel = os.path.relpath(figures, doc_dir)
    plot_accuracy(runs, os.path.join(figures, f"{slug}_accuracy.png"))
    out.append(f"\n![accuracy vs MACs]({rel}/{slug}_accuracy.png)\n")
    if plot_routing(runs, os.path.join(figures, f"{slug}_routing.png")):
        out.append(f"\nWhere each rotation's test digits go (largest p, first seed):\n\n"
                   f"![routing]({rel}/{slug}_routing.png)\n")
    if plot_reconstructions(runs, os.path.join(figures, f"{slug}_vqvae.png")):
        out.append(f"\nVQ-VAE reconstructions of test digits (router of the first seed):\n\n"
                   f"![reconstructions]({rel}/{slug}_vqvae.png)\n")
    return "\n".join(out)


def main():
    results_page(__doc__.split("\n")[0], HEADER, load_sweep, section)


if __name__ == "__main__":
    main()
