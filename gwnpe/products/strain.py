"""gwnpe frequency-domain strain files (an event's strain on a model's band)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import provenance
from ..errors import InferenceError


@dataclass
class FDStrain:
    """A gwnpe frequency-domain strain file.

    Attributes
    ----------
    frequencies : (n_bins,) array [Hz]
    strain : dict ifo -> (n_bins,) complex [1/Hz], phase origin ``start_time``
    start_time, trigger_time : float [GPS s]
    injection_parameters : dict or None
    """

    frequencies: np.ndarray
    strain: dict
    start_time: float
    trigger_time: float
    injection_parameters: dict | None = None


def write_fd_strain(path, frequencies, strain: dict, start_time: float, trigger_time: float, prov: dict | None = None,
                    injection_parameters: dict | None = None) -> None:
    """gwnpe frequency-domain strain file: ``frequencies`` and ``strain/<ifo>`` (complex, phase origin start_time)."""
    import h5py

    with provenance.atomic_output(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            f.create_dataset("frequencies", data=np.asarray(frequencies), track_times=False)
            g = f.create_group("strain", track_order=True)
            for ifo, s in strain.items():
                g.create_dataset(ifo, data=np.asarray(s, complex), track_times=False)
            f.attrs["start_time"] = float(start_time)
            f.attrs["trigger_time"] = float(trigger_time)
            if injection_parameters is not None:
                f.attrs["injection_parameters"] = json.dumps({k: float(v) for k, v in injection_parameters.items()})
            if prov is not None:
                provenance.write_h5(f, prov)


def read_fd_strain(path) -> FDStrain:
    """Read a file written by :func:`write_fd_strain`."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InferenceError(f"strain file '{path}' does not exist.")
    try:
        with h5py.File(path, "r") as f:
            return FDStrain(
                frequencies=f["frequencies"][...],
                strain={k: v[...] for k, v in f["strain"].items()},
                start_time=float(f.attrs["start_time"]),
                trigger_time=float(f.attrs["trigger_time"]),
                injection_parameters=json.loads(f.attrs["injection_parameters"]) if "injection_parameters" in f.attrs else None,
            )
    except (OSError, KeyError) as exc:
        raise InferenceError(f"strain file '{path}' is not a gwnpe frequency-domain strain file ({exc}).") from exc
