#!/usr/bin/python3
"""Reads a run file and a sweep index written by test_h5 the way users do (h5py, pandas, xarray,
h5dump) and checks them against docs/output-format.md and the values in expect.json.

Usage: check_h5_layout.py EXPECT.json   (written by tests/unit/test_h5.cpp)
       check_h5_layout.py --live RUN.h5.partial SYNC_DIR
  --live: a reader that keeps a running file open in SWMR mode while the writer goes on. It writes
  SYNC_DIR/first.json (metrics/loss as first seen), waits for SYNC_DIR/go, refreshes, and writes
  SYNC_DIR/second.json.
Exits non-zero on the first mismatch; parts whose Python package is missing are skipped with a
message."""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np


def same(got, want):
    return len(got) == len(want) and all(
        (w is None and math.isnan(g)) or (w is not None and g == w) for g, w in zip(got, want))


def check_run(path, exp):
    with h5py.File(path, "r") as f:
        a = f.attrs
        assert isinstance(a["schema_version"], np.integer), type(a["schema_version"])
        assert isinstance(a["run_id"], str) and a["run_id"] == exp["run_id"], a["run_id"]
        assert a["status"] == "completed" and a["error"] == "", (a["status"], a["error"])
        assert a["seed"] == 7 and isinstance(a["seed"], np.int64)
        assert a["note.classes"] == "cat,dog"
        m = f["metrics"]
        assert list(m["epoch"][()]) == exp["epoch"] and m["epoch"].dtype == np.int64
        names = [str(n) for n in m["phase"].attrs["phase_names"]]
        assert [names[c] for c in m["phase"][()]] == exp["phase"], (names, m["phase"][()])
        for name, want in exp["metrics"].items():
            got = m[name][()]
            assert got.dtype == np.float64 and same(list(got), want), (name, got, want)
            assert m[name].maxshape == (None,), m[name].maxshape
            assert m[name].compression == "gzip" and m[name].compression_opts == 4
            scales = m[name].dims[0]
            assert list(scales.keys()) == ["epoch"] and scales[0] == m["epoch"], list(scales.keys())
        g = f["tensors/gates"]
        assert list(g.shape) == exp["gates_shape"] and g.dtype == np.float32 and g.maxshape[0] is None
        assert list(g.attrs["dims"]) == ["epoch", "expert", "slot"], g.attrs["dims"]
        w = f["tensors/weights"]
        assert w.dtype == np.float64 and abs(w[()].sum() - exp["weights_sum"]) < 1e-9
        assert f["tensors/mask"].dtype == np.uint8 and f["tensors/counts"].dtype == np.int64
    print("ok: run file attributes, metrics, scales and tensors read with h5py")


def check_sweep(sweep_dir, exp):
    old = os.getcwd()
    elsewhere = tempfile.mkdtemp()
    try:
        # Links must resolve whatever the working directory: absolute, then relative path.
        for cwd, path in ((elsewhere, os.path.join(sweep_dir, "sweep.h5")),
                          (os.path.dirname(sweep_dir), os.path.join(os.path.basename(sweep_dir), "sweep.h5"))):
            os.chdir(cwd)
            with h5py.File(path, "r") as f:
                run = f["runs"][exp["run_id"]]
                assert run.attrs["run_id"] == exp["run_id"]
                assert same(list(run["metrics/loss"][()]), exp["metrics"]["loss"])
                assert f.attrs["sweep_name"] == "demo" and isinstance(f.attrs["sweep_toml"], str)
                table = f["summary"][()]
                row = table[0]
                assert row["run_id"].decode() == exp["run_id"] and row["seed"] == 7 and row["index"] == 3
                assert row["model.hidden"].decode() == "8" and row["status"].decode() == "completed"
                last = [v for v in exp["metrics"]["val.acc"] if v is not None][-1]
                assert row["val.acc"] == last, (row["val.acc"], last)
                assert list(f["summary"].attrs["varied_keys"]) == ["model.hidden"]
        print("ok: sweep.h5 external links resolve from another working directory; summary reads")
        try:
            import pandas as pd
        except ImportError:
            print("skip: pandas is not installed (apt-get install python3-pandas)")
        else:
            with h5py.File(os.path.join(sweep_dir, "sweep.h5"), "r") as f:
                df = pd.DataFrame(f["summary"][()])
            df = df.apply(lambda c: c.str.decode("utf-8") if c.dtype == object else c)
            assert df.loc[0, "run_id"] == exp["run_id"] and df.loc[0, "model.hidden"] == "8"
            assert "loss" in df.columns and df["seed"].dtype == np.int64
            print("ok: pandas.DataFrame(f['summary'][()])")
    finally:
        os.chdir(old)
        shutil.rmtree(elsewhere)


def check_xarray(path, exp):
    try:
        import xarray as xr
        import h5netcdf  # noqa: F401
    except ImportError:
        print("skip: xarray/h5netcdf are not installed (apt-get install python3-xarray python3-h5netcdf)")
        return
    ds = xr.open_dataset(path, group="metrics", engine="h5netcdf")
    assert ds["loss"].dims == ("epoch",), ds["loss"].dims
    assert same(list(ds["loss"].values), exp["metrics"]["loss"])
    assert list(ds["epoch"].values) == exp["epoch"], ds["epoch"].values
    ds.close()
    print("ok: xarray (h5netcdf) sees an epoch dimension")


def check_sweep_columns(sweep_dir, exp):
    """sweep.h5's /columns: the summary as typed 1-D datasets over run_id, opened by xarray."""
    try:
        import xarray as xr
        import h5netcdf  # noqa: F401
    except ImportError:
        print("skip: xarray/h5netcdf are not installed (apt-get install python3-xarray python3-h5netcdf)")
        return
    ds = xr.open_dataset(os.path.join(sweep_dir, "sweep.h5"), group="columns", engine="h5netcdf")
    assert ds["model.hidden"].dims == ("run_id",), ds["model.hidden"].dims
    assert ds["model.hidden"].dtype == np.int64 and int(ds["model.hidden"][0]) == 8, ds["model.hidden"]
    assert ds["model.hidden"].attrs["toml_type"] == "integer" and ds["model.hidden"].attrs["key"] == "model.hidden"
    assert str(ds["run_id"].values[0]) == exp["run_id"] and int(ds["seed"][0]) == 7
    last = [v for v in exp["metrics"]["val.acc"] if v is not None][-1]
    assert ds["val.acc"].dtype == np.float64 and float(ds["val.acc"][0]) == last
    assert str(ds["status"].values[0]) == "completed"
    ds.close()
    print("ok: xarray opens sweep.h5's typed columns over a run_id dimension")


def check_h5dump(paths):
    if shutil.which("h5dump") is None:
        print("skip: h5dump is not installed (apt-get install hdf5-tools)")
        return
    for p in paths:
        r = subprocess.run(["h5dump", "-H", p], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    print("ok: h5dump -H reads every file")


def live(path, sync_dir):
    def dump(name, values):
        with open(os.path.join(sync_dir, name + ".tmp"), "w") as out:
            json.dump(values, out)
        os.rename(os.path.join(sync_dir, name + ".tmp"), os.path.join(sync_dir, name))

    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        assert f.attrs["status"] == "running"
        loss = f["metrics/loss"]
        dump("first.json", [float(v) for v in loss[()]])
        for _ in range(600):  # the writer adds rows and a new metric meanwhile
            if os.path.exists(os.path.join(sync_dir, "go")):
                break
            time.sleep(0.05)
        loss.refresh()
        dump("second.json", [float(v) for v in loss[()]])


def main():
    if sys.argv[1] == "--live":
        live(sys.argv[2], sys.argv[3])
        return
    exp = json.load(open(sys.argv[1]))
    sweep_dir = exp["sweep_dir"]
    run_path = os.path.join(sweep_dir, exp["run_file"])
    check_run(run_path, exp)
    check_sweep(sweep_dir, exp)
    check_xarray(run_path, exp)
    check_sweep_columns(sweep_dir, exp)
    check_h5dump([run_path, os.path.join(sweep_dir, "sweep.h5")])


if __name__ == "__main__":
    main()
