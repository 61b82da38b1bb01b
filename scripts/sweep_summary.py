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
