"""modlab: read the results of `modlab run` (sweep.h5 and runs/<run_id>.h5) into pandas, numpy
and xarray. See docs/python.md."""
from .reader import (
    config,
    list_tables,
    list_tensors,
    load_sweep,
    metrics,
    metrics_xarray,
    parse_literal,
    run_attrs,
    run_path,
    sweep_attrs,
    sweep_path,
    table,
    tensors,
    varied_keys,
)

__all__ = [
    "config",
    "list_tables",
    "list_tensors",
    "load_sweep",
    "metrics",
    "metrics_xarray",
    "parse_literal",
    "run_attrs",
    "run_path",
    "sweep_attrs",
    "sweep_path",
    "table",
    "tensors",
    "varied_keys",
]
