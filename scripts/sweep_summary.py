"""Reading a finished sweep's summary table (sweep.h5) for the analysis scripts (h5py only)."""
import os
import sys

import h5py

BOOKKEEPING = {"run_id", "index", "seed", "status", "error", "file"}


def text(v):
    """A summary cell as text (h5py returns variable-length strings as bytes)."""
    return v.decode() if isinstance(v, bytes) else str(v)


def load(folder, prog):
    """Rows of `folder`/sweep.h5's summary table as dicts (strings decoded, numbers as float), plus
    the names of the swept config keys. Exits with a message naming `prog` if there is no sweep."""
    path = os.path.join(folder, "sweep.h5")
    if not os.path.exists(path):
        sys.exit(f"{prog}: {path} not found (run `modlab run <sweep.toml> --out {folder}` first)")
    with h5py.File(path, "r") as f:
        s = f["summary"][()]
        names = s.dtype.names
        rows = [{n: (text(r[n]) if s.dtype[n].kind == "O" else float(r[n])) for n in names} for r in s]
    swept = [n for n in names if "." in n and n not in BOOKKEEPING and n != "run.seed" and not n.startswith("final.")]
    return rows, swept


def config_name(row, swept):
    """"key=value, ..." of a row's swept keys (without their table prefix), "(base)" if none."""
    if not swept:
        return "(base)"
    return ", ".join(f"{k.split('.', 1)[1]}={row[k]}" for k in swept)


def completed_runs(folder, read_run):
    """(sweep name, [read_run(run_id, run group, config dict) for each completed run]) of the
    finished sweep folder `folder`, in sweep order; the sweep file stays open while `read_run` reads."""
    import tomllib

    path = os.path.join(folder, "sweep.h5")
    if not os.path.exists(path):
        sys.exit(f"{path}: no sweep index (run the sweep first: modlab run SWEEP.toml --out {folder})")
    runs = []
    with h5py.File(path, "r") as f:
        name = text(f.attrs.get("sweep_name", os.path.basename(folder.rstrip("/"))))
        for row in f["summary"][:]:
            run_id = text(row["run_id"])
            if text(row["status"]) != "completed" or run_id not in f["runs"]:
                continue
            run = f["runs"][run_id]
            runs.append(read_run(run_id, run, tomllib.loads(text(run.attrs["config"]))))
    return name, runs


def last_metric(run, name):
    """The last finite value of metrics/<name> of a run group (h5py), or NaN."""
    import numpy as np

    if f"metrics/{name}" not in run:
        return float("nan")
    v = run[f"metrics/{name}"][()]
    v = v[~np.isnan(v)]
    return float(v[-1]) if len(v) else float("nan")


def run_times(run):
    """{"time_s": the run's epoch times summed, "start", "end": its ISO start and end times}."""
    import numpy as np

    return {"time_s": float(np.nansum(run["metrics/time_s"][()])) if "metrics/time_s" in run else 0.0,
            "start": text(run.attrs.get("start_time", "")), "end": text(run.attrs.get("end_time", ""))}


def sweep_command(folder, options="--jobs 2"):
    """The `modlab run` command of the sweep in `folder`: its sweep file from `sweeps/` on (as
    recorded in sweep.h5), `options`, and the folder as results/<name>."""
    with h5py.File(os.path.join(folder, "sweep.h5"), "r") as f:
        sweep_file = text(f.attrs.get("sweep_file", "SWEEP.toml"))
    rel = sweep_file[sweep_file.rfind("sweeps/"):] if "sweeps/" in sweep_file else sweep_file
    return f"modlab run {rel} {options} --out results/{os.path.basename(os.path.normpath(folder))}"


def count_runs(sweep_toml):
    """Runs a sweep file expands to: seeds × every grid list × one length per zip group (the
    expansion of docs/sweeps.md, without modlab)."""
    import tomllib

    with open(sweep_toml, "rb") as f:
        sweep = tomllib.load(f).get("sweep", {})
    seeds = sweep.get("seeds", 1)
    n = seeds if isinstance(seeds, int) else len(seeds)
    for values in sweep.get("grid", {}).values():
        n *= len(values)
    for group in sweep.get("zip", []):
        n *= len(next(iter(group.values())))
    return n


def wall(runs):
    """(first start, last end, span as text) of runs carrying "start" and "end" (ISO times of the
    run files' start_time / end_time attributes)."""
    import datetime

    starts = sorted(r["start"] for r in runs if r.get("start"))
    ends = sorted(r["end"] for r in runs if r.get("end"))
    if not starts or not ends:
        return "?", "?", "?"
    t = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return starts[0], ends[-1], duration((t(ends[-1]) - t(starts[0])).total_seconds())


def duration(seconds):
    """Seconds as "42 s", "3.5 min" or "2.1 h"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def old_page(doc, runs_title="## Runs"):
    """What a results page written earlier holds: ({first cell: line} of the rows of its runs table
    (the section `runs_title`), {section title ("## ..."): the section's lines}), for the pages'
    --keep options."""
    rows, sections, title = {}, {}, None
    with open(doc) as f:
        for line in f.read().splitlines():
            if line.startswith("## "):
                title = line
                sections[title] = []
            if title is None:
                continue
            sections[title].append(line)
            if title == runs_title and line.startswith("| ") and not line.startswith("| sweep |"):
                rows[line.strip("|").split("|")[0].strip()] = line
    for lines in sections.values():
        while lines and not lines[-1].strip():
            lines.pop()
    return rows, {t: lines + [""] for t, lines in sections.items()}


def results_page(description, header, load_sweep, section):
    """The command line of the scripts that write a docs/results page: sweep folders, --figures,
    --doc, --with-header (start with `header`), --command (quoted in the page). `load_sweep(folder)`
    returns (name, runs); `section(name, runs, figures_dir, doc_dir)` returns the Markdown of one sweep."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("folders", nargs="+", help="sweep output folders")
    ap.add_argument("--figures", default=".", help="folder for the figures")
    ap.add_argument("--doc", help="write the Markdown here (default: stdout)")
    ap.add_argument("--with-header", action="store_true", help="start with the page's header (setup, commands)")
    ap.add_argument("--command", default="", help="the command that ran the sweeps, quoted in the page")
    args = ap.parse_args()
    os.makedirs(args.figures, exist_ok=True)
    doc_dir = os.path.dirname(os.path.abspath(args.doc)) if args.doc else os.getcwd()
    parts = [header] if args.with_header else []
    if args.command:
        parts.append(f"Command:\n\n```\n{args.command}\n```\n")
    for folder in args.folders:
        name, runs = load_sweep(folder)
        if not runs:
            parts.append(f"\n## {name}\n\nno completed runs in {folder}\n")
            continue
        parts.append(section(name, runs, os.path.abspath(args.figures), doc_dir))
    md = "\n".join(parts) + "\n"
    if args.doc:
        with open(args.doc, "w") as f:
            f.write(md)
    else:
        sys.stdout.write(md)


# Two-sided 97.5 % quantiles of Student's t for 1..30 degrees of freedom (beyond: the normal's).
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def mean_ci(values):
    """(n, mean, sample std, half-width of the 95 % t-interval of the mean) of the finite values;
    std and half-width are NaN below two values."""
    import math

    v = [float(x) for x in values if x == x and abs(float(x)) != math.inf]
    n = len(v)
    if n == 0:
        return 0, math.nan, math.nan, math.nan
    mean = sum(v) / n
    if n < 2:
        return n, mean, math.nan, math.nan
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1))
    t = _T975[n - 2] if n - 1 <= len(_T975) else 1.960
    return n, mean, std, t * std / math.sqrt(n)


def interval_text(n, mean, std, half, digits=2, lo=-float("inf"), hi=float("inf")):
    """"mean ± std [mean − half, mean + half]" (mean_ci's numbers), the interval clipped to [lo, hi]
    (a bounded quantity: an accuracy, an entropy); "n/a" without values, the mean alone for one."""
    if n == 0:
        return "n/a"
    if n < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f} [{max(lo, mean - half):.{digits}f}, {min(hi, mean + half):.{digits}f}]"


def ci_text(values, digits=2, lo=-float("inf"), hi=float("inf")):
    """interval_text of the finite values."""
    return interval_text(*mean_ci(values), digits, lo, hi)


def paired_text(a, b, digits=2):
    """The mean of a[s] − b[s] over the seeds s in both ({seed: value} each) with its 95 % interval,
    and whether the interval excludes 0; "n/a" below two pairs."""
    d = [a[s] - b[s] for s in a if s in b]
    n, mean, _, half = mean_ci(d)
    if n < 2:
        return "n/a"
    verdict = "the interval contains 0: no difference shown" if abs(mean) <= half else "a difference"
    return f"{mean:+.{digits}f} [{mean - half:+.{digits}f}, {mean + half:+.{digits}f}] over {n} paired seeds ({verdict})"
