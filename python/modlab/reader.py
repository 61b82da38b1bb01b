"""Reading a modlab results folder (sweep.h5 and runs/<run_id>.h5) into pandas, numpy and xarray.

The layout is described in docs/output-format.md; every file is opened read-only and closed before
a function returns. Runs that are still running (only a ``runs/<run_id>.h5.partial``) have no
entry in the summary's ``file`` column and are skipped.
"""
import os
import tomllib

import h5py
import numpy as np
import pandas as pd

SCHEMA_VERSIONS = (1,)
INDEX_FILE = "sweep.h5"
FIXED_COLUMNS = ("run_id", "index", "seed", "status", "error", "file")
ROW_COLUMNS = ("run_id", "epoch", "step", "phase")
RESERVED_METRICS = ("epoch", "step", "phase")


# ---------------------------------------------------------------------------------------------
# small helpers


def _text(value):
    """A string cell or attribute as ``str`` (h5py returns bytes for compound fields)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def _attr_value(value):
    """An HDF5 attribute as a plain Python value: strings decoded, scalars unwrapped, string
    arrays as lists of ``str``; numeric arrays stay numpy arrays."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_attr_value(v) for v in value] if value.dtype.kind in "OSU" else value
    if isinstance(value, np.generic):
        return value.item()
    return value


def _attrs(obj):
    """All attributes of an h5py object as a dict of plain values (``DIMENSION_LIST`` and
    ``REFERENCE_LIST``, the dimension-scale bookkeeping, left out)."""
    skip = ("DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME")
    return {k: _attr_value(v) for k, v in obj.attrs.items() if k not in skip}


def _strings(value):
    """A string-array attribute as a list of ``str`` (an absent attribute as ``[]``)."""
    if value is None:
        return []
    return [_text(v) for v in np.atleast_1d(value)]


def _listing(names, limit=20):
    """Names as ``a, b, c`` (the first ``limit`` of them, then how many in all)."""
    names = list(names)
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names)} in all)"


def _check_schema(path, attrs):
    """Refuse a file written with a schema this reader does not know."""
    version = attrs.get("schema_version")
    if version is not None and int(version) not in SCHEMA_VERSIONS:
        raise ValueError(f"{path}: schema_version {int(version)} is not supported by this reader "
                         f"(it reads {', '.join(map(str, SCHEMA_VERSIONS))})")


def parse_literal(text):
    """The Python value of one TOML literal as stored in the summary: ``'1'`` -> 1,
    ``'"adam"'`` -> 'adam', ``'[4, 4]'`` -> [4, 4], ``'true'`` -> True. ``''`` (a run without
    that key) gives None.

    >>> parse_literal('{ plugin = "toy" }')
    {'plugin': 'toy'}
    """
    if text.strip() == "":
        return None
    try:
        return tomllib.loads("v = " + text)["v"]
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"not a TOML value: {text!r} ({e})") from None


def _typed_column(values):
    """A numpy array for parsed config values: bool, int64 or float64 when every value is of
    that kind (ints and floats mixed give float64), otherwise object (strings, lists, tables,
    None for a missing value)."""
    kinds = {"bool" if isinstance(v, bool) else "int" if isinstance(v, int)
             else "float" if isinstance(v, float) else "other" for v in values}
    try:
        if kinds == {"bool"}:
            return np.array(values, dtype=bool)
        if kinds == {"int"}:
            return np.array(values, dtype=np.int64)
        if kinds and kinds <= {"int", "float"}:
            return np.array(values, dtype=np.float64)
    except OverflowError:
        pass
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


# ---------------------------------------------------------------------------------------------
# the sweep index


def sweep_path(folder):
    """Path of ``folder``/sweep.h5; FileNotFoundError when there is none."""
    path = os.path.join(os.fspath(folder), INDEX_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no sweep index here (run the sweep first: "
                                f"modlab run <sweep.toml> --out {os.fspath(folder)})")
    return path


def sweep_attrs(folder):
    """Root attributes of ``folder``/sweep.h5 as a dict (``sweep_name``, ``sweep_toml``,
    ``updated``, ...), strings decoded.

    Example::

        sweep_attrs("results/quickstart")["sweep_name"]      # 'quickstart'
    """
    path = sweep_path(folder)
    with h5py.File(path, "r") as f:
        attrs = _attrs(f)
    _check_schema(path, attrs)
    return attrs


def _read_summary(folder):
    """(path, structured array, varied-key attribute, metric-name attribute, root attributes)
    of the summary of ``folder``/sweep.h5."""
    path = sweep_path(folder)
    with h5py.File(path, "r") as f:
        root = _attrs(f)
        _check_schema(path, root)
        if not isinstance(f.get("summary"), h5py.Dataset):
            raise KeyError(f"{path}: no 'summary' dataset")
        ds = f["summary"]
        data = ds[()]
        varied = _strings(ds.attrs.get("varied_keys"))
        metric_names = _strings(ds.attrs.get("metric_names"))
    names = data.dtype.names or ()
    missing = [c for c in FIXED_COLUMNS if c not in names]
    if missing:
        raise KeyError(f"{path}: summary lacks the column(s) {', '.join(missing)}")
    return path, data, varied, metric_names, root


def _split_columns(names, varied):
    """(varied-key columns, metric columns) of the summary's field names: the fixed columns come
    first, then one column per varied key, then the metrics (see docs/output-format.md)."""
    start = len(FIXED_COLUMNS)
    return list(names[start:start + len(varied)]), list(names[start + len(varied):])


def _summary_column(name, column, varied_cols, parse_values):
    """One summary field as a numpy array: strings decoded, varied keys parsed when asked,
    integers int64 and metrics float64."""
    if column.dtype.kind in "OSU":
        values = [_text(v) for v in column]
        if name in varied_cols and parse_values:
            return _typed_column([parse_literal(v) for v in values])
        return _typed_column(values)
    if column.dtype.kind in "iu":
        return column.astype(np.int64)
    return column.astype(np.float64)


def load_sweep(folder, parse_values=True):
    """The summary table of ``folder``/sweep.h5 as a DataFrame, one row per run in sweep order.

    Columns: ``run_id``, ``index`` (int64), ``seed`` (int64), ``status``, ``error``, ``file``
    (``""`` for a run without a finished file), one column per varied config key named by its
    dotted key (``model.num_experts``; ``run.seed`` when the sweep has seeds), then one float64
    column per metric holding its last logged value (NaN where a run has none).

    Varied keys are stored as TOML literal text; with ``parse_values`` (the default) they are
    parsed: a column of integers is int64, of floats float64, of booleans bool, of strings
    ``str`` (object dtype), and arrays / inline tables stay Python lists / dicts (object dtype).
    ``parse_values=False`` keeps the TOML text (``'"adam"'``, ``'[4, 4]'``).

    ``df.attrs`` holds ``sweep_name``, ``path``, ``varied_keys`` (the varied-key columns),
    ``metric_columns`` and ``metric_names`` (the real metric names; a metric named like another
    column has the column ``final.<name>``).

    Example::

        df = load_sweep("results/quickstart")
        df.groupby("model.num_experts")["test_accuracy"].mean()
    """
    path, data, varied, metric_names, root = _read_summary(folder)
    names = data.dtype.names
    varied_cols, metric_cols = _split_columns(names, varied)
    df = pd.DataFrame({n: _summary_column(n, data[n], varied_cols, parse_values) for n in names},
                      columns=list(names))
    df.attrs.update(sweep_name=root.get("sweep_name", ""), path=path, varied_keys=varied_cols,
                    metric_columns=metric_cols, metric_names=metric_names)
    return df


def varied_keys(folder):
    """The varied config keys of the sweep in ``folder`` (summary columns, in order).

    Example::

        varied_keys("results/quickstart")      # ['model.num_experts', 'run.seed']
    """
    _, data, varied, _, _ = _read_summary(folder)
    return _split_columns(data.dtype.names, varied)[0]


# ---------------------------------------------------------------------------------------------
# run files


def _run_file(folder, sweep, run_id):
    """Path of the finished file of run ``run_id``, looked up in the summary DataFrame ``sweep``."""
    index_path = sweep.attrs.get("path", os.path.join(os.fspath(folder), INDEX_FILE))
    rows = sweep.index[sweep["run_id"] == run_id]
    if len(rows) == 0:
        raise KeyError(f"{index_path}: no run {run_id!r} in the summary "
                       f"(runs: {_listing(sweep['run_id'])})")
    row = sweep.loc[rows[0]]
    if not row["file"]:
        raise FileNotFoundError(f"{index_path}: run {run_id} has no run file yet (status "
                                f"{row['status']!r}; a running run only has "
                                f"runs/{run_id}.h5.partial, which is not read)")
    path = os.path.join(os.fspath(folder), row["file"])
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: run file of run {run_id} (listed in {index_path}) "
                                f"is missing")
    return path


def run_path(folder, run_id):
    """Path of the finished run file of ``run_id`` (``folder``/runs/<run_id>.h5, from the
    summary's ``file`` column). KeyError for a run id the sweep does not have,
    FileNotFoundError for a run without a finished file.

    Example::

        run_path("results/x", "ab12cd34ef56")      # 'results/x/runs/ab12cd34ef56.h5'
    """
    return _run_file(folder, load_sweep(folder, parse_values=False), run_id)


def _run_ids(runs):
    """Run ids from None, one id, an iterable of ids or a DataFrame with a ``run_id`` column."""
    if runs is None:
        return None
    if isinstance(runs, str):
        return [runs]
    if isinstance(runs, pd.DataFrame):
        return list(runs["run_id"])
    return list(runs)


def _selected(folder, sweep, runs):
    """(run_id, path) of the runs to read, in the order asked (None: every run of the sweep
    with a finished file, in sweep order)."""
    ids = _run_ids(runs)
    if ids is None:
        ids = [r for r, file in zip(sweep["run_id"], sweep["file"]) if file]
    return [(r, _run_file(folder, sweep, r)) for r in ids]


def run_attrs(folder, run_id):
    """Root attributes of a run file as a dict: ``status``, ``error``, ``start_time``,
    ``end_time``, ``seed``, ``config`` (TOML text), ``note.<name>``, provenance. Strings are
    ``str``, integers ``int``.

    Example::

        run_attrs("results/x", "ab12cd34ef56")["status"]      # 'completed'
    """
    path = run_path(folder, run_id)
    with h5py.File(path, "r") as f:
        attrs = _attrs(f)
    _check_schema(path, attrs)
    return attrs


def config(folder, run_id):
    """The resolved config of a run (its ``config`` attribute) parsed into a dict.

    Example::

        config("results/x", "ab12cd34ef56")["model"]["num_experts"]      # 2
    """
    path = run_path(folder, run_id)
    with h5py.File(path, "r") as f:
        if "config" not in f.attrs:
            raise KeyError(f"{path}: no 'config' attribute")
        text = _text(f.attrs["config"])
    return tomllib.loads(text)


# ---------------------------------------------------------------------------------------------
# metrics


def _read_metrics(path, run_id):
    """One run's metrics/ group as a wide DataFrame: run_id, epoch, step, phase (its name), then
    one float64 column per metric, one row per row of the group."""
    with h5py.File(path, "r") as f:
        group = f.get("metrics")
        if not isinstance(group, h5py.Group):
            raise KeyError(f"{path}: no 'metrics' group")
        missing = [k for k in RESERVED_METRICS if not isinstance(group.get(k), h5py.Dataset)]
        if missing:
            raise KeyError(f"{path}: metrics/ lacks {', '.join(missing)}")
        codes = group["phase"][()].astype(np.int64)
        names = _strings(group["phase"].attrs.get("phase_names"))
        cols = {"run_id": np.full(len(codes), run_id, dtype=object),
                "epoch": group["epoch"][()].astype(np.int64),
                "step": group["step"][()].astype(np.int64),
                "phase": _typed_column([names[c] if 0 <= c < len(names) else str(c) for c in codes])}
        for name, ds in group.items():
            if name not in RESERVED_METRICS and isinstance(ds, h5py.Dataset):
                cols[name] = ds[()].astype(np.float64)
    return pd.DataFrame(cols)


def _empty(columns, int_columns=("epoch", "step")):
    """An empty DataFrame with these columns (epoch and step int64, value float64)."""
    df = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    for c in columns:
        if c in int_columns:
            df[c] = df[c].astype(np.int64)
        elif c == "value":
            df[c] = df[c].astype(np.float64)
    return df


def _to_long(wide):
    """A run's wide metrics as rows (run_id, epoch, step, phase, metric, value), metric by
    metric, NaN values dropped."""
    metric_cols = [c for c in wide.columns if c not in ROW_COLUMNS]
    if not metric_cols or wide.empty:
        return _empty(list(ROW_COLUMNS) + ["metric", "value"])
    long = wide.melt(id_vars=list(ROW_COLUMNS), value_vars=metric_cols, var_name="metric",
                     value_name="value")
    return long.dropna(subset=["value"])


def _join_config(df, sweep, how="left"):
    """``df`` with the sweep's varied-key columns joined on run_id (columns it already has are
    not joined again)."""
    keys = [k for k in sweep.attrs.get("varied_keys", []) if k not in df.columns]
    if not keys:
        return df
    return df.merge(sweep[["run_id"] + keys], on="run_id", how=how)


def metrics(folder, runs=None, long=True):
    """Metrics of the runs of a sweep, read from their run files (metrics/ group).

    ``runs``: None (every run with a finished file, in sweep order; runs still running or
    pending are skipped), one run id, a list of run ids, or a DataFrame with a ``run_id``
    column (e.g. rows of :func:`load_sweep`). A run asked for by id that has no finished file
    is an error.

    ``long=True`` (default): one row per logged value with the columns ``run_id``, ``epoch``
    (int64), ``step`` (int64), ``phase`` (the phase name), ``metric``, ``value`` (float64; NaN,
    i.e. not logged in that row, dropped), ordered by run, then metric, then row.
    ``long=False``: one row per metrics row with ``run_id``, ``epoch``, ``step``, ``phase`` and
    one float64 column per metric (the union over the runs sorted by name, NaN where not
    logged; a metric named like a varied key keeps its column and that key is not joined).
    Either way the sweep's varied-key columns follow, so rows can be grouped by config.

    Example::

        m = metrics("results/quickstart")
        acc = m[m.metric == "test_accuracy"]
        acc.groupby(["model.num_experts", "epoch"])["value"].mean()
    """
    sweep = load_sweep(folder)
    frames = [_read_metrics(path, run_id) for run_id, path in _selected(folder, sweep, runs)]
    if long:
        parts = [_to_long(w) for w in frames]
        df = pd.concat(parts, ignore_index=True) if parts else _empty(list(ROW_COLUMNS) + ["metric", "value"])
    else:
        df = pd.concat(frames, ignore_index=True, sort=False) if frames else _empty(list(ROW_COLUMNS))
        names = sorted(c for c in df.columns if c not in ROW_COLUMNS)
        df = df[list(ROW_COLUMNS) + names]
    df = _join_config(df.reset_index(drop=True), sweep)
    df.attrs.update(sweep_name=sweep.attrs.get("sweep_name", ""),
                    varied_keys=list(sweep.attrs.get("varied_keys", [])))
    return df


def _import_xarray():
    """The xarray module, or ImportError saying how to get it."""
    try:
        import xarray
    except ImportError as e:
        raise ImportError("metrics_xarray needs xarray, which is not installed "
                          "(pip install xarray, or apt install python3-xarray); "
                          "metrics() gives the same data as a pandas DataFrame") from e
    return xarray


def _metric_grid(frames, run_ids, epochs, name):
    """A float64 [run, epoch] array of one metric, NaN where a run has no value."""
    out = np.full((len(run_ids), len(epochs)), np.nan)
    col = {e: j for j, e in enumerate(epochs)}
    for i, wide in enumerate(frames):
        if name in wide.columns:
            out[i, [col[e] for e in wide["epoch"]]] = wide[name].to_numpy()
    return out


def metrics_xarray(folder, runs=None):
    """Metrics of the runs of a sweep as an ``xarray.Dataset`` with dims ``(run, epoch)``: one
    float64 variable per metric (NaN where a run did not log it), coordinate ``run`` = run ids
    (``runs`` as in :func:`metrics`), ``epoch`` = the union of the runs' epochs, and each
    varied config key as a coordinate along ``run``. Needs xarray (imported only here).

    Example::

        ds = metrics_xarray("results/quickstart")
        ds["test_accuracy"].groupby("model.num_experts").mean("run")
    """
    xr = _import_xarray()
    sweep = load_sweep(folder)
    selected = _selected(folder, sweep, runs)
    frames = [_read_metrics(path, run_id) for run_id, path in selected]
    run_ids = [r for r, _ in selected]
    for (run_id, path), wide in zip(selected, frames):
        if wide["epoch"].duplicated().any():
            raise ValueError(f"{path}: run {run_id} has several metrics rows for one epoch; "
                             f"use metrics() instead")
    epochs = sorted({int(e) for w in frames for e in w["epoch"]})
    names = sorted({c for w in frames for c in w.columns if c not in ROW_COLUMNS})
    data = {n: (("run", "epoch"), _metric_grid(frames, run_ids, epochs, n)) for n in names}
    coords = {"run": run_ids, "epoch": np.array(epochs, dtype=np.int64)}
    rows = sweep.set_index("run_id").loc[run_ids] if run_ids else sweep.iloc[:0]
    for key in sweep.attrs.get("varied_keys", []):
        coords[key] = ("run", _typed_column(list(rows[key])))
    return xr.Dataset(data, coords=coords, attrs={"sweep_name": sweep.attrs.get("sweep_name", "")})


# ---------------------------------------------------------------------------------------------
# tensors and tables


def _dataset_names(f, under, skip=()):
    """Paths (relative to ``under``) of every dataset below group ``under`` of file ``f``,
    leaving out those below the subgroups in ``skip``."""
    group = f.get(under)
    if not isinstance(group, h5py.Group):
        return []
    names = []
    group.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return sorted(n for n in names if not any(n.startswith(s + "/") for s in skip))


def list_tensors(folder, run_id):
    """Names of the tensors of a run (datasets under tensors/, tables excepted), sorted.

    Example::

        list_tensors("results/x", "ab12cd34ef56")      # ['allocation', 'decision/experts', ...]
    """
    with h5py.File(run_path(folder, run_id), "r") as f:
        return _dataset_names(f, "tensors", skip=("tables",))


def list_tables(folder, run_id):
    """Names of the tables of a run (datasets under tensors/tables/), sorted."""
    with h5py.File(run_path(folder, run_id), "r") as f:
        return _dataset_names(f, "tensors/tables")


def _read_array(ds):
    """A dataset's contents as an ndarray (a scalar as a 0-d array, an empty one as shape (0,))."""
    value = ds[()]
    if isinstance(value, h5py.Empty):
        return np.empty((0,), dtype=ds.dtype)
    return np.asarray(value)


def tensors(folder, run_id, name):
    """The tensor ``name`` of a run (dataset tensors/<name>) as a numpy array. ``name`` may hold
    ``/`` (``decision/gate``, ``test/gate_mean``). KeyError listing the run's tensors when there
    is none of that name.

    Example::

        tensors("results/x", "ab12cd34ef56", "test/gate_mean").shape      # (epochs, experts)
    """
    path = run_path(folder, run_id)
    with h5py.File(path, "r") as f:
        ds = f.get("tensors/" + name.strip("/"))
        if not isinstance(ds, h5py.Dataset):
            what = "is a group, not a tensor" if isinstance(ds, h5py.Group) else "not found"
            raise KeyError(f"{path}: tensors/{name} {what} (tensors: "
                           f"{_listing(_dataset_names(f, 'tensors', skip=('tables',)), 50)})")
        return _read_array(ds)


def table(folder, run_id, name):
    """The table ``name`` of a run (tensors/tables/<name>) as a DataFrame: its ``rows`` and
    ``columns`` attributes as index and columns, float64 values (NaN = empty cell). KeyError
    listing the run's tables when there is none of that name.

    Example::

        table("results/masked_smoke", "ab12cd34ef56", "valid/accuracy").loc["trained"]
    """
    path = run_path(folder, run_id)
    with h5py.File(path, "r") as f:
        ds = f.get("tensors/tables/" + name.strip("/"))
        if not isinstance(ds, h5py.Dataset):
            raise KeyError(f"{path}: no table tensors/tables/{name} (tables: "
                           f"{_listing(_dataset_names(f, 'tensors/tables'), 50)})")
        missing = [a for a in ("rows", "columns") if a not in ds.attrs]
        if missing:
            raise KeyError(f"{path}: tensors/tables/{name} lacks the attribute(s) {', '.join(missing)}")
        values = _read_array(ds)
        rows, cols = _strings(ds.attrs["rows"]), _strings(ds.attrs["columns"])
        dims = _strings(ds.attrs.get("dims")) or ["row", "column"]
    df = pd.DataFrame(values, index=pd.Index(rows, name=dims[0]), columns=pd.Index(cols, name=dims[-1]))
    return df
