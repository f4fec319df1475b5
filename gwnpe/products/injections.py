"""Injection files: the user's parameter tables (CSV/JSON) and the campaign file ``injections.h5``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import provenance
from ..errors import InjectionError
from ..gw.priors import first_outside_prior
from .common import open_stage_output


class _NoRows(Exception):
    """An injection table with a header (or nothing) and no rows."""


def read_injection_file(path, names: list[str]) -> dict[str, np.ndarray]:
    """Parameters from a CSV (header row) or JSON ({name: [values]}) file; every sampled parameter is required.

    Raises
    ------
    InjectionError
        Naming the file (``injections.file``) and what is wrong: missing, a directory, not CSV/JSON of
        that form, no rows, a missing column, non-numeric or non-finite values.
    """
    import warnings

    path = Path(path)
    form = ("a CSV file with a header row of parameter names and one injection per row, or a JSON object "
            "{name: [values, ...]}")
    if path.is_dir():
        raise InjectionError(f"injection file '{path}' (injections.file) is a directory; give {form}.")
    if not path.is_file():
        raise InjectionError(f"injection file '{path}' does not exist (injections.file).")
    try:
        if path.suffix == ".json":
            raw = json.loads(path.read_text())
            if not isinstance(raw, dict):
                raise ValueError(f"the top level is a {type(raw).__name__}, not an object")
            table = {}
            for k, v in raw.items():
                if not isinstance(v, list):
                    raise ValueError(f"'{k}' is {v!r}, not a list of values")
                table[k] = np.asarray(v, float)
        else:
            lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
            if len(lines) <= 1:
                raise _NoRows
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # numpy warns on an empty file before we say so
                arr = np.genfromtxt(path, delimiter=",", names=True, dtype=float)
            if arr.dtype.names is None:
                raise ValueError("there is no header row of parameter names")
            table = {k: np.atleast_1d(arr[k]) for k in arr.dtype.names}
    except _NoRows:
        table = {}
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InjectionError(f"injection file '{path}' (injections.file) cannot be read ({exc}); give {form}.") from None
    rows = {len(v) for v in table.values()}
    if not table or rows == {0}:
        raise InjectionError(f"injection file '{path}' (injections.file) has no injections (no rows); add one row per "
                             "injection, or unset injections.file to draw injections.count from the prior.")
    if len(rows) > 1:
        raise InjectionError(f"injection file '{path}': its columns have different lengths {sorted(rows)}; give one "
                             "value per injection in every column.")
    missing = [k for k in names if k not in table]
    if missing:
        raise InjectionError(f"injection file '{path}' has no column for {', '.join(missing)}; it needs {', '.join(names)}.")
    for k in names:
        bad = np.flatnonzero(~np.isfinite(table[k]))
        if bad.size:
            raise InjectionError(f"injection file '{path}': column '{k}' has a missing, non-numeric or non-finite value "
                                 f"in row {int(bad[0]) + 1} (and {bad.size - 1} more); give a number in every cell.")
    return {k: table[k] for k in names}


def check_injections_in_prior(priors, table: dict, source) -> None:
    """Refuse injection parameters outside the model's prior (the network cannot infer them), naming row and column."""
    bad = first_outside_prior(priors, table)
    if bad is not None:
        row, key, value, (lo, hi) = bad
        raise InjectionError(
            f"injection file '{source}' (injections.file): row {row + 1}, column '{key}' = {value:g} lies outside the "
            f"prior's range [{lo:g}, {hi:g}]; the network was trained on that prior and cannot infer it. Remove or "
            "correct the row, or widen the prior (and retrain)."
        )


@dataclass
class Injections:
    """An injection campaign (``injections.h5``).

    Attributes
    ----------
    parameters : dict of (N,) arrays
        Sampled parameters; ``geocent_time`` relative to ``trigger_time`` (prior convention).
    frequencies : (n_bins,) array [Hz]
    strain : dict ifo -> (N, n_bins) complex128 [1/Hz], phase origin ``start_time``
    psd : dict ifo -> (n_bins,) or (N, n_bins) [1/Hz]
        The analysis PSDs the noise was drawn from: one for all injections, or one per injection
        (``injections.asd_source: held_out``); :meth:`psd_of` gives an injection's.
    snr : dict name -> (N,) (``optimal_<ifo>``, ``matched_filter_<ifo>``, ``network_*``)
    start_time, trigger_time : float [GPS s]
    failures : list of dict
        Draws refused by LAL and redrawn.
    asd_index : dict ifo -> (N,) int, optional
        For per-injection PSDs: the index of each one's ASD in the ASD dataset.
    """

    parameters: dict
    frequencies: np.ndarray
    strain: dict
    psd: dict
    snr: dict
    start_time: float
    trigger_time: float
    failures: list = field(default_factory=list)
    asd_index: dict | None = None

    def __len__(self) -> int:
        return len(next(iter(self.parameters.values())))

    def psd_of(self, index: int) -> dict:
        """The PSDs (ifo -> (n_bins,)) injection ``index``'s noise was drawn from and is whitened with."""
        return {k: (v[index] if np.ndim(v) == 2 else v) for k, v in self.psd.items()}

    def event(self, index: int, source="the injection file") -> dict:
        """Injection ``index``: ``parameters``, ``strain``, ``psd``, ``snr``, ``start_time``, ``trigger_time``."""
        n = len(self)
        if not 0 <= index < n:
            raise InjectionError(f"injection index {index} does not exist in '{source}' (it has {n}: 0-{n - 1}).")
        return {
            "parameters": {k: float(v[index]) for k, v in self.parameters.items()},
            "strain": {k: v[index] for k, v in self.strain.items()},
            "psd": self.psd_of(index),
            "snr": {k: float(v[index]) for k, v in self.snr.items()},
            "start_time": self.start_time,
            "trigger_time": self.trigger_time,
        }


def load_event(path, index: int, error: type[Exception] = InjectionError) -> dict:
    """Injection ``index`` of ``injections.h5`` (:meth:`Injections.event`); an index beyond the campaign
    raises ``error`` naming the file and the valid range."""
    try:
        return load_injections(path).event(index, path)
    except InjectionError as exc:
        if error is InjectionError:
            raise
        raise error(str(exc)) from None


def write_injections(path, inj: Injections, prov: dict) -> None:
    """Layout: ``parameters/<name>``, ``frequencies``, ``strain/<ifo>``, ``psd/<ifo>`` ((n_bins,) or (N, n_bins)),
    ``asd_index/<ifo>`` (per-injection PSDs only), ``snr/<name>``,
    attributes ``start_time``, ``trigger_time``, ``failures`` (JSON) and the provenance."""
    import h5py

    with provenance.atomic_output(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            g = f.create_group("parameters", track_order=True)
            for k, v in inj.parameters.items():
                g.create_dataset(k, data=np.asarray(v, float), track_times=False)
            f.create_dataset("frequencies", data=inj.frequencies, track_times=False)
            gs = f.create_group("strain", track_order=True)
            gp = f.create_group("psd", track_order=True)
            for ifo in inj.strain:
                gs.create_dataset(ifo, data=inj.strain[ifo], track_times=False)
                gp.create_dataset(ifo, data=inj.psd[ifo], track_times=False)
            gsnr = f.create_group("snr", track_order=True)
            for k, v in inj.snr.items():
                gsnr.create_dataset(k, data=v, track_times=False)
            f.attrs["start_time"] = inj.start_time
            f.attrs["trigger_time"] = float(inj.trigger_time)
            f.attrs["failures"] = json.dumps(inj.failures)
            if inj.asd_index is not None:
                ga = f.create_group("asd_index", track_order=True)
                for ifo, v in inj.asd_index.items():
                    ga.create_dataset(ifo, data=np.asarray(v, np.int64), track_times=False)
            provenance.write_h5(f, prov)


def read_network_snrs(path) -> np.ndarray:
    """The network optimal SNR of every injection of ``injections.h5``, without reading the strain."""
    with open_stage_output(path, "injection file", "injections", InjectionError) as f:
        return np.asarray(f["snr"]["network_optimal"][...], float)


def load_injections(path) -> Injections:
    """Read ``injections.h5`` (see :func:`write_injections`)."""
    with open_stage_output(path, "injection file", "injections", InjectionError) as f:
        return Injections(
            parameters={k: v[...] for k, v in f["parameters"].items()},
            frequencies=f["frequencies"][...],
            strain={k: v[...] for k, v in f["strain"].items()},
            psd={k: v[...] for k, v in f["psd"].items()},
            snr={k: v[...] for k, v in f["snr"].items()},
            start_time=float(f.attrs["start_time"]),
            trigger_time=float(f.attrs["trigger_time"]),
            failures=json.loads(f.attrs.get("failures", "[]")),
            asd_index={k: v[...] for k, v in f["asd_index"].items()} if "asd_index" in f else None,
        )
