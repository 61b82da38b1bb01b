"""One self-contained HTML page of a results folder: what the sweep ran, its final metrics, the
learning curves of every configuration and the model plugin's own figures (docs/python.md, "The
HTML report").

    scripts/report results/quickstart                 # writes results/quickstart/report.html
    python3 -c 'import modlab.report as r; r.write_report("results/quickstart")'

Every figure is a PNG embedded as base64 in an ``<img>`` inside a ``<figure>`` with an id, classes
and a ``<figcaption>``; the page has no external URL, script, style sheet or font, so it works
offline and can be mailed as one file. Works on a sweep in progress: runs without a finished file
are counted and listed, the figures show the finished ones.
"""
import argparse
import base64
import datetime
import html
import io
import math
import os
import re
import sys
import tomllib

import numpy as np

from .reader import config, load_sweep, metrics, sweep_attrs

REPORT_FILE = "report.html"
STATUSES = ("completed", "failed", "interrupted", "running", "pending")
# Per-expert metrics (test_expert3_loss): expert numbers differ between seeds, so a mean over
# seeds would mix different experts; the plugin's figures show them per seed.
PER_EXPERT = re.compile(r"(^|_)expert\d+(_|$)")
DPI = 80

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.scroll { overflow-x: auto; } .note { color: #555; font-size: 0.9em; }
tr.failed td { background: #fde8e8; } tr.running td, tr.interrupted td { background: #fff6dd; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #444; max-width: 70em; }
"""

# Sets data-images-decoded="<decoded>/<all>" on <html> once the page has loaded, so that a
# headless browser (--dump-dom) can tell that every embedded image decoded.
SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.documentElement.setAttribute('data-images-decoded', ok + '/' + imgs.length);
});
"""


# ---------------------------------------------------------------------------------------------
# HTML pieces


def esc(value):
    return html.escape(str(value), quote=True)


def slug(text):
    """An id-safe version of `text`."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-").lower() or "x"


def png(fig):
    """A matplotlib Figure as PNG bytes (as laid out: "tight" bounding boxes would draw it twice)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def figure_html(fig_id, classes, caption, png_bytes, attrs=None):
    """A <figure> with the PNG embedded as a data: URL and its caption."""
    data = base64.b64encode(png_bytes).decode("ascii")
    extra = "".join(f' data-{k}="{esc(v)}"' for k, v in (attrs or {}).items())
    return (f'<figure id="{esc(fig_id)}" class="figure {esc(classes)}"{extra}>'
            f'<img alt="{esc(caption[:120])}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def html_table(header, rows, table_id, row_classes=None, numeric=()):
    """A <table>: `header` names, `rows` lists of cell texts; columns in `numeric` right-aligned."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{esc(row_classes[i])}"' if row_classes else ""
        cells = "".join(f'<td class="num">{esc(c)}</td>' if j in numeric else f"<td>{esc(c)}</td>"
                        for j, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return (f'<div class="scroll"><table id="{esc(table_id)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def page(title, sections):
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(sections)
            + f"\n<script>{SCRIPT}</script>\n</body></html>\n")


# ---------------------------------------------------------------------------------------------
# the sweep


class Sweep:
    """What the page is made of: the summary (TOML text of the varied keys), the sweep's
    attributes, the varied keys without the seed, and the runs of each configuration."""

    def __init__(self, folder):
        self.folder = os.fspath(folder)
        self.df = load_sweep(folder, parse_values=False)
        self.attrs = sweep_attrs(folder)
        self.name = self.attrs.get("sweep_name") or os.path.basename(os.path.abspath(self.folder))
        self.varied = [k for k in self.df.attrs["varied_keys"] if k != "run.seed"]
        self.df["config"] = [self.label(row) for _, row in self.df.iterrows()]
        self.configs = list(dict.fromkeys(self.df["config"]))

    def label(self, row):
        """"key=value, ..." of a run's varied keys (without their table), as plot scripts name it."""
        if not self.varied:
            return "(base)"
        return ", ".join(f"{k.split('.', 1)[-1]}={row[k]}" for k in self.varied)

    def completed(self):
        return self.df[(self.df["status"] == "completed") & (self.df["file"] != "")]

    def count(self, status):
        return int((self.df["status"] == status).sum())

    def metric_columns(self):
        """The summary's metric columns, per-expert metrics left out."""
        names = dict(zip(self.df.attrs["metric_columns"], self.df.attrs["metric_names"]))
        return [c for c in self.df.attrs["metric_columns"] if not PER_EXPERT.search(names.get(c, c))]

    def model_plugins(self):
        """The model plugins (model.plugin) of the sweep, from the config of the first finished
        run of each configuration, or from the sweep file when no run has finished yet."""
        found = []
        for label in self.configs:
            rows = self.df[(self.df["config"] == label) & (self.df["file"] != "")]
            if len(rows):
                found.append(config(self.folder, rows["run_id"].iloc[0]).get("model", {}).get("plugin", ""))
        if not found:
            base = tomllib.loads(self.attrs.get("sweep_toml", "")).get("model", {}).get("plugin", "")
            found = [base] if base else []
        return [p for p in dict.fromkeys(found) if p]


# ---------------------------------------------------------------------------------------------
# sections


def header_section(sweep, plugins):
    counts = {s: sweep.count(s) for s in STATUSES}
    total = len(sweep.df)
    text = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s] or s in ("completed", "failed"))
    values = [f"{k} = {', '.join(dict.fromkeys(str(v) for v in sweep.df[k]))}" for k in sweep.varied]
    meta = [("results folder", os.path.abspath(sweep.folder)), ("sweep file", sweep.attrs.get("sweep_file", "")),
            ("model plugin", ", ".join(plugins) or "?"), ("configurations", len(sweep.configs)),
            ("varied keys", "; ".join(values) or "none"),
            ("seeds", ", ".join(dict.fromkeys(str(s) for s in sweep.df["seed"]))),
            ("index written", sweep.attrs.get("updated", "")), ("modlab", sweep.attrs.get("modlab_version", "")),
            ("report written", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))]
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in meta)
    data = " ".join(f'data-{s}="{counts[s]}"' for s in STATUSES)
    return (f'<header id="header"><h1>{esc(sweep.name)}</h1>'
            f'<p id="run-counts" {data} data-total="{total}">runs: {esc(text)} of {total}</p>'
            f'<table id="sweep-info">{rows}</table></header>')


def mean_std(values):
    """"m ± s" (sample std) of the finite values, "m" for one, "" for none."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return ""
    if len(v) == 1:
        return f"{v[0]:.4g}"
    return f"{v.mean():.4g} ± {v.std(ddof=1):.4g}"


def summary_section(sweep):
    done = sweep.completed()
    cols = [c for c in sweep.metric_columns() if done[c].notna().any()]
    rows = []
    for label in sweep.configs:
        runs = done[done["config"] == label]
        rows.append([label, str(len(runs))] + [mean_std(runs[c]) for c in cols])
    left_out = [c for c in sweep.df.attrs["metric_columns"] if c not in sweep.metric_columns()]
    note = (f" Per-expert metrics ({len(left_out)}, such as {left_out[0]}) are left out: expert numbers differ "
            "between seeds, so a mean over seeds would mix different experts." if left_out else "")
    return ('<section id="summary"><h2>Final metrics</h2>'
            f'<p class="note">Last logged value of each metric, mean ± sample standard deviation over the '
            f"completed runs (seeds) of each configuration; n = completed runs.{esc(note)}</p>"
            + html_table(["configuration", "n"] + cols, rows, "summary-table", numeric=range(1, len(cols) + 2))
            + "</section>")


def runs_section(sweep):
    rest = sweep.df[sweep.df["status"] != "completed"]
    if rest.empty:
        return '<section id="runs"><h2>Runs not completed</h2><p id="no-failed-runs">Every run completed.</p></section>'
    rows = [[r.status, r.run_id, r.config, str(r.seed), r.error] for r in rest.itertuples()]
    return ('<section id="runs"><h2>Runs not completed</h2>'
            '<p class="note">Failed runs with their error; pending and running runs of a sweep in progress. '
            "Only completed runs enter the table above and the figures.</p>"
            + html_table(["status", "run", "configuration", "seed", "error"], rows, "unfinished-runs",
                         row_classes=[f"run {r[0]}" for r in rows]) + "</section>")


def x_axis(wide):
    """"epoch" when every run has one metrics row per epoch, else "step"."""
    return "step" if wide.duplicated(["run_id", "epoch"]).any() else "epoch"


def phase_starts(wide, x):
    """(x, phase name) where the first run's phase changes (multi-phase models), [] for one phase."""
    first = wide[wide["run_id"] == wide["run_id"].iloc[0]]
    change = first["phase"].ne(first["phase"].shift())
    starts = list(zip(first.loc[change, x], first.loc[change, "phase"]))
    return starts if len(starts) > 1 else []


def curves_figure(wide, names, label):
    """One panel per metric: the mean over the runs (seeds) of `wide` at each x, ± one sample
    standard deviation as a band."""
    from matplotlib.figure import Figure

    x = x_axis(wide)
    cols = min(4, len(names))
    nrows = math.ceil(len(names) / cols)
    width, height = 3.1 * cols, 0.6 + 2.2 * nrows
    fig = Figure(figsize=(width, height))
    # fixed margins in inches: a layout engine would cost more than drawing the panels
    fig.subplots_adjust(left=0.55 / width, right=1 - 0.15 / width, bottom=0.45 / height, top=1 - 0.6 / height,
                        wspace=0.35, hspace=0.6)
    axes = fig.subplots(nrows, cols, squeeze=False).ravel()
    phases = phase_starts(wide, x)
    for ax, name in zip(axes, names):
        s = wide.groupby(x)[name].agg(["mean", "std", "count"])
        s = s[s["count"] > 0]
        ax.plot(s.index, s["mean"], marker="o" if len(s) <= 20 else None, markersize=3)
        ax.fill_between(s.index, s["mean"] - s["std"], s["mean"] + s["std"], alpha=0.25)
        for start, _ in phases[1:]:
            ax.axvline(start, color="0.6", linestyle=":", linewidth=1)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel(x, fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    n = wide["run_id"].nunique()
    title = f"{label}: mean ± std over {n} run{'s' if n != 1 else ''}"
    if phases:
        title += "; phases from " + ", ".join(f"{x} {start}: {p}" for start, p in phases)
    fig.suptitle(title, fontsize=9)
    return fig


def curves_section(sweep):
    done = sweep.completed()
    if done.empty:
        return '<section id="curves"><h2>Learning curves</h2><p>No completed run yet.</p></section>'
    wide = metrics(sweep.folder, runs=done, long=False).merge(done[["run_id", "config"]], on="run_id")
    names = [c for c in wide.columns if c not in ("run_id", "epoch", "step", "phase", "config")
             and c not in sweep.df.attrs["varied_keys"] and not PER_EXPERT.search(c)]
    parts = ['<section id="curves"><h2>Learning curves</h2><p class="note">Every metric the runs logged '
             "(per-expert metrics excepted), per configuration: mean over its completed runs (seeds) at each "
             "epoch as recorded (optimizer step when a run logged several rows per epoch), band = ± one sample "
             "standard deviation.</p>"]
    for i, label in enumerate(sweep.configs):
        w = wide[wide["config"] == label]
        have = [n for n in names if w[n].notna().any()]
        if w.empty or not have:
            continue
        caption = (f"Learning curves of {label}: mean ± std over {w['run_id'].nunique()} completed runs, "
                   f"{len(have)} metrics.")
        parts.append(figure_html(f"curves-{i}", "curves", caption, png(curves_figure(w, have, label)),
                                 {"config": label}))
    return "\n".join(parts) + "</section>"


def plugin_figures_html(names, draw, folder):
    """The figures one plot script draws for the models `names`, or a line saying why there are none."""
    what = esc(", ".join(names))
    if draw is None:
        return f'<p class="note">{what}: no plot script draws figures of this model.</p>'
    try:
        figs = draw(folder)
    except Exception as e:  # a broken plot script must not cost the rest of the page
        return f'<p class="error">{what}: the figures could not be drawn: {esc(type(e).__name__)}: {esc(e)}</p>'
    if not figs:
        return f'<p class="note">{what}: no figures (no completed run recorded what they show).</p>'
    key = slug(names[0])
    return "\n".join(figure_html(f"{key}-{slug(f.kind)}-{n}", f"plugin {key}-{slug(f.kind)}", f.caption, f.png,
                                 {"config": f.config} if f.config else None) for n, f in enumerate(figs))


def plugin_section(sweep, plugins):
    from . import plugin_figures

    parts = ['<section id="plugin-figures"><h2>Figures of the model plugin</h2>']
    for names, draw in plugin_figures.scripts_for(plugins):
        parts.append(f"<h3>{esc(', '.join(names))}</h3>" + plugin_figures_html(names, draw, sweep.folder))
    return "\n".join(parts) + "</section>"


# ---------------------------------------------------------------------------------------------
# the page


def render(folder):
    """The report page of the results folder `folder` as HTML text."""
    sweep = Sweep(folder)
    plugins = sweep.model_plugins()
    sections = [header_section(sweep, plugins), summary_section(sweep), runs_section(sweep),
                curves_section(sweep), plugin_section(sweep, plugins)]
    return page(f"{sweep.name}: modlab report", sections)


def write_report(folder, out=None):
    """Writes the report of `folder` to `out` (default `folder`/report.html); returns the path."""
    out = out or os.path.join(os.fspath(folder), REPORT_FILE)
    text = render(folder)
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, out)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="scripts/report", description="Write one self-contained HTML page per "
                                 "results folder: final metrics, learning curves, the model plugin's figures.")
    ap.add_argument("folders", nargs="+", metavar="DIR", help="results folders (the --out of modlab run)")
    ap.add_argument("--out", metavar="FILE.html", help="the page (one folder only; default DIR/report.html)")
    args = ap.parse_args(argv)
    if args.out and len(args.folders) > 1:
        ap.error("--out names one page: give one DIR with it (without it each DIR gets DIR/report.html)")
    status = 0
    for folder in args.folders:
        try:
            print(write_report(folder, args.out))
        except (FileNotFoundError, KeyError, ValueError) as e:
            print(f"scripts/report: {folder}: {e}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
