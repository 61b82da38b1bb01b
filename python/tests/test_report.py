"""Tests of the HTML report (python/modlab/report.py, scripts/report) and of the moe figures it
embeds (scripts/plot_moe.py), on sweeps run by the modlab executable (the quick start, and small
moe, hier_modular, masked_analyzer and mode sweeps), and of the page as headless Chromium renders
it. goe needs MNIST and is left out.

Run from python/:
    MODLAB_EXE=../build/bin/modlab MODLAB_PLUGIN_PATH=../build/plugins python3 -m unittest -v tests.test_report
Without MODLAB_EXE the tests are skipped; without Chromium the rendering test is.
"""
import html.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "python"))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import modlab  # noqa: E402
import modlab.report  # noqa: E402

CHROMIUM_MISSING = "chromium is not installed (scripts/setup --for-tests installs it)"

# A sweep caught in progress, with a failed run: `--shard 0/2` runs runs 0 and 2 of 4 and leaves
# the other two pending; run 2 starts its experts from a run that does not exist and fails.
PARTIAL_SWEEP = """\
[run]
name = "report_partial"

[dataset]
plugin = "toy"
task = "multi_class"
num_samples = 120

[model]
plugin = "moe"
num_experts = 2

[train]
epochs = 3
batch_size = 32
checkpoint_every = 0

[sweep]
seeds = [0, 1]
grid = { "model.init_experts_from" = ["", "/nonexistent/report_test/abcdef123456"] }
"""

# hier_modular on the Boolean task [6, 3, 2, 2]: learned and known routing, two seeds, short.
HIER_SWEEP = """\
[run]
name = "report_hier"

[dataset]
plugin = "toy"
task = "boolean"
structure = [6, 3, 2, 2]
train_fraction = 0.8
split_seed = 40

[model]
plugin = "hierarchically_modular"
module_arch = [2, 12, 1]
topk = 2
tau = 2.0
lr_module_input = 0.1

[train]
epochs = 20
batch_size = 64
optimizer = "adam"
lr = 0.01
eval_every = 5
checkpoint_every = 0
eval_splits = ["train", "test"]

[sweep]
seeds = [0, 1]
grid = { "model.known_module_inputs" = [false, true] }
"""

# mode on the toy task: alpha 0 (a plain mixture) and 0.01, two seeds, 3 epochs.
MODE_SWEEP = """\
[run]
name = "report_mode"

[dataset]
plugin = "toy"
task = "multi_class"
num_samples = 300

[model]
plugin = "mode"
num_experts = 2
expert = "mlp"
gate = "mlp"
gate_hidden = [8]

[train]
epochs = 3
batch_size = 32
eval_splits = ["train", "test"]
checkpoint_every = 0

[sweep]
seeds = [0, 1]
grid = { "model.alpha" = [0.0, 0.01] }
"""

# One masked_analyzer run: a small FNN on the tuple task, its masks and analysis tables.
MASKED_SWEEP = """\
[run]
name = "report_masked"

[dataset]
plugin = "tuple_rnn"
task = "tuple"
train_size = 256
valid_size = 64
test_size = 64

[model]
plugin = "masked_analyzer"
samples = 2

[model.inner]
plugin = "mask_fnn"
layer_sizes = [16, 16]
run_per_subtask = true

[train]
batch_size = 32
epochs = 1
steps_per_epoch = 4
eval_splits = ["valid"]
checkpoint_every = 0

[train.phases.mask]
epochs = 1
steps_per_epoch = 4
"""


def run_modlab(exe, args, expect=(0,)):
    proc = subprocess.run([exe, "run"] + args, capture_output=True, text=True, timeout=300)
    if proc.returncode not in expect:
        raise RuntimeError(f"modlab run {' '.join(args)} exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")


def run_sweep(exe, workdir, name, text, extra=(), expect=(0,)):
    """Write `name`.toml into `workdir`, run it into `workdir`/`name`, return that folder."""
    toml = os.path.join(workdir, name + ".toml")
    with open(toml, "w") as f:
        f.write(text)
    out = os.path.join(workdir, name)
    run_modlab(exe, [toml, "--out", out, "--jobs", "2"] + list(extra), expect)
    return out


class Page(html.parser.HTMLParser):
    """The figures (id, classes, data-config, image sources, caption), table ids and the
    attributes of the element with id run-counts of an HTML page."""

    def __init__(self, text):
        super().__init__()
        self.figures, self.tables, self.counts, self._fig, self._caption = [], [], {}, None, False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "figure":
            self._fig = {"id": a.get("id"), "class": a.get("class", "").split(), "config": a.get("data-config"),
                         "img": [], "caption": ""}
            self.figures.append(self._fig)
        elif tag == "img" and self._fig is not None:
            self._fig["img"].append(a.get("src", ""))
        elif tag == "figcaption":
            self._caption = True
        elif tag == "table":
            self.tables.append(a.get("id"))
        if a.get("id") == "run-counts":
            self.counts = {k[5:]: v for k, v in a.items() if k.startswith("data-")}

    def handle_endtag(self, tag):
        if tag == "figure":
            self._fig = None
        elif tag == "figcaption":
            self._caption = False

    def handle_data(self, data):
        if self._caption and self._fig is not None:
            self._fig["caption"] += data

    def of_class(self, cls):
        return [f for f in self.figures if cls in f["class"]]


def table_rows(text, table_id):
    """The rows (lists of cell texts) of the table `table_id`."""
    body = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', text, re.S).group(1)
    return [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


class ReportTest(unittest.TestCase):
    skip_reason = None

    @classmethod
    def setUpClass(cls):
        cls.exe = os.environ.get("MODLAB_EXE")
        if not cls.exe:
            cls.skip_reason = "MODLAB_EXE is unset: set it to the modlab executable (build/bin/modlab)"
            return
        cls.tmp = tempfile.mkdtemp(prefix="modlab_report_")
        cls.quick = os.path.join(cls.tmp, "quickstart")  # 10 of its 40 epochs: the same figures, sooner
        run_modlab(cls.exe, [os.path.join(REPO, "sweeps", "quickstart.toml"), "--jobs", "2", "--out", cls.quick,
                             "--set", "train.epochs=10"])
        cls.partial = run_sweep(cls.exe, cls.tmp, "partial", PARTIAL_SWEEP, ["--shard", "0/2"], expect=(1,))
        cls.hier = run_sweep(cls.exe, cls.tmp, "hier", HIER_SWEEP)
        cls.masked = run_sweep(cls.exe, cls.tmp, "masked", MASKED_SWEEP)
        cls.mode = run_sweep(cls.exe, cls.tmp, "mode", MODE_SWEEP)
        proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "report"), cls.quick],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"scripts/report {cls.quick} exited with {proc.returncode}:\n{proc.stderr}")
        cls.quick_html = os.path.join(cls.quick, "report.html")
        cls.pages = {}
        for name, folder in (("quick", cls.quick), ("partial", cls.partial), ("hier", cls.hier),
                             ("masked", cls.masked), ("mode", cls.mode)):
            path = cls.quick_html if name == "quick" else modlab.report.write_report(folder)
            with open(path, encoding="utf-8") as f:
                cls.pages[name] = f.read()

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "tmp", None):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        if self.skip_reason:
            self.skipTest(self.skip_reason)

    # --- the quick start (moe): header, summary, curves, moe figures ---------------------------

    def test_header_counts_the_runs_and_names_the_sweep(self):
        text = self.pages["quick"]
        page = Page(text)
        self.assertIn("<h1>quickstart</h1>", text)
        self.assertEqual(page.counts, {"completed": "6", "failed": "0", "interrupted": "0", "running": "0",
                                       "pending": "0", "total": "6"})
        self.assertIn("runs: 6 completed, 0 failed of 6", text)
        self.assertIn("model.num_experts = 1, 2, 4", text)
        self.assertIn("<td>moe</td>", text)

    def test_summary_table_has_mean_and_std_over_seeds_per_config(self):
        rows = table_rows(self.pages["quick"], "summary-table")
        header = re.search(r'<table id="summary-table"><thead><tr>(.*?)</tr>', self.pages["quick"]).group(1)
        columns = re.findall(r"<th>(.*?)</th>", header)
        self.assertEqual([r[0] for r in rows], ["num_experts=1", "num_experts=2", "num_experts=4"])
        self.assertEqual([r[1] for r in rows], ["2", "2", "2"])
        self.assertNotIn("test_expert0_loss", columns)  # per-expert metrics are left out
        df = modlab.load_sweep(self.quick)
        col = columns.index("test_accuracy")
        for row, (_, runs) in zip(rows, df.groupby("model.num_experts")):
            v = runs["test_accuracy"]
            self.assertEqual(row[col], f"{v.mean():.4g} ± {v.std(ddof=1):.4g}")

    def test_one_learning_curve_figure_per_config(self):
        curves = Page(self.pages["quick"]).of_class("curves")
        self.assertEqual([f["id"] for f in curves], ["curves-0", "curves-1", "curves-2"])
        self.assertEqual([f["config"] for f in curves], ["num_experts=1", "num_experts=2", "num_experts=4"])
        for f in curves:
            self.assertEqual(len(f["img"]), 1)
            self.assertTrue(f["img"][0].startswith("data:image/png;base64,iVBOR"), f["id"])
            self.assertIn("mean ± std over 2 completed runs", f["caption"])

    def test_moe_figures_are_there(self):
        page = Page(self.pages["quick"])
        for kind in ("allocation", "decision", "per_expert"):
            figs = page.of_class(f"moe-{kind}")
            self.assertEqual([f["config"] for f in figs], ["num_experts=1", "num_experts=2", "num_experts=4"], kind)
            for f in figs:
                self.assertTrue(f["img"][0].startswith("data:image/png;base64,"), f["id"])
        self.assertIn("Not averaged over seeds", page.of_class("moe-per_expert")[0]["caption"])

    def test_page_is_self_contained(self):
        text = self.pages["quick"]
        self.assertIsNone(re.search(r"https?://", text))
        self.assertNotIn("<link", text)
        self.assertIsNone(re.search(r"<script[^>]*\ssrc=", text))
        sources = re.findall(r'\ssrc="([^"]*)"', text)
        self.assertGreater(len(sources), 0)
        self.assertTrue(all(s.startswith("data:image/png;base64,") for s in sources))

    # --- moe figures themselves (scripts/plot_moe.py) -----------------------------------------

    def moe_figures(self):
        """scripts/plot_moe.py as a module and the figures it draws of the quick start (made once)."""
        import plot_moe

        if not hasattr(ReportTest, "_moe_figures"):
            rows, swept = plot_moe.load_summary(self.quick, "test")
            _, groups = plot_moe.table(rows, swept)
            ReportTest._moe_figures = list(plot_moe.figures(self.quick, groups))
        return plot_moe, ReportTest._moe_figures

    def test_decision_maps_have_axes_legends_and_separate_colours(self):
        plot_moe, figs = self.moe_figures()
        fig = [f for f in figs if f.kind == "decision" and f.config == "num_experts=4"][0].figure
        axes = fig.axes
        self.assertEqual(len(axes), 1 + 1 + 4)  # gate, mixture, 4 experts
        self.assertEqual(axes[0].get_xlabel(), "x1")
        self.assertEqual(axes[0].get_ylabel(), "x2")
        self.assertGreater(len(axes[0].get_xticks()), 1)
        legends = {lg.get_title().get_text().split()[0]: lg for lg in fig.legends}
        self.assertEqual(set(legends), {"expert", "class"})
        self.assertEqual([t.get_text() for t in legends["expert"].get_texts()], [f"expert {e}" for e in range(4)])
        self.assertEqual([t.get_text() for t in legends["class"].get_texts()], [f"class {c}" for c in range(6)])
        experts = {tuple(c) for c in plot_moe.expert_colours(4)}
        classes = {tuple(c) for c in plot_moe.class_colours(6)}
        self.assertFalse(experts & classes)
        gate_colours = {tuple(c) for c in axes[0].collections[0].get_cmap().colors}
        self.assertEqual(gate_colours, experts)
        for e, ax in enumerate(axes[2:]):  # an expert's panel is framed in that expert's colour
            self.assertEqual(tuple(ax.spines["left"].get_edgecolor()), tuple(plot_moe.expert_colours(4)[e]))
            self.assertEqual({tuple(c) for c in ax.collections[0].get_cmap().colors}, classes)

    def test_per_expert_curves_are_per_seed(self):
        _, figs = self.moe_figures()
        fig = [f for f in figs if f.kind == "per_expert" and f.config == "num_experts=4"][0].figure
        self.assertEqual(len(fig.axes), 2 * 2)  # one row per seed, never a mean over seeds
        self.assertIn("seed 0", fig.axes[0].get_ylabel())
        self.assertIn("seed 1", fig.axes[2].get_ylabel())
        self.assertEqual(len(fig.axes[0].get_lines()), 4)

    def test_per_expert_table_ranks_experts_within_each_seed(self):
        proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "plot_moe.py"), self.quick,
                               "--per-expert", "--no-figures"], capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        line = [x for x in proc.stdout.splitlines() if x.startswith("- num_experts=4:")][0]
        self.assertEqual(re.findall(r"rank (\d)", line), ["1", "2", "3", "4"])
        firsts = [float(x) for x in re.findall(r"rank \d: ([\d.]+) ±", line)]
        self.assertEqual(firsts, sorted(firsts, reverse=True))

    # --- a sweep in progress, a failed run ----------------------------------------------------

    def test_sweep_in_progress_counts_pending_and_lists_the_failure(self):
        text = self.pages["partial"]
        page = Page(text)
        self.assertEqual((page.counts["completed"], page.counts["failed"], page.counts["pending"],
                          page.counts["total"]), ("1", "1", "2", "4"))
        df = modlab.load_sweep(self.partial, parse_values=False)
        failed = df[df["status"] == "failed"].iloc[0]
        self.assertTrue(failed["error"])
        rows = table_rows(text, "unfinished-runs")
        self.assertIn(["failed", failed["run_id"], f"init_experts_from={failed['model.init_experts_from']}",
                       str(failed["seed"]), failed["error"]], rows)
        self.assertEqual(sorted(r[0] for r in rows), ["failed", "pending", "pending"])
        self.assertEqual(len(page.of_class("curves")), 1)  # the one completed configuration

    # --- the other plugins' figures -----------------------------------------------------------

    def test_hier_modular_routing_figures(self):
        page = Page(self.pages["hier"])
        self.assertEqual(len(page.of_class("curves")), 2)
        self.assertEqual(len(page.of_class("hierarchically_modular-accuracy_routing")), 1)
        routing = page.of_class("hierarchically_modular-routing")
        self.assertEqual([f["config"] for f in routing], ["known_module_inputs=false", "known_module_inputs=true"])

    def test_masked_analyzer_masks(self):
        page = Page(self.pages["masked"])
        for kind in ("inverse", "iou", "mask"):
            self.assertEqual(len(page.of_class(f"masked_analyzer-{kind}")), 1, kind)
        self.assertNotIn('class="error"', self.pages["masked"])

    def test_mode_gate_heatmaps_and_probing(self):
        page = Page(self.pages["mode"])
        for kind in ("gate_heatmap", "probing", "losses"):
            self.assertEqual([f["config"] for f in page.of_class(f"mode-{kind}")], ["alpha=0.0", "alpha=0.01"], kind)
        self.assertEqual(len(page.of_class("mode-accuracy_vs_alpha")), 1)
        self.assertNotIn('class="error"', self.pages["mode"])

    # --- the command line ---------------------------------------------------------------------

    def test_command_line(self):
        script = os.path.join(REPO, "scripts", "report")
        out = os.path.join(self.tmp, "elsewhere.html")
        proc = subprocess.run([script, self.masked, "--out", out], capture_output=True, text=True, timeout=300)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.strip(), out)
        self.assertTrue(os.path.getsize(out) > 0)
        proc = subprocess.run([script, self.partial, self.hier, "--out", out], capture_output=True, text=True)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("--out names one page", proc.stderr)
        missing = os.path.join(self.tmp, "missing")
        proc = subprocess.run([script, missing], capture_output=True, text=True)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("no sweep index here", proc.stderr)

    # --- rendered by a browser ----------------------------------------------------------------

    def test_chromium_renders_every_figure(self):
        chromium = shutil.which("chromium")
        if not chromium:
            self.skipTest(CHROMIUM_MISSING)
        profile = tempfile.mkdtemp(prefix="chromium_", dir=self.tmp)
        url = "file://" + os.path.abspath(self.quick_html)
        # the page's script sets data-images-decoded="<decoded>/<all>" on <html> once it has loaded
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                              "--virtual-time-budget=20000", "--dump-dom", url],
                             capture_output=True, text=True, timeout=180)
        self.assertEqual(dom.returncode, 0, dom.stderr[-2000:])
        images = len(re.findall(r"<img\s", self.pages["quick"]))
        self.assertGreaterEqual(images, 12)
        self.assertIn(f'data-images-decoded="{images}/{images}"', dom.stdout)
        rendered = Page(dom.stdout)
        self.assertEqual([f["id"] for f in rendered.figures], [f["id"] for f in Page(self.pages["quick"]).figures])
        self.assertEqual(len(rendered.of_class("curves")), 3)
        self.assertEqual(len(rendered.of_class("moe-allocation")), 3)


if __name__ == "__main__":
    unittest.main()
