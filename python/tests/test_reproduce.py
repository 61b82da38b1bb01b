"""Tests of scripts/reproduce and of the results pages it writes (scripts/plot_{hier_modular,mode,moe}.py --doc).

Every document `scripts/reproduce` knows is dry-run: each sweep it would run must exist and pass
`modlab expand` (every key checked) with the options it is run with. Then tiny real sweeps shaped
like the documents' are run and their pages written: the tables must carry the numbers of the run
files, the reference-protocol column must tell the reference settings from the others, and the
interval arithmetic must be right.

Run from python/:
    MODLAB_EXE=../build/bin/modlab MODLAB_PLUGIN_PATH=../build/plugins python3 -m unittest -v tests.test_reproduce
Without MODLAB_EXE the tests that run sweeps are skipped.
"""
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import sweep_summary  # noqa: E402

DOCUMENTS = ["moe", "mode", "hier_modular", "dm_math", "goe", "masked_analyzer"]

HIER = """\
[run]
name = "hm_tiny"
[dataset]
plugin = "toy"
task = "boolean"
structure = [6, 3, 2, 2]
split_seed = 40
train_noise = 0.1
[model]
plugin = "hierarchically_modular"
tau = 2.0
lr_module_input = 0.1
[train]
epochs = 1000
batch_size = 64
optimizer = "adam"
lr = 0.01
weight_decay = 1e-3
eval_every = 500
checkpoint_every = 0
eval_splits = ["train", "test"]
[sweep]
seeds = 2
[sweep.grid]
"dataset.train_fraction" = [0.3, 0.5]
[[sweep.zip]]
"dataset.train_noise" = [0.1, 0.0]
"train.weight_decay" = [1e-3, 0.0]
"""

# The MNIST variant of hier_modular, tiny: an MLP on 8 image pairs per digit pair; {epochs} and the
# MNIST folder are filled in.
HIER_MNIST = """\
[run]
name = "hm_mnist_{epochs}"
[dataset]
plugin = "rotated_mnist"
root = "{root}"
mode = "digit_pairs"
structure = [6, 3, 2, 2]
train_fraction = 0.5
samples_per_pair = 8
test_samples_per_pair = 4
flatten = true
[model]
plugin = "mlp"
arch = [1568, 16, 2]
[train]
epochs = {epochs}
batch_size = 64
optimizer = "adam"
lr = 0.001
eval_splits = ["train", "val", "test1", "test2"]
[sweep]
seeds = 3
"""


def mnist_root():
    """The MNIST folder of the shared data, or None."""
    data = os.environ.get("MODLAB_DATA_DIR") or os.path.join(ROOT, "..", "shared", "data")
    root = os.path.abspath(os.path.join(data, "mnist"))
    return root if os.path.exists(os.path.join(root, "train-images-idx3-ubyte.gz")) else None


MODE = """\
[run]
name = "mode_mnist"
[dataset]
plugin = "toy"
task = "multi_class"
num_samples = 240
[model]
plugin = "mode"
num_experts = 8
expert = "mlp"
expert_hidden = [8]
dropout = 0.2
gate = "mlp"
gate_hidden = [8]
temperature = 0.02
[train]
epochs = 5
batch_size = 64
optimizer = "adam"
lr = 0.001
eval_splits = ["test"]
[sweep]
seeds = [0, 1, 2]
[[sweep.zip]]
"model.alpha" = [0.0, 0.01, 0.01]
"model.kd_outputs" = ["separate", "separate", "shared"]
"""

MOE = """\
[run]
name = "moe_mnist"
[dataset]
plugin = "toy"
task = "multi_class"
num_samples = 240
[model]
plugin = "moe"
expert = "mlp"
expert_hidden = [8]
gate = "mlp"
gate_hidden = [8]
eps = 1e-7
sample_similarity_form = "reference"
fit_gate_metrics = true
[train]
epochs = 3
batch_size = 32
optimizer = "adam"
lr = 0.01
eval_splits = ["train", "test"]
[sweep]
seeds = [0, 1, 2]
[[sweep.zip]]
"model.num_experts" = [1, 3, 3]
"model.gating" = ["softmax", "softmax", "attentive"]
"model.w_importance" = [0.0, 0.0, 0.0]
"model.beta_same" = [0.0, 0.0, 1e-5]
"model.beta_diff" = [0.0, 0.0, 1e-5]
"""

def moe_scan(name, grid):
    """The MOE sweep with E = 3, named `name`, over two seeds and the gates × `grid` (TOML lines)."""
    head = MOE.split("[sweep]")[0].replace('name = "moe_mnist"', f'name = "{name}"')
    return head.replace("[model]", "[model]\nnum_experts = 3") + \
        '[sweep]\nseeds = [0, 1]\n[sweep.grid]\n"model.gating" = ["softmax", "attentive"]\n' + grid


MOE_IMPORTANCE = moe_scan("moe_mnist_importance", '"model.w_importance" = [0.2, 1.0]\n')
MOE_SAMPLE_SIMILARITY = moe_scan("moe_mnist_sample_similarity",
                                 '"model.beta_same" = [1e-5]\n"model.beta_diff" = [1e-6, 1e-1]\n')


def modlab_exe():
    return os.environ.get("MODLAB_EXE")


def run_sweep(workdir, name, text):
    toml = os.path.join(workdir, name + ".toml")
    with open(toml, "w") as f:
        f.write(text)
    out = os.path.join(workdir, name)
    proc = subprocess.run([modlab_exe(), "run", toml, "--out", out, "--jobs", "2", "--threads", "1"],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"modlab run {toml} exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return out


def write_doc(script, folders, extra=()):
    doc = os.path.join(os.path.dirname(folders[0]), script + ".md")
    proc = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "scripts", script + ".py"), *folders, "--doc", doc,
                           *extra], capture_output=True, text=True, timeout=300, cwd=os.path.dirname(doc))
    if proc.returncode != 0:
        raise RuntimeError(f"{script} --doc exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    with open(doc) as f:
        return f.read()


def final_metrics(folder):
    """[(config TOML text, {metric: final value})] of the completed runs of a sweep folder."""
    out = []
    with h5py.File(os.path.join(folder, "sweep.h5"), "r") as f:
        for run_id in f["runs"]:
            run = f["runs"][run_id]
            metrics = {k: float(v[()][~np.isnan(v[()])][-1]) for k, v in run["metrics"].items()
                       if k not in ("epoch", "step", "phase") and np.any(~np.isnan(v[()]))}
            out.append((sweep_summary.text(run.attrs["config"]), metrics))
    return out


def table_rows(page, first_cell):
    """The cells of every Markdown table row of `page` whose first cell is `first_cell`."""
    rows = []
    for line in page.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            rows.append(cells)
    return rows


class MeanInterval(unittest.TestCase):
    def test_t_interval_of_known_values(self):
        n, mean, std, half = sweep_summary.mean_ci([1.0, 2.0, 3.0])
        self.assertEqual((n, mean, std), (3, 2.0, 1.0))
        self.assertAlmostEqual(half, 4.303 / math.sqrt(3), places=6)  # t(0.975, 2 df) · s / √n
        n, mean, std, half = sweep_summary.mean_ci([0.5] * 40 + [float("nan")])
        self.assertEqual((n, mean, std, half), (40, 0.5, 0.0, 0.0))
        self.assertTrue(math.isnan(sweep_summary.mean_ci([1.0])[3]))
        self.assertEqual(sweep_summary.mean_ci([])[0], 0)


class CountRuns(unittest.TestCase):
    """sweep_summary.count_runs (the results pages' cost estimates) agrees with `modlab expand`."""

    def test_counts_equal_the_expansion(self):
        if not modlab_exe():
            self.skipTest("MODLAB_EXE not set")
        for sweep in ["moe/mnist.toml", "moe/mnist_sample_similarity.toml", "moe/mnist_experts.toml",
                      "hier_modular/modular.toml", "mode/mnist.toml", "quickstart.toml"]:
            path = os.path.join(ROOT, "sweeps", sweep)
            p = subprocess.run([modlab_exe(), "expand", path], capture_output=True, text=True, timeout=120)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn(f"{sweep_summary.count_runs(path)} runs", p.stdout.splitlines()[-1], sweep)


class DryRun(unittest.TestCase):
    """Every sweep a document's reproduction runs exists and passes `modlab expand` as it is run."""

    def test_every_document_names_valid_sweeps_and_scripts(self):
        if not modlab_exe():
            self.skipTest("MODLAB_EXE not set")
        for name in DOCUMENTS:
            with self.subTest(document=name):
                proc = subprocess.run([os.path.join(ROOT, "scripts", "reproduce"), name, "--dry-run"],
                                      capture_output=True, text=True, timeout=60, cwd=ROOT)
                self.assertEqual(proc.returncode, 0, proc.stderr)
                lines = [shlex.split(l) for l in proc.stdout.splitlines() if l.strip()]
                runs = [l for l in lines if l[:2] == ["build/bin/modlab", "run"]]
                self.assertTrue(runs, proc.stdout)
                for cmd in runs:
                    sweep = cmd[2]
                    self.assertTrue(os.path.exists(os.path.join(ROOT, sweep)), sweep)
                    sets = [a for i, a in enumerate(cmd) if i > 0 and cmd[i - 1] == "--set"]
                    expand = [modlab_exe(), "expand", os.path.join(ROOT, sweep)] + [x for s in sets for x in ("--set", s)]
                    p = subprocess.run(expand, capture_output=True, text=True, timeout=120)
                    self.assertEqual(p.returncode, 0, f"{' '.join(expand)}:\n{p.stderr}")
                    self.assertEqual(cmd[cmd.index("--out") + 1].split("/")[0], "results")
                scripts = [a for l in lines for a in l if a.startswith("scripts/") and a.endswith(".py")]
                self.assertTrue(scripts, proc.stdout)
                for s in scripts:
                    self.assertTrue(os.path.exists(os.path.join(ROOT, s)), s)
                self.assertIn(f"docs/results/{name}.md", proc.stdout)
        # hier_modular --only mnist: the MNIST sweeps only, the rest of the page kept
        proc = subprocess.run([os.path.join(ROOT, "scripts", "reproduce"), "hier_modular", "--dry-run", "--only", "mnist"],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
        lines = [shlex.split(l) for l in proc.stdout.splitlines() if l.strip()]
        self.assertEqual([l[2] for l in lines if l[:2] == ["build/bin/modlab", "run"]],
                         [f"sweeps/hier_modular/{s}.toml" for s in ("mnist", "mnist_mlp", "mnist_reference",
                                                                     "mnist_mlp_reference")])
        self.assertIn("--keep", lines[-1])
        bad = subprocess.run([os.path.join(ROOT, "scripts", "reproduce"), "no_such_page"], capture_output=True,
                             text=True, cwd=ROOT)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("unknown document 'no_such_page'", bad.stderr)


class Pages(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not modlab_exe():
            raise unittest.SkipTest("MODLAB_EXE not set")
        cls.tmp = tempfile.mkdtemp(prefix="modlab_reproduce_")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_hier_modular_page(self):
        folder = run_sweep(self.tmp, "hm_tiny", HIER)
        page = write_doc("plot_hier_modular", [folder], ["--out", os.path.join(self.tmp, "hm.png")])
        self.assertIn("| hm_tiny | 8 | 0–1 |", page)
        ref = table_rows(page, "modular, learned routing, τ=2")
        protocols = sorted(r[1] for r in ref if len(r) == 4)
        self.assertEqual(protocols, ["no: input noise σ 0 (reference 0.1), weight decay 0 (reference 0.001)", "yes"])
        # the all-zeros baseline row carries the runs' test_zeros_accuracy, per fraction
        zeros = {}
        for config, m in final_metrics(folder):
            s = 0.3 if "train_fraction = 0.3" in config else 0.5
            zeros.setdefault(s, set()).add(round(m["test_zeros_accuracy"], 3))
        self.assertEqual([len(v) for v in zeros.values()], [1, 1])  # one split per fraction
        baseline = table_rows(page, "all-zeros baseline (predict 0 for every bit)")[0]
        self.assertEqual(baseline[2:], [f"{zeros[0.3].pop():.3f}", f"{zeros[0.5].pop():.3f}"])
        # a cell: mean ± std [interval] of the two seeds' final test accuracy
        accs = sorted(m["test_accuracy"] for c, m in final_metrics(folder)
                      if "train_fraction = 0.3" in c and "weight_decay = 0.001" in c)
        n, mean, std, half = sweep_summary.mean_ci(accs)
        row = next(r for r in ref if r[1] == "yes")
        self.assertTrue(row[2].startswith(f"{mean:.3f} ± {std:.3f} ["), row[2])
        self.assertIn("reference protocol − ablation", page)
        self.assertTrue(os.path.getsize(os.path.join(self.tmp, "hm.png")) > 10000)

    def test_hier_modular_keep(self):
        """--keep rewrites the Boolean or the MNIST part from the sweeps given and keeps the rest."""
        import plot_hier_modular as phm
        # the MNIST part's comparison with the Boolean task reads the Boolean side back from the kept
        # tables exactly as it computes it from the runs (an interval clipped at 1 included)
        bits = [{"protocol": "yes", "structure": "6,3,2,2", "variant": "MLP", "fraction": s, "test_accuracy": a,
                 "zeros": 0.8, "routing_correct": math.nan, "train_accuracy": 1.0}
                for s, accs in ((0.3, [0.7, 0.75, 0.81]), (0.5, [1.0, 0.98, 1.0])) for a in accs]
        images = [{"label": "MLP", "fraction": s, "test2_accuracy": a, "zeros": 0.78}
                  for s in (0.3, 0.5) for a in (0.6, 0.65, 0.71)]
        stats = phm.aggregate(bits)
        kept = phm.kept_boolean_stats(phm.tables(stats).splitlines())
        self.assertEqual(len(phm.boolean_gap(stats, images)), 2)
        self.assertEqual(phm.boolean_gap(kept, images), phm.boolean_gap(stats, images))
        self.assertIn("against 0.993 [0.965, 1.000] test accuracy on the Boolean task", phm.boolean_gap(kept, images)[1])
        root = mnist_root()
        if not root:
            self.skipTest("no MNIST files (train-images-idx3-ubyte.gz) in $MODLAB_DATA_DIR/mnist or ../shared/data/mnist")
        # the Boolean MLP too: the MNIST MLP is compared with it
        mlp = HIER.replace('name = "hm_tiny"', 'name = "hm_tiny_mlp"').replace(
            'plugin = "hierarchically_modular"\ntau = 2.0\nlr_module_input = 0.1', 'plugin = "mlp"\narch = [6, 8, 2]')
        boolean = [run_sweep(self.tmp, "hm_tiny", HIER), run_sweep(self.tmp, "hm_tiny_mlp", mlp)]
        mnist = [run_sweep(self.tmp, f"hm_mnist_{e}", HIER_MNIST.format(epochs=e, root=root)) for e in (2, 1)]
        full = write_doc("plot_hier_modular", boolean + mnist, ["--no-plot"])
        absent = os.path.join(self.tmp, "absent")
        self.assertEqual(write_doc("plot_hier_modular", [absent], ["--keep"]), full)
        # the MNIST part anew, the Boolean side of its comparison read back from the kept tables
        self.assertEqual(write_doc("plot_hier_modular", mnist, ["--keep"]), full)
        self.assertEqual(write_doc("plot_hier_modular", boolean, ["--keep", "--no-plot"]), full)
        with self.assertRaisesRegex(RuntimeError, r"--keep rewrites the page's MNIST part .* \(hm_mnist_1\)"):
            write_doc("plot_hier_modular", mnist[:1], ["--keep"])

    def test_hier_modular_mnist_protocols(self):
        """The MNIST variant's tables per protocol and their difference paired by seed."""
        import plot_hier_modular
        self.assertEqual(plot_hier_modular.mnist_protocol({"train": {"epochs": 200},
                                                           "dataset": {"samples_per_pair": 1000}}), "yes")
        # models run only under another protocol are named, with the time their reference runs would take
        run = lambda label, s, seed, t: {"label": label, "fraction": s, "seed": seed, "time_s": t}  # noqa: E731
        by_proto = {"yes": [run("MLP", 0.3, 0, 100.0), run("MLP", 0.3, 1, 300.0)],
                    "no: 30 epochs": [run("MLP", 0.3, 0, 5.0)] + [run("modular, known routing", s, k, 5.0)
                                                                  for s in (0.3, 0.5) for k in (0, 1, 2)]}
        text = plot_hier_modular.missing_reference(by_proto)
        self.assertIn("Not run here under the reference protocol: modular, known routing (6 runs, "
                      "`sweeps/hier_modular/mnist_reference.toml`)", text)
        self.assertIn("about 10.0 min with --jobs 2", text)  # 6 runs × 200 s / 2
        self.assertEqual(plot_hier_modular.missing_reference({"no: 30 epochs": by_proto["no: 30 epochs"]}), "")
        root = mnist_root()
        if not root:
            self.skipTest("no MNIST files (train-images-idx3-ubyte.gz) in $MODLAB_DATA_DIR/mnist or ../shared/data/mnist")
        folders = [run_sweep(self.tmp, f"hm_mnist_{e}", HIER_MNIST.format(epochs=e, root=root)) for e in (2, 1)]
        page = write_doc("plot_hier_modular", folders, ["--no-plot"])
        two = "no: 2 epochs (reference 200), 8 image pairs per train pair (reference 1000)"
        one = "no: 1 epochs (reference 200), 8 image pairs per train pair (reference 1000)"
        self.assertIn(f"### MNIST, reference protocol: {two}", page)
        self.assertIn(f"### MNIST, reference protocol: {one}", page)
        self.assertIn("not been run here", page)
        # the difference table: the first protocol in order (the reference's where run; here the one of
        # 1 epoch) minus the others, on test2, paired by seed
        self.assertIn(f"### MNIST: {one[4:]} − {two[4:]}", page)
        seeds = [{int(re.search(r"^seed = (\d+)", c, re.M).group(1)): m for c, m in final_metrics(f)} for f in folders]
        d = [seeds[1][s]["test2_accuracy"] - seeds[0][s]["test2_accuracy"] for s in seeds[0]]
        n, mean, _, half = sweep_summary.mean_ci(d)
        row = next(r for r in table_rows(page, "MLP") if len(r) == 6)
        self.assertEqual(row[1:3], ["0.5", "3"])
        self.assertTrue(row[5].startswith(f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}]"), row)

    def test_mode_page(self):
        folder = run_sweep(self.tmp, "mode_mnist", MODE)
        page = write_doc("plot_mode", [folder])
        rows = {r[0]: r for r in table_rows(page, "E=8, α=0.01, L_KD on a separate forward")}
        self.assertTrue(rows)
        # on toy data with 240 examples the epochs/batch match; only the data differs, which the
        # protocol column does not judge: the separate forward at α = 0.01 is the reference's
        self.assertEqual(table_rows(page, "E=8, α=0.01, L_KD on a separate forward")[0][1], "yes")
        self.assertEqual(table_rows(page, "E=8, α=0.01, L_KD on the prediction's forward")[0][1],
                         "no: kd_outputs \"shared\" (reference \"separate\")")
        self.assertTrue(table_rows(page, "E=8, α=0")[0][1].startswith("baseline: the plain MoE"))
        self.assertIn("L_KD on a separate forward (reference) − on the prediction's forward, test accuracy (points):", page)
        self.assertIn("over 3 paired seeds", page)

    def test_moe_page(self):
        folder = run_sweep(self.tmp, "moe_mnist", MOE)
        page = write_doc("plot_moe", [folder])
        row = table_rows(page, "E = 3, softmax gate")[0]
        errs = [100 * (1 - m["test_accuracy"]) for c, m in final_metrics(folder)
                if "num_experts = 3" in c and '"softmax"' in c]
        n, mean, std, half = sweep_summary.mean_ci(errs)
        self.assertEqual(n, 3)
        self.assertTrue(row[3].startswith(f"{mean:.2f} ± {std:.2f} ["), row[3])
        # training-time columns are filled (fit_gate_metrics = true in the sweep)
        self.assertNotIn("n/a", row[4:], row)
        self.assertIn("- single CNN (E = 1) − E = 3, softmax gate, test error (points): ", page)
        self.assertIn("- E = 3, attentive gate + L_s (β_s 1e-05, β_d 1e-05) − E = 3, softmax gate, test error", page)
        self.assertIn("## Committed, not run here yet", page)
        self.assertIn("`sweeps/moe/mnist_importance.toml`", page)
        # --keep with no new sweep: the page stays as it was
        self.assertEqual(write_doc("plot_moe", [os.path.join(self.tmp, "absent"), folder + "_absent"], ["--keep"]), page)
        # --keep with one new sweep: its row and section are added, the others kept to the letter
        imp = run_sweep(self.tmp, "moe_mnist_importance", MOE_IMPORTANCE)
        both = write_doc("plot_moe", [imp], ["--keep"])
        self.assertEqual(table_rows(both, "E = 3, softmax gate"), table_rows(page, "E = 3, softmax gate"))
        self.assertEqual(table_rows(both, "moe_mnist"), table_rows(page, "moe_mnist"))
        self.assertEqual(table_rows(both, "moe_mnist_importance")[0][1], "8")
        self.assertIn("## AISTATS importance-weight scan (moe §1.6)", both)
        errs = [100 * (1 - m["test_accuracy"]) for c, m in final_metrics(imp)
                if "w_importance = 1.0" in c and '"attentive"' in c]
        n, mean, std, half = sweep_summary.mean_ci(errs)
        self.assertEqual(n, 2)
        self.assertTrue(table_rows(both, "attentive gate, w_imp 1")[0][3].startswith(f"{mean:.2f} ± {std:.2f} ["))
        self.assertIn("- softmax gate, w_imp 1 − softmax gate, w_imp 0.2, test error (points): ", both)
        not_run = both.split("## Committed, not run here yet")[1]
        self.assertNotIn("`sweeps/moe/mnist_importance.toml`", not_run)
        self.assertIn("`sweeps/moe/fmnist.toml`", not_run)
        self.assertLess(both.index("## AISTATS MNIST table"), both.index("## AISTATS importance-weight scan"))
        # the L_s grid: its section goes after the AISTATS table, the others kept
        ls = run_sweep(self.tmp, "moe_mnist_sample_similarity", MOE_SAMPLE_SIMILARITY)
        grid = write_doc("plot_moe", [ls], ["--keep"])
        self.assertEqual(table_rows(grid, "attentive gate, w_imp 1"), table_rows(both, "attentive gate, w_imp 1"))
        errs = [100 * (1 - m["test_accuracy"]) for c, m in final_metrics(ls)
                if "beta_diff = 0.1" in c and '"softmax"' in c]
        n, mean, std, half = sweep_summary.mean_ci(errs)
        self.assertEqual(n, 2)
        self.assertTrue(table_rows(grid, "softmax gate, β_s 1e-05, β_d 0.1")[0][3].startswith(f"{mean:.2f} ± {std:.2f} ["))
        self.assertIn("- attentive gate, β_s 1e-05, β_d 0.1 − attentive gate, β_s 1e-05, β_d 1e-06, "
                      "H_s training batches (bits): ", grid)
        self.assertLess(grid.index("## AISTATS MNIST table"), grid.index("## AISTATS sample-similarity grid"))
        self.assertLess(grid.index("## AISTATS sample-similarity grid"), grid.index("## AISTATS importance-weight scan"))
        self.assertNotIn("`sweeps/moe/mnist_sample_similarity.toml`", grid.split("## Committed, not run here yet")[1])
        # the Fashion-MNIST table: the AISTATS table's rows and findings under its own title, after the grid
        fm = run_sweep(self.tmp, "moe_fmnist", MOE.replace('name = "moe_mnist"', 'name = "moe_fmnist"'))
        fashion = write_doc("plot_moe", [fm], ["--keep"])
        section = fashion.split("## AISTATS Fashion-MNIST table (moe §1.6)")[1].split("\n## ")[0]
        self.assertEqual(table_rows(section, "E = 3, softmax gate"), table_rows(page, "E = 3, softmax gate"))
        self.assertIn("`sweeps/moe/fmnist.toml`: the configurations of the MNIST table above on Fashion-MNIST", section)
        self.assertIn("- single CNN (E = 1) − E = 3, softmax gate, test error (points): ", section)
        self.assertLess(fashion.index("## AISTATS sample-similarity grid"), fashion.index("## AISTATS Fashion-MNIST"))
        self.assertNotIn("`sweeps/moe/fmnist.toml`", fashion.split("## Committed, not run here yet")[1])


if __name__ == "__main__":
    unittest.main()
