#!/usr/bin/python3
"""The results page of the DeepMind Mathematics mask analysis (docs/results/dm_math.md is written by this).

Reads finished sweep folders of sweeps/dm_math/*.toml (masked_analyzer over mask_transformer on
dm_math) and reports, per module and held-out split, the exact-match accuracy of the trained model,
of the control mask (trained on the whole training set) and of the easy-trained mask, the fraction
of weights each mask keeps, the run's cost, and every setting that differs from the reference's.

    /usr/bin/python3 scripts/plot_dm_math.py results/dm_math_cpu --doc docs/results/dm_math.md --with-header
"""
import numpy as np

from sweep_summary import completed_runs, duration, results_page, text, wall

HEADER = """# dm_math: does a mask trained on easy questions solve the hard ones?

Question (masked_analyzer §4.3 f, Csordás et al. 2021): train a Transformer on a DeepMind
Mathematics module (train-easy + medium + hard), freeze it, and train two weight masks: the control
mask on the whole training set, and a mask on the easy questions only. If the easy and the hard
questions were solved by the same weights, the easy mask would keep the hard-test accuracy; the
reference reports that it does not — the easy mask loses much of it, so the network does not reuse
one general procedure across difficulties.

This page is written by `scripts/plot_dm_math.py` from the run files of the sweeps below; every
number comes from those files. Exact match = every answer character and the end token decoded
greedily; character accuracy = the share of answer positions right.
"""

# The reference's settings (masked_analyzer §4.3 f), to list what a run does differently.
REFERENCE = {
    "dim": 512, "heads": 8, "ff_factor": 4, "layers": "6+6", "batch_size": 256, "lr": 1e-4, "warmup_steps": 0,
    "samples": 8, "test_size": 10000, "bucket": 0, "dropout": 0.1, "mask_steps": 10000,
    "steps": {"arithmetic__add_or_sub": 30000, "comparison__sort": 30000, "algebra__linear_1d": 200000,
              "calculus__differentiate": 40000},
    "alpha": {"arithmetic__add_or_sub": 2e-5, "comparison__sort": 3e-6, "algebra__linear_1d": 1e-6,
              "calculus__differentiate": 1e-5},
}
SPLITS = ["test_easy", "test_medium", "test_hard", "interpolate", "extrapolate"]


def table_of(run, name):
    key = f"tensors/tables/{name}"
    if key not in run:
        return None
    t = run[key]
    return [text(r) for r in t.attrs["rows"]], [text(c) for c in t.attrs["columns"]], t[()]


def cell(t, row, col):
    if t is None or row not in t[0] or col not in t[1]:
        return float("nan")
    return float(t[2][t[0].index(row)][t[1].index(col)])


def last(run, metric, phase_name=None):
    m = run["metrics"]
    if metric not in m:
        return float("nan")
    v = m[metric][()]
    if phase_name is not None:
        names = [text(n) for n in m["phase"].attrs["phase_names"]]
        v = v[m["phase"][()] == names.index(phase_name)] if phase_name in names else v[:0]
    v = v[~np.isnan(v)]
    return float(v[-1]) if len(v) else float("nan")


def differences(config, module):
    """What the run's config does differently from the reference, as short phrases."""
    inner, train, model = config["model"].get("inner", {}), config["train"], config["model"]
    mine = {
        "dim": inner.get("dim", 512), "heads": inner.get("heads", 8), "ff_factor": inner.get("ff_factor", 4),
        "layers": f"{inner.get('encoder_layers', 6)}+{inner.get('decoder_layers', 6)}",
        "batch_size": train.get("batch_size", 32), "lr": train.get("lr", 1e-3),
        "warmup_steps": train.get("warmup_steps", 0), "samples": model.get("samples", 4),
        "test_size": config["dataset"].get("test_size", 10000), "bucket": train.get("bucket", 0),
        "dropout": inner.get("dropout", 0.1),
    }
    out = [f"{k} {mine[k]:g} (reference {REFERENCE[k]:g})" if isinstance(mine[k], float)
           else f"{k} {mine[k]} (reference {REFERENCE[k]})" for k in mine if mine[k] != REFERENCE[k]]
    steps = int(train.get("epochs", 1)) * int(train.get("steps_per_epoch", 0))
    if not model.get("inner_weights") and module in REFERENCE["steps"] and steps != REFERENCE["steps"][module]:
        out.append(f"{steps:,} training steps (reference {REFERENCE['steps'][module]:,})")
    mask = train.get("phases", {}).get("mask", {})
    mask_steps = int(mask.get("epochs", 1)) * int(mask.get("steps_per_epoch", 0))
    if mask_steps != REFERENCE["mask_steps"]:
        out.append(f"{mask_steps:,} steps per mask (reference {REFERENCE['mask_steps']:,})")
    alpha = model.get("mask_loss_weight", 1e-4)
    if module in REFERENCE["alpha"] and alpha != REFERENCE["alpha"][module]:
        out.append(f"α {alpha:g} (reference {REFERENCE['alpha'][module]:g})")
    return out


def read_run(run_id, run, config):
    module = ", ".join(config["dataset"].get("modules", []))
    inner = config["model"].get("inner", {})
    mask = config["train"].get("phases", {}).get("mask", {})
    kept = table_of(run, "kept")
    per_split = {}
    for split in SPLITS:
        acc = table_of(run, f"{split}/accuracy")
        if acc is None:
            continue
        per_split[split] = {"trained": cell(acc, "trained", "full"), "control": cell(acc, "mask full", "full"),
                            "easy": cell(acc, "mask easy", "full"),
                            "char": last(run, f"{split}_char_accuracy", "train")}
    return {
        "id": run_id,
        "seed": int(config["run"].get("seed", 0)),
        "module": module,
        "net": f"d={inner.get('dim', 512)}, {inner.get('heads', 8)} heads, "
               f"{inner.get('encoder_layers', 6)}+{inner.get('decoder_layers', 6)} layers",
        "steps": int(config["train"].get("epochs", 1)) * int(config["train"].get("steps_per_epoch", 0)),
        "loaded": config["model"].get("inner_weights", ""),
        "mask_steps": int(mask.get("epochs", 1)) * int(mask.get("steps_per_epoch", 0)),
        "alpha": config["model"].get("mask_loss_weight", 1e-4),
        "splits": per_split,
        "kept_control": cell(kept, "total", "full"),
        "kept_easy": cell(kept, "total", "easy"),
        "differs": differences(config, module),
        "test_items": int(config["dataset"].get("test_size", 10000)),
        "time_s": float(np.nansum(run["metrics/time_s"][()])),
        "start": text(run.attrs.get("start_time", "")),
        "end": text(run.attrs.get("end_time", "")),
    }


def load_sweep(folder):
    return completed_runs(folder, read_run)


def run_table(r):
    out = ["| held-out split | trained model | control mask | easy mask | trained, char accuracy |",
           "|---|---|---|---|---|"]
    for split, v in r["splits"].items():
        out.append(f"| {split} | {v['trained']:.3f} | {v['control']:.3f} | {v['easy']:.3f} | {v['char']:.3f} |")
    return "\n".join(out)


def finding(r):
    hard, easy = r["splits"].get("test_hard"), r["splits"].get("test_easy")
    if hard is None or np.isnan(hard["easy"]) or np.isnan(hard["control"]):
        return None
    if hard["trained"] == 0:
        return (f"- {r['module']}: the trained model answers no hard-test question exactly (character accuracy "
                f"{hard['char']:.3f}), so this run says nothing about the question above.")
    drop = hard["control"] - hard["easy"]
    # 95 % half-width of the difference from sampling the test items alone (two proportions on n
    # items each); reseeding the model and the masks moves it further.
    n = r["test_items"]
    half = 1.96 * np.sqrt((hard["control"] * (1 - hard["control"]) + hard["easy"] * (1 - hard["easy"])) / n)
    seen = "seen" if drop > half else "not seen"
    line = (f"- {r['module']}: on the hard test the easy mask reaches {hard['easy']:.3f} exact match, the control "
            f"mask {hard['control']:.3f} and the trained model {hard['trained']:.3f}: the easy mask "
            f"{'loses' if drop > 0 else 'gains'} {abs(drop):.3f} against the control (±{half:.3f} at 95 % from "
            f"the {n:,} test items alone), so the reference's finding — the easy mask loses hard-test accuracy — "
            f"is {seen} here")
    if easy is not None and not np.isnan(easy["easy"]):
        line += f" (on the easy test it {'loses' if easy['control'] > easy['easy'] else 'gains'} " \
                f"{abs(easy['control'] - easy['easy']):.3f})"
    if min(r["kept_control"], r["kept_easy"]) > 0.9:
        line += (f"; both masks keep more than 90 % of the weights ({r['kept_control']:.3f} and "
                 f"{r['kept_easy']:.3f}), too few removed for the comparison to say much")
    return line + "."


def section(name, runs, figures, doc_dir):
    first, final, span = wall(runs)
    out = [f"\n## {name}\n",
           f"{len(runs)} completed runs, seeds {sorted({r['seed'] for r in runs})}; wall time {span} (first start "
           f"{first}, last end {final}); training time summed over runs {duration(sum(r['time_s'] for r in runs))}.\n"]
    found = [f for f in (finding(r) for r in runs) if f]
    if found:
        seeds = len({r["seed"] for r in runs})
        out.append("Findings (computed from the tables below):\n\n" + "\n".join(found) + "\n")
        if seeds < 3:
            out.append(f"With {seeds} seed(s) per module these are single measurements: a rerun with another seed "
                       "can move each exact-match figure by more than the interval above, which counts only "
                       "the sampling of test items.\n")
    for r in runs:
        trained = f"weights of run {r['loaded']}" if r["loaded"] else f"{r['steps']:,} training steps"
        out.append(f"\n### {r['module']} (run {r['id']})\n\n{r['net']}, {trained}, "
                   f"{r['mask_steps']:,} steps per mask, α = {r['alpha']:g}; weights kept: control mask "
                   f"{r['kept_control']:.3f}, easy mask {r['kept_easy']:.3f}; run time {duration(r['time_s'])}.\n\n"
                   f"Exact match on the held-out items (the masks applied to the frozen trained model):\n\n"
                   f"{run_table(r)}\n")
        if r["differs"]:
            out.append("Differs from the reference: " + "; ".join(r["differs"]) + ".\n")
    return "\n".join(out) + "\n"


def main():
    results_page(__doc__.split("\n")[0], HEADER, load_sweep, section)


if __name__ == "__main__":
    main()
