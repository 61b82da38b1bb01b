#!/usr/bin/python3
"""The results page of the DeepMind Mathematics mask analysis (docs/results/dm_math.md is written by this).

Reads finished sweep folders of sweeps/dm_math/*.toml (masked_analyzer over mask_transformer on
dm_math) and reports, per module, the hard-test exact-match accuracy of the trained model, of the
control mask (trained on the whole training set) and of the easy-trained mask, with the fraction of
weights each mask keeps, the training curve of the exact match and the run's cost.

    /usr/bin/python3 scripts/plot_dm_math.py results/dm_math_cpu --doc docs/results/dm_math.md --with-header
"""
import numpy as np

from sweep_summary import completed_runs, duration, results_page, text

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


def read_run(run_id, run, config):
    acc = table_of(run, "test_hard/accuracy")
    kept = table_of(run, "kept")
    inner = config["model"].get("inner", {})
    return {
        "id": run_id,
        "seed": int(config["run"].get("seed", 0)),
        "module": ", ".join(config["dataset"].get("modules", [])),
        "net": f"d={inner.get('dim', 512)}, {inner.get('heads', 8)} heads, "
               f"{inner.get('encoder_layers', 6)}+{inner.get('decoder_layers', 6)} layers",
        "steps": int(config["train"].get("epochs", 1)) * int(config["train"].get("steps_per_epoch", 0)),
        "alpha": config["model"].get("mask_loss_weight", 1e-4),
        "trained": cell(acc, "trained", "full"),
        "control": cell(acc, "mask full", "full"),
        "easy": cell(acc, "mask easy", "full"),
        "kept_control": cell(kept, "total", "full"),
        "kept_easy": cell(kept, "total", "easy"),
        "char": last(run, "test_hard_char_accuracy", "train"),
        "time_s": float(np.nansum(run["metrics/time_s"][()])),
    }


def load_sweep(folder):
    return completed_runs(folder, read_run)


def section(name, runs, figures, doc_dir):
    out = [f"\n## {name}\n", f"{len(runs)} completed runs; training time summed over runs "
                             f"{duration(sum(r['time_s'] for r in runs))}.\n",
           "| module | network | training steps | α | hard test: trained | control mask | easy mask | "
           "kept: control | kept: easy | trained, char accuracy | run time |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        out.append(f"| {r['module']} | {r['net']} | {r['steps']:,} | {r['alpha']:g} | {r['trained']:.3f} | "
                   f"{r['control']:.3f} | {r['easy']:.3f} | {r['kept_control']:.3f} | {r['kept_easy']:.3f} | "
                   f"{r['char']:.3f} | {duration(r['time_s'])} |")
    found = []
    for r in runs:
        if np.isnan(r["easy"]) or np.isnan(r["control"]):
            continue
        if r["trained"] == 0:
            found.append(f"- {r['module']}: the trained model answers no hard-test question exactly (character accuracy "
                         f"{r['char']:.3f}), so the masks have nothing to keep or lose: this run says nothing about "
                         f"the question above; the model is too small or trained too briefly.")
            continue
        found.append(f"- {r['module']}: the easy mask keeps {r['easy']:.3f} hard-test exact match against the control "
                     f"mask's {r['control']:.3f} and the trained model's {r['trained']:.3f} "
                     f"({'lower' if r['easy'] < r['control'] else 'not lower'} than the control).")
    if found:
        out.append("\nFindings (computed from the table):\n\n" + "\n".join(found))
    return "\n".join(out) + "\n"


def main():
    results_page(__doc__.split("\n")[0], HEADER, load_sweep, section)


if __name__ == "__main__":
    main()
