"""Reads a finished sweep back with h5py (as a user would) and checks values, not only names.

usage: check_sweep.py OUT_DIR N_RUNS N_EPOCHS
"""
import math
import sys
import tomllib

import h5py
import numpy as np

out, n_runs, n_epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with h5py.File(f"{out}/sweep.h5", "r") as f:
    assert f.attrs["schema_version"] == 1
    summary = f["summary"][()]
    assert len(summary) == n_runs, len(summary)
    ids = [x.decode() if isinstance(x, bytes) else x for x in summary["run_id"]]
    status = [x.decode() if isinstance(x, bytes) else x for x in summary["status"]]
    assert all(s == "completed" for s in status), status
    runs = f["runs"]
    assert sorted(runs.keys()) == sorted(ids)
    for i, rid in enumerate(ids):
        run = runs[rid]  # external link into runs/<id>.h5
        assert run.attrs["run_id"] == rid
        assert run.attrs["status"] == "completed"
        cfg = tomllib.loads(run.attrs["config"])
        assert cfg["dataset"]["plugin"] == "fixture_blobs"
        assert cfg["run"]["seed"] == int(summary["seed"][i])
        m = run["metrics"]
        epochs = m["epoch"][:]
        assert list(epochs) == list(range(n_epochs)), epochs
        acc = m["test_accuracy"][:]
        assert acc.dtype == np.float64 and acc.shape == (n_epochs,)
        assert 0.0 <= acc.min() and acc.max() <= 1.0
        assert math.isclose(acc[-1], float(summary["test_accuracy"][i])), (acc[-1], summary["test_accuracy"][i])
        steps = m["step"][:]
        assert (np.diff(steps) > 0).all()
        w = run["tensors/head_weight"]
        assert w.shape == (3, cfg["model"].get("hidden", 16))
try:
    import pandas as pd
    with h5py.File(f"{out}/sweep.h5", "r") as f:
        df = pd.DataFrame(f["summary"][()])
    assert len(df) == n_runs
except ImportError:
    print("pandas not installed: DataFrame check skipped")
print("ok")
