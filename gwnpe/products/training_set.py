"""Training-set files: the chunks written on dask workers and the merged ``training_set.h5``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import provenance
from ..errors import TrainingSetError


def write_chunk(path: Path, parameters: dict, h_plus: np.ndarray, h_cross: np.ndarray, tag: str) -> None:
    """One training-set chunk (written on a dask worker): ``parameters/<name>``, ``h_plus``, ``h_cross``.

    Written through a temporary file named with ``tag`` (unique per attempt) and renamed into place.
    """
    import h5py

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{tag}")
    try:
        with h5py.File(tmp, "w", track_order=True) as f:
            grp = f.create_group("parameters", track_order=True)
            for k, v in parameters.items():
                grp.create_dataset(k, data=v, track_times=False)
            f.create_dataset("h_plus", data=h_plus, track_times=False)
            f.create_dataset("h_cross", data=h_cross, track_times=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_chunk(path: str, keys: list[str], n: int, k: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """Read one chunk file, checking its shapes."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            params = {key: f["parameters"][key][...] for key in keys}
            hp = f["h_plus"][...]
            hc = f["h_cross"][...]
    except (OSError, KeyError) as exc:
        raise TrainingSetError(f"chunk file '{path}' is unreadable or incomplete ({exc}).") from exc
    if hp.shape != (n, k) or hc.shape != (n, k) or any(v.shape != (n,) for v in params.values()):
        raise TrainingSetError(f"chunk file '{path}' has shape {hp.shape}, expected ({n}, {k}).")
    return params, hp, hc


def write_training_set(path, chunks: list[dict], keys: list[str], n_total: int, k: int, failures: list,
                       attrs: dict, prov: dict) -> None:
    """Merge chunk files (``{"path", "start", "n"}`` each, in order) into ``training_set.h5``.

    Datasets are pre-allocated and filled one chunk at a time, so memory is set by the chunk size;
    each chunk file is deleted once copied. Layout in :mod:`gwnpe.stages.training_set`.
    """
    import h5py

    with provenance.atomic_output(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            grp = f.create_group("parameters", track_order=True)
            pds = {key: grp.create_dataset(key, shape=(n_total,), dtype="f8", track_times=False) for key in keys}
            hp_ds = f.create_dataset("h_plus", shape=(n_total, k), dtype="c8", track_times=False)
            hc_ds = f.create_dataset("h_cross", shape=(n_total, k), dtype="c8", track_times=False)
            for m in chunks:  # chunk order, one chunk in memory at a time
                params, hp, hc = read_chunk(m["path"], keys, m["n"], k)
                rows = slice(m["start"], m["start"] + m["n"])
                for key in keys:
                    pds[key][rows] = params[key]
                hp_ds[rows] = hp
                hc_ds[rows] = hc
                del params, hp, hc
                os.unlink(m["path"])
            f.create_dataset("failures", data=json.dumps(failures), dtype=h5py.string_dtype("utf-8"), track_times=False)
            for key, value in attrs.items():
                f.attrs[key] = value
            provenance.write_h5(f, prov)


@dataclass
class TrainingSet:
    """A training set read by :func:`load_training_set`.

    Attributes
    ----------
    parameters : dict of (N,) arrays (or h5py datasets when lazy)
    h_plus, h_cross : (N, K) complex64 arrays (or h5py datasets when lazy)
        Reduced-basis coefficients of the whitened polarizations at ``reference_distance``.
    failures : list of dict
        Draws refused by LAL and redrawn.
    attrs : dict
        File attributes (``basis_size``, ``delta_f`` [Hz], ``reference_distance`` [Mpc], ...).
    """

    parameters: dict
    h_plus: object
    h_cross: object
    failures: list
    attrs: dict
    _file: object = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load_training_set(path: str | Path, lazy: bool = False) -> TrainingSet:
    """Read ``training_set.h5``.

    Parameters
    ----------
    path : str or Path
    lazy : bool
        Return h5py datasets (read on indexing, memory-light) and keep the file open;
        close it with :meth:`TrainingSet.close` or a ``with`` block.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise TrainingSetError(f"training set '{path}' does not exist; run the training_set stage first.")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise TrainingSetError(f"training set '{path}' is unreadable or truncated ({exc}); delete it and rerun the "
                               "training_set stage.") from exc
    try:
        keys = json.loads(f.attrs["intrinsic_parameters"])
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items() if k != provenance.PROVENANCE_ATTR}
        raw = f["failures"][()]
        failures = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        if lazy:
            return TrainingSet({k: f["parameters"][k] for k in keys}, f["h_plus"], f["h_cross"], failures, attrs, f)
        out = TrainingSet({k: f["parameters"][k][...] for k in keys}, f["h_plus"][...], f["h_cross"][...], failures, attrs)
    except (KeyError, OSError) as exc:
        f.close()
        raise TrainingSetError(f"training set '{path}' is incomplete ({exc}); delete it and rerun the training_set stage.") from exc
    f.close()
    return out
