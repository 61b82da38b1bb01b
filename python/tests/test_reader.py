"""Tests of modlab.reader on real sweeps written by the modlab executable.

Run from python/:
    MODLAB_EXE=../build/bin/modlab MODLAB_PLUGIN_PATH=../build/plugins python3 -m unittest -v tests.test_reader
Without MODLAB_EXE the tests that need sweeps are skipped.
"""
import importlib.util
import math
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import unittest
import zlib
from unittest import mock

import h5py
import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import modlab  # noqa: E402

# Two configs that differ in keys of every TOML type (zipped), times two seeds: 4 runs of a
# 2-D toy task, 3 epochs each, about a second in all.
TINY_SWEEP = """\
[run]
name = "reader_tiny"

[dataset]
plugin = "toy"
task = "multi_class"
num_samples = 120

[model]
plugin = "moe"
expert = "mlp"

[train]
epochs = 3
batch_size = 32
checkpoint_every = 0

[sweep]
seeds = [0, 1]

[[sweep.zip]]
"model.num_experts" = [1, 2]
"train.lr" = [0.01, 0.02]
"train.shuffle" = [true, false]
"train.optimizer" = ["adam", "rmsprop"]
"model.expert_hidden" = [[4], [4, 4]]
"""

# One masked_analyzer run (no [sweep]): four phases and labelled tables, about a second.
TABLES_SWEEP = """\
[run]
name = "reader_tables"

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
layer_sizes = [8]

[train]
batch_size = 32
epochs = 1
steps_per_epoch = 2
eval_splits = ["valid"]
checkpoint_every = 0

[train.phases.mask]
epochs = 1
steps_per_epoch = 2
"""

VARIED = ["model.num_experts", "train.lr", "train.shuffle", "train.optimizer",
          "model.expert_hidden", "run.seed"]


def run_sweep(exe, workdir, name, text):
    """Write sweep `name`.toml into `workdir`, run it into `workdir`/`name`, return that folder."""
    toml = os.path.join(workdir, name + ".toml")
    with open(toml, "w") as f:
        f.write(text)
    out = os.path.join(workdir, name)
    proc = subprocess.run([exe, "run", toml, "--out", out, "--jobs", "1", "--threads", "1"],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{exe} run {toml} exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return out


def h5_metrics(path):
    """{metric: float64 values} of a run file's metrics/ group, read with h5py directly."""
    with h5py.File(path, "r") as f:
        m = f["metrics"]
        return {k: m[k][()] for k in m if k not in ("epoch", "step", "phase")}


def has_xarray():
    return importlib.util.find_spec("xarray") is not None


class ParseLiteralTest(unittest.TestCase):
    """parse_literal needs no sweep."""

    def test_types(self):
        self.assertEqual(modlab.parse_literal("1"), 1)
        self.assertIsInstance(modlab.parse_literal("1"), int)
        self.assertEqual(modlab.parse_literal("0.5"), 0.5)
        self.assertIs(modlab.parse_literal("true"), True)
        self.assertEqual(modlab.parse_literal('"adam"'), "adam")
        self.assertEqual(modlab.parse_literal("[4, 4]"), [4, 4])
        self.assertEqual(modlab.parse_literal('{ plugin = "toy", task = "boolean" }'),
                         {"plugin": "toy", "task": "boolean"})
        self.assertIsNone(modlab.parse_literal(""))

    def test_bad_literal(self):
        with self.assertRaises(ValueError) as cm:
            modlab.parse_literal("adam")
        self.assertIn("'adam'", str(cm.exception))


class ReaderTest(unittest.TestCase):
    """Everything that reads the two sweeps written in setUpClass."""

    skip_reason = None

    @classmethod
    def setUpClass(cls):
        exe = os.environ.get("MODLAB_EXE")
        if not exe:
            cls.skip_reason = ("MODLAB_EXE is unset: set it to the modlab executable "
                               "(build/bin/modlab) to run the sweeps these tests read")
            return
        cls.tmp = tempfile.mkdtemp(prefix="modlab_reader_")
        cls.tiny = run_sweep(exe, cls.tmp, "tiny", TINY_SWEEP)
        cls.tables = run_sweep(exe, cls.tmp, "tables", TABLES_SWEEP)
        with h5py.File(os.path.join(cls.tiny, "sweep.h5"), "r") as f:
            cls.ids = [r.decode() for r in f["summary"]["run_id"]]
            cls.summary = f["summary"][()]
        with h5py.File(os.path.join(cls.tables, "sweep.h5"), "r") as f:
            cls.table_run = f["summary"]["run_id"][0].decode()

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "tmp", None):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        if self.skip_reason:
            self.skipTest(self.skip_reason)

    def run_file(self, folder, run_id):
        return os.path.join(folder, "runs", run_id + ".h5")

    # --- load_sweep -----------------------------------------------------------------------

    def test_load_sweep_rows_and_dtypes(self):
        df = modlab.load_sweep(self.tiny)
        self.assertEqual(len(df), 4)
        self.assertEqual(list(df["run_id"]), self.ids)
        self.assertEqual(list(df["index"]), [0, 1, 2, 3])
        self.assertEqual(list(df.columns[:6]), ["run_id", "index", "seed", "status", "error", "file"])
        self.assertEqual(list(df.columns[6:12]), VARIED)
        self.assertEqual(df.index.tolist(), [0, 1, 2, 3])
        self.assertEqual(df["index"].dtype, np.int64)
        self.assertEqual(df["seed"].dtype, np.int64)
        self.assertEqual(df["model.num_experts"].dtype, np.int64)
        self.assertEqual(df["run.seed"].dtype, np.int64)
        self.assertEqual(df["train.lr"].dtype, np.float64)
        self.assertEqual(df["train.shuffle"].dtype, np.bool_)
        self.assertEqual(df["train.optimizer"].dtype, object)
        self.assertEqual(df["model.expert_hidden"].dtype, object)
        self.assertEqual(list(df["model.num_experts"]), [1, 1, 2, 2])
        self.assertEqual(list(df["train.lr"]), [0.01, 0.01, 0.02, 0.02])
        self.assertEqual(list(df["train.shuffle"]), [True, True, False, False])
        self.assertEqual(list(df["train.optimizer"]), ["adam", "adam", "rmsprop", "rmsprop"])
        self.assertEqual(list(df["model.expert_hidden"]), [[4], [4], [4, 4], [4, 4]])
        self.assertEqual(list(df["run.seed"]), list(df["seed"]))
        for col in ("run_id", "status", "error", "file", "train.optimizer"):
            self.assertTrue(all(type(v) is str for v in df[col]), col)
        self.assertEqual(set(df["status"]), {"completed"})
        self.assertEqual(list(df["file"]), [f"runs/{r}.h5" for r in self.ids])

    def test_load_sweep_metric_columns(self):
        df = modlab.load_sweep(self.tiny)
        metric_cols = df.attrs["metric_columns"]
        self.assertIn("test_accuracy", metric_cols)
        self.assertEqual(df.attrs["varied_keys"], VARIED)
        self.assertEqual(df.attrs["sweep_name"], "reader_tiny")
        self.assertEqual(list(df.columns), ["run_id", "index", "seed", "status", "error", "file"]
                         + VARIED + metric_cols)
        for col in metric_cols:
            self.assertEqual(df[col].dtype, np.float64, col)
        # the summary's value is the last non-NaN value in the run file
        for run_id, row in zip(self.ids, df.itertuples(index=False)):
            values = h5_metrics(self.run_file(self.tiny, run_id))
            for name in ("test_accuracy", "fit_loss"):
                finite = values[name][~np.isnan(values[name])]
                self.assertEqual(getattr(row, name), finite[-1])
        # a one-expert run has no expert1 metrics: NaN in the summary
        self.assertTrue(math.isnan(df.loc[0, "test_expert1_count"]))
        self.assertFalse(math.isnan(df.loc[2, "test_expert1_count"]))

    def test_load_sweep_raw_text(self):
        df = modlab.load_sweep(self.tiny, parse_values=False)
        self.assertEqual(list(df["train.optimizer"]), ['"adam"', '"adam"', '"rmsprop"', '"rmsprop"'])
        self.assertEqual(list(df["model.expert_hidden"]), ["[4]", "[4]", "[4, 4]", "[4, 4]"])
        self.assertEqual(list(df["train.shuffle"]), ["true", "true", "false", "false"])
        self.assertEqual(list(df["model.num_experts"]),
                         [v.decode() for v in self.summary["model.num_experts"]])

    def test_load_sweep_without_varied_keys(self):
        df = modlab.load_sweep(self.tables)
        self.assertEqual(len(df), 1)
        self.assertEqual(df.attrs["varied_keys"], [])
        self.assertEqual(modlab.varied_keys(self.tables), [])
        self.assertEqual(modlab.varied_keys(self.tiny), VARIED)

    def test_superset_of_sweep_summary(self):
        path = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "sweep_summary.py")
        spec = importlib.util.spec_from_file_location("sweep_summary", path)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
        rows, swept = old.load(self.tiny, "test")
        df = modlab.load_sweep(self.tiny, parse_values=False)
        self.assertEqual(len(rows), len(df))
        for row, new in zip(rows, df.to_dict("records")):
            self.assertEqual(row.keys(), new.keys())
            for k, v in row.items():
                if isinstance(v, float) and math.isnan(v):
                    self.assertTrue(math.isnan(new[k]), k)
                else:
                    self.assertEqual(v, new[k], k)
        self.assertTrue(set(swept) <= set(df.columns))

    def test_sweep_attrs(self):
        attrs = modlab.sweep_attrs(self.tiny)
        self.assertEqual(attrs["sweep_name"], "reader_tiny")
        self.assertEqual(attrs["schema_version"], 1)
        self.assertEqual(attrs["sweep_toml"], TINY_SWEEP)

    def test_missing_folder(self):
        missing = os.path.join(self.tmp, "nothing_here")
        with self.assertRaises(FileNotFoundError) as cm:
            modlab.load_sweep(missing)
        msg = str(cm.exception)
        self.assertIn(os.path.join(missing, "sweep.h5"), msg)
        self.assertIn(f"modlab run <sweep.toml> --out {missing}", msg)
        with self.assertRaises(FileNotFoundError):
            modlab.metrics(missing)

    # --- metrics ----------------------------------------------------------------------------

    def test_metrics_long(self):
        m = modlab.metrics(self.tiny)
        self.assertEqual(list(m.columns), ["run_id", "epoch", "step", "phase", "metric", "value"] + VARIED)
        self.assertEqual(m["epoch"].dtype, np.int64)
        self.assertEqual(m["step"].dtype, np.int64)
        self.assertEqual(m["value"].dtype, np.float64)
        self.assertEqual(m["model.num_experts"].dtype, np.int64)
        self.assertEqual(m["train.shuffle"].dtype, np.bool_)
        self.assertFalse(m["value"].isna().any())
        self.assertEqual(list(dict.fromkeys(m["run_id"])), self.ids)
        self.assertEqual(set(m["phase"]), {"train"})
        total = 0
        for run_id in self.ids:
            mine = m[m["run_id"] == run_id]
            for name, values in h5_metrics(self.run_file(self.tiny, run_id)).items():
                rows = mine[mine["metric"] == name]
                finite = values[~np.isnan(values)]
                total += len(finite)
                np.testing.assert_array_equal(rows["value"].to_numpy(), finite)
            with h5py.File(self.run_file(self.tiny, run_id), "r") as f:
                loss = mine[mine["metric"] == "fit_loss"]
                np.testing.assert_array_equal(loss["epoch"].to_numpy(), f["metrics/epoch"][()])
                np.testing.assert_array_equal(loss["step"].to_numpy(), f["metrics/step"][()])
        self.assertEqual(len(m), total)
        # the config travels with every row
        by_run = modlab.load_sweep(self.tiny).set_index("run_id")
        for row in m.drop_duplicates("run_id").itertuples(index=False):
            self.assertEqual(row[m.columns.get_loc("train.lr")], by_run.loc[row.run_id, "train.lr"])
        self.assertEqual(m.groupby("model.num_experts")["run_id"].nunique().to_dict(), {1: 2, 2: 2})

    def test_metrics_wide(self):
        w = modlab.metrics(self.tiny, long=False)
        self.assertEqual(len(w), 4 * 3)
        self.assertEqual(list(w.columns[:4]), ["run_id", "epoch", "step", "phase"])
        self.assertEqual(list(w.columns[-len(VARIED):]), VARIED)
        first = w[w["run_id"] == self.ids[0]]
        values = h5_metrics(self.run_file(self.tiny, self.ids[0]))
        np.testing.assert_array_equal(first["test_loss"].to_numpy(), values["test_loss"])
        self.assertTrue(first["test_expert1_count"].isna().all())
        self.assertEqual(w["fit_loss"].dtype, np.float64)

    def test_metrics_phases(self):
        m = modlab.metrics(self.tables, runs=self.table_run)
        with h5py.File(self.run_file(self.tables, self.table_run), "r") as f:
            names = list(f["metrics/phase"].attrs["phase_names"])
            codes = f["metrics/phase"][()]
        self.assertEqual(names, ["train", "mask_full", "mask_pair1", "mask_pair2"])
        loss = m[m["metric"] == "fit_loss"]
        self.assertEqual(list(loss["phase"]), [names[c] for c in codes])
        # fit_mask_reg is logged in the mask phases only
        self.assertEqual(list(m[m["metric"] == "fit_mask_reg"]["phase"]), names[1:])
        self.assertEqual(list(m.columns), ["run_id", "epoch", "step", "phase", "metric", "value"])

    def test_metrics_run_selection(self):
        one = modlab.metrics(self.tiny, runs=self.ids[2])
        self.assertEqual(set(one["run_id"]), {self.ids[2]})
        two = modlab.metrics(self.tiny, runs=[self.ids[3], self.ids[0]])
        self.assertEqual(list(dict.fromkeys(two["run_id"])), [self.ids[3], self.ids[0]])
        df = modlab.load_sweep(self.tiny)
        sub = modlab.metrics(self.tiny, runs=df[df["train.optimizer"] == "rmsprop"])
        self.assertEqual(list(dict.fromkeys(sub["run_id"])), self.ids[2:])
        empty = modlab.metrics(self.tiny, runs=[])
        self.assertEqual(len(empty), 0)
        self.assertIn("value", empty.columns)

    def test_unknown_run(self):
        with self.assertRaises(KeyError) as cm:
            modlab.metrics(self.tiny, runs=["000000000000"])
        msg = str(cm.exception)
        self.assertIn("000000000000", msg)
        self.assertIn(os.path.join(self.tiny, "sweep.h5"), msg)
        self.assertIn(self.ids[0], msg)
        for call in (modlab.run_attrs, modlab.config, modlab.run_path):
            with self.assertRaises(KeyError):
                call(self.tiny, "000000000000")
        with self.assertRaises(KeyError):
            modlab.tensors(self.tiny, "000000000000", "allocation")

    def test_run_without_file_is_skipped(self):
        """A pending / running run (empty `file`, only a .partial) is skipped unless asked for."""
        folder = os.path.join(self.tmp, "pending")
        shutil.copytree(self.tiny, folder)
        pending = self.ids[1]
        os.rename(self.run_file(folder, pending), self.run_file(folder, pending) + ".partial")
        with h5py.File(os.path.join(folder, "sweep.h5"), "r+") as f:
            data = f["summary"][()]
            attrs = dict(f["summary"].attrs)
            data["status"][1], data["file"][1] = b"pending", b""
            del f["summary"]
            del f["runs/" + pending]
            ds = f.create_dataset("summary", data=data)
            for k, v in attrs.items():
                ds.attrs[k] = v
        df = modlab.load_sweep(folder)
        self.assertEqual(len(df), 4)
        self.assertEqual(df.loc[1, "file"], "")
        m = modlab.metrics(folder)
        self.assertEqual(list(dict.fromkeys(m["run_id"])), [self.ids[0]] + self.ids[2:])
        with self.assertRaises(FileNotFoundError) as cm:
            modlab.metrics(folder, runs=[pending])
        self.assertIn(pending, str(cm.exception))
        self.assertIn("no run file", str(cm.exception))
        if has_xarray():
            self.assertEqual(modlab.metrics_xarray(folder).sizes["run"], 3)

    def test_missing_run_file(self):
        folder = os.path.join(self.tmp, "lost")
        shutil.copytree(self.tiny, folder)
        os.remove(self.run_file(folder, self.ids[0]))
        with self.assertRaises(FileNotFoundError) as cm:
            modlab.metrics(folder)
        self.assertIn(self.run_file(folder, self.ids[0]), str(cm.exception))

    # --- xarray -----------------------------------------------------------------------------

    def test_metrics_xarray(self):
        if not has_xarray():
            self.skipTest("xarray is not importable by this Python")
        ds = modlab.metrics_xarray(self.tiny)
        self.assertEqual(dict(ds.sizes), {"run": 4, "epoch": 3})
        self.assertEqual(list(ds["run"].values), self.ids)
        self.assertEqual(list(ds["epoch"].values), [0, 1, 2])
        self.assertEqual(ds["test_accuracy"].dims, ("run", "epoch"))
        self.assertEqual(ds["test_accuracy"].shape, (4, 3))
        for key in VARIED:
            self.assertEqual(ds[key].dims, ("run",), key)
        self.assertEqual(ds["model.num_experts"].dtype, np.int64)
        self.assertEqual(ds["train.shuffle"].dtype, np.bool_)
        self.assertEqual(list(ds["model.expert_hidden"].values), [[4], [4], [4, 4], [4, 4]])
        for i, run_id in enumerate(self.ids):
            values = h5_metrics(self.run_file(self.tiny, run_id))
            np.testing.assert_array_equal(ds["fit_loss"].values[i], values["fit_loss"])
        self.assertTrue(np.isnan(ds["test_expert1_count"].values[0]).all())
        self.assertEqual(set(ds.data_vars), set(modlab.load_sweep(self.tiny).attrs["metric_names"]))
        mean = ds["test_accuracy"].groupby("model.num_experts").mean("run")
        self.assertEqual(mean.shape, (2, 3))
        sub = modlab.metrics_xarray(self.tiny, runs=self.ids[2:])
        self.assertEqual(list(sub["run"].values), self.ids[2:])

    def test_sweep_h5_columns_are_typed_and_open_in_xarray(self):
        # sweep.h5 itself, without this package: /columns holds the summary typed, over run_id.
        if not has_xarray():
            self.skipTest("xarray is not importable by this Python")
        import xarray as xr
        with xr.open_dataset(os.path.join(self.tiny, "sweep.h5"), group="columns", engine="h5netcdf") as ds:
            self.assertEqual(dict(ds.sizes), {"run_id": 4})
            self.assertEqual([str(v) for v in ds["run_id"].values], self.ids)
            types = {k: ds[k].attrs["toml_type"] for k in VARIED}
            self.assertEqual(types, {"model.num_experts": "integer", "train.lr": "float", "train.shuffle": "boolean",
                                     "train.optimizer": "string", "model.expert_hidden": "toml", "run.seed": "integer"})
            self.assertEqual(ds["model.num_experts"].dtype, np.int64)
            self.assertEqual(ds["train.lr"].dtype, np.float64)
            self.assertEqual(ds["train.shuffle"].dtype, np.int8)
            self.assertEqual(list(ds["train.shuffle"].values), [1, 1, 0, 0])
            self.assertEqual([str(v) for v in ds["train.optimizer"].values], ["adam", "adam", "rmsprop", "rmsprop"])
            self.assertEqual([str(v) for v in ds["model.expert_hidden"].values], ["[4]", "[4]", "[4, 4]", "[4, 4]"])
            self.assertEqual(ds["seed"].dtype, np.int64)
            df = modlab.load_sweep(self.tiny)
            np.testing.assert_array_equal(ds["test_accuracy"].values, df["test_accuracy"].to_numpy())
            self.assertEqual(ds["model.num_experts"].attrs["key"], "model.num_experts")

    def test_metrics_xarray_without_xarray(self):
        with mock.patch.dict(sys.modules, {"xarray": None}):
            with self.assertRaises(ImportError) as cm:
                modlab.metrics_xarray(self.tiny)
        self.assertIn("xarray", str(cm.exception))

    # --- run files: attributes, config, tensors, tables ----------------------------------------

    def test_run_attrs_and_config(self):
        run_id = self.ids[2]
        attrs = modlab.run_attrs(self.tiny, run_id)
        self.assertEqual(attrs["status"], "completed")
        self.assertEqual(attrs["run_id"], run_id)
        self.assertIsInstance(attrs["seed"], int)
        self.assertEqual(attrs["seed"], 0)
        self.assertEqual(attrs["schema_version"], 1)
        self.assertEqual(attrs["model_plugin"], "moe")
        self.assertEqual(attrs["note.dataset.task"], "multi_class")
        cfg = modlab.config(self.tiny, run_id)
        self.assertEqual(cfg, tomllib.loads(attrs["config"]))
        self.assertEqual(cfg["model"]["num_experts"], 2)
        self.assertEqual(cfg["model"]["expert_hidden"], [4, 4])
        self.assertEqual(cfg["train"]["optimizer"], "rmsprop")
        self.assertEqual(modlab.run_path(self.tiny, run_id), self.run_file(self.tiny, run_id))

    def test_run_attrs_name_the_build_and_the_plugin_files(self):
        attrs = modlab.run_attrs(self.tiny, self.ids[0])
        for kind, name in (("model", "moe"), ("dataset", "toy")):
            path = attrs[f"{kind}_plugin_file"]
            self.assertTrue(os.path.isabs(path), path)
            self.assertEqual(os.path.basename(path), name + ".so")
            with open(path, "rb") as f:
                data = f.read()
            self.assertEqual(attrs[f"{kind}_plugin_checksum"],
                             f"crc32 {zlib.crc32(data):08x} bytes {len(data)}")
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        head = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True)
        if head.returncode != 0:
            self.skipTest("not a git checkout: git_revision is 'unknown'")
        # the commit the executable was built from (tests run on a fresh build of this checkout)
        self.assertRegex(attrs["git_revision"], "^" + head.stdout.strip() + "(-dirty)?$")

    def test_tensors(self):
        run_id = self.ids[2]
        with h5py.File(self.run_file(self.tiny, run_id), "r") as f:
            gate = f["tensors/test/gate_mean"][()]
            alloc = f["tensors/allocation"][()]
        t = modlab.tensors(self.tiny, run_id, "test/gate_mean")
        self.assertIsInstance(t, np.ndarray)
        self.assertEqual(t.shape, (3, 2))  # [epochs, experts]
        self.assertEqual(t.dtype, np.float32)
        np.testing.assert_array_equal(t, gate)
        np.testing.assert_array_equal(modlab.tensors(self.tiny, run_id, "allocation"), alloc)
        names = modlab.list_tensors(self.tiny, run_id)
        self.assertIn("decision/gate", names)
        self.assertIn("test/gate_mean", names)
        self.assertEqual(modlab.list_tables(self.tiny, run_id), [])

    def test_unknown_tensor(self):
        run_id = self.ids[0]
        with self.assertRaises(KeyError) as cm:
            modlab.tensors(self.tiny, run_id, "no_such_tensor")
        msg = str(cm.exception)
        self.assertIn(self.run_file(self.tiny, run_id), msg)
        self.assertIn("tensors/no_such_tensor", msg)
        self.assertIn("decision/gate", msg)
        self.assertIn("test/gate_mean", msg)
        with self.assertRaises(KeyError) as cm:
            modlab.tensors(self.tiny, run_id, "decision")
        self.assertIn("is a group", str(cm.exception))

    def test_table(self):
        run_id = self.table_run
        with h5py.File(self.run_file(self.tables, run_id), "r") as f:
            ds = f["tensors/tables/valid/accuracy"]
            values, rows, cols = ds[()], list(ds.attrs["rows"]), list(ds.attrs["columns"])
        t = modlab.table(self.tables, run_id, "valid/accuracy")
        self.assertIsInstance(t, pd.DataFrame)
        self.assertEqual(list(t.index), rows)
        self.assertEqual(list(t.columns), cols)
        self.assertEqual(list(t.columns), ["full", "pair1", "pair2"])
        self.assertEqual(t.index[0], "trained")
        np.testing.assert_array_equal(t.to_numpy(), values)
        self.assertIn("valid/accuracy", modlab.list_tables(self.tables, run_id))
        self.assertIn("kept", modlab.list_tables(self.tables, run_id))
        self.assertNotIn("tables/kept", modlab.list_tensors(self.tables, run_id))
        mask = modlab.tensors(self.tables, run_id, "masks/full/layers0.weight")
        self.assertEqual(mask.dtype, np.uint8)

    def test_unknown_table(self):
        with self.assertRaises(KeyError) as cm:
            modlab.table(self.tables, self.table_run, "valid/nothing")
        msg = str(cm.exception)
        self.assertIn("tensors/tables/valid/nothing", msg)
        self.assertIn("valid/accuracy", msg)
        self.assertIn(self.run_file(self.tables, self.table_run), msg)


if __name__ == "__main__":
    unittest.main()
