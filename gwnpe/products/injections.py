"""Injection files: the user's parameter tables (CSV/JSON) and the campaign file ``injections.h5``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import provenance
from ..errors import InjectionError
from .common import open_stage_output


def read_injection_file(path, names: list[str]) -> dict[str, np.ndarray]:
    """Parameters from a CSV (header row) or JSON ({name: [values]}) file; every sampled parameter is required."""
    path = Path(path)
    if not path.is_file():
        raise InjectionError(f"injection file '{path}' does not exist (injections.file).")
    if path.suffix == ".json":
        raw = json.loads(path.read_text())
        table = {k: np.asarray(v, float) for k, v in raw.items()}
    else:
        arr = np.genfromtxt(path, delimiter=",", names=True, dtype=float)
        table = {k: np.atleast_1d(arr[k]) for k in arr.dtype.names}
    missing = [k for k in names if k not in table]
    if missing:
        raise InjectionError(f"injection file '{path}' has no column for {', '.join(missing)}; it needs {', '.join(names)}.")
    bad = [k for k in names if not np.all(np.isfinite(table[k]))]
    if bad:
        raise InjectionError(f"injection file '{path}' has non-finite values in {', '.join(bad)}.")
    return {k: table[k] for k in names}


@dataclass
class Injections:
    """An injection campaign (``injections.h5``).

    Attributes
    ----------
    parameters : dict of (N,) arrays
        Sampled parameters; ``geocent_time`` relative to ``trigger_time`` (prior convention).
    frequencies : (n_bins,) array [Hz]
    strain : dict ifo -> (N, n_bins) complex128 [1/Hz], phase origin ``start_time``
    psd : dict ifo -> (n_bins,) [1/Hz]
    snr : dict name -> (N,) (``optimal_<ifo>``, ``matched_filter_<ifo>``, ``network_*``)
    start_time, trigger_time : float [GPS s]
    failures : list of dict
        Draws refused by LAL and redrawn.
    """

    parameters: dict
    frequencies: np.ndarray
    strain: dict
    psd: dict
    snr: dict
    start_time: float
    trigger_time: float
    failures: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(next(iter(self.parameters.values())))

    def event(self, index: int, source="the injection file") -> dict:
        """Injection ``index``: ``parameters``, ``strain``, ``psd``, ``snr``, ``start_time``, ``trigger_time``."""
        n = len(self)
        if not 0 <= index < n:
            raise InjectionError(f"injection index {index} does not exist in '{source}' (it has {n}: 0-{n - 1}).")
        return {
            "parameters": {k: float(v[index]) for k, v in self.parameters.items()},
            "strain": {k: v[index] for k, v in self.strain.items()},
            "psd": self.psd,
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
    """Layout: ``parameters/<name>``, ``frequencies``, ``strain/<ifo>``, ``psd/<ifo>``, ``snr/<name>``,
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
            provenance.write_h5(f, prov)


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
        )
