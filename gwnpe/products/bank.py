"""The waveform bank file (``bank.h5``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import provenance
from ..errors import GwnpeError
from .common import open_stage_output


@dataclass
class Bank:
    """A waveform bank (``bank.h5``).

    Attributes
    ----------
    parameters : dict of (n,) arrays
        Intrinsic parameters of each waveform.
    frequencies : (n_bins,) array
        [Hz] of the domain's band.
    h_plus, h_cross : (n, n_bins) complex128 arrays
        Polarizations [1/Hz] at the reference distance.
    failures : list of dict
        Draws refused by LAL (with LAL's reason) and redrawn.
    delta_f : float
        [Hz]
    """

    parameters: dict
    frequencies: np.ndarray
    h_plus: np.ndarray
    h_cross: np.ndarray
    failures: list
    delta_f: float


def write_bank(path, bank: Bank, reference_distance: float, prov: dict) -> None:
    """Layout: ``parameters/<name>`` (n,) float64, ``frequencies`` (n_bins,) [Hz], ``h_plus`` and
    ``h_cross`` (n, n_bins) complex128 [1/Hz], attributes ``failures`` (JSON), ``delta_f`` [Hz],
    ``reference_distance`` [Mpc] and the provenance."""
    import h5py

    with provenance.atomic_output(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            grp = f.create_group("parameters", track_order=True)
            for k, v in bank.parameters.items():
                grp.create_dataset(k, data=v, track_times=False)
            f.create_dataset("frequencies", data=bank.frequencies, track_times=False)
            f.create_dataset("h_plus", data=bank.h_plus, track_times=False)
            f.create_dataset("h_cross", data=bank.h_cross, track_times=False)
            f.attrs["failures"] = json.dumps(bank.failures)
            f.attrs["delta_f"] = bank.delta_f
            f.attrs["reference_distance"] = reference_distance
            provenance.write_h5(f, prov)


def load_bank(path: str | Path) -> Bank:
    """Read ``bank.h5`` (see :func:`write_bank`)."""
    with open_stage_output(path, "bank file", "bank", GwnpeError) as f:
        return Bank(
            parameters={k: v[...] for k, v in f["parameters"].items()},
            frequencies=f["frequencies"][...],
            h_plus=f["h_plus"][...],
            h_cross=f["h_cross"][...],
            failures=json.loads(f.attrs["failures"]),
            delta_f=float(f.attrs["delta_f"]),
        )
