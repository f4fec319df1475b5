"""The reduced-basis file (``basis.h5``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import provenance
from ..errors import BasisError
from ..gw.svd import ReducedBasis
from .common import open_stage_output


def write_basis(path, basis: ReducedBasis, singular_values: np.ndarray, validation: dict, mismatch: np.ndarray,
                attrs: dict, prov: dict) -> None:
    """Layout: ``V`` (n_bins, K), ``singular_values``, ``asd_reference``, ``frequencies``, group
    ``validation`` (``mismatch`` per held-out row and the curves of ``validation``), attributes
    ``delta_f`` and ``attrs`` (time shift, tolerance, mismatch statistics) and the provenance."""
    import h5py

    with provenance.atomic_output(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            f.create_dataset("V", data=basis.V, track_times=False)
            f.create_dataset("singular_values", data=singular_values, track_times=False)
            f.create_dataset("asd_reference", data=basis.asd_reference, track_times=False)
            f.create_dataset("frequencies", data=basis.frequencies, track_times=False)
            g = f.create_group("validation", track_order=True)
            g.create_dataset("mismatch", data=mismatch, track_times=False)
            for k, v in validation.items():
                g.create_dataset(k, data=v, track_times=False)
            g.attrs["whitening"] = "reference"
            f.attrs["delta_f"] = basis.delta_f
            for k, v in attrs.items():
                f.attrs[k] = v
            provenance.write_h5(f, prov)


def load_basis(path: str | Path) -> ReducedBasis:
    """Read a basis written by the svd stage (``basis.h5``)."""
    with open_stage_output(path, "basis file", "svd", BasisError) as f:
        return ReducedBasis(
            V=f["V"][...],
            asd_reference=f["asd_reference"][...],
            frequencies=f["frequencies"][...],
            delta_f=float(f.attrs["delta_f"]),
        )


def basis_shape(path: str | Path, frequencies: np.ndarray) -> tuple[int, float]:
    """Basis size K and delta_f [Hz] of ``basis.h5``, after checking it lies on ``frequencies`` (reads no V)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise BasisError(f"basis file '{path}' does not exist; run the svd stage first.")
    try:
        with h5py.File(path, "r") as f:
            n_bins, k = f["V"].shape
            freqs = f["frequencies"][...]
            delta_f = float(f.attrs["delta_f"])
    except (OSError, KeyError) as exc:
        raise BasisError(f"basis file '{path}' is unreadable or incomplete ({exc}); rerun the svd stage.") from exc
    if n_bins != len(frequencies) or len(freqs) != len(frequencies) or not np.allclose(freqs, frequencies):
        raise BasisError(
            f"basis '{path}' is on {len(freqs)} bins ({freqs[0]:g}-{freqs[-1]:g} Hz) but the domain's band has "
            f"{len(frequencies)} bins ({frequencies[0]:g}-{frequencies[-1]:g} Hz); rerun the svd stage with this config's domain."
        )
    return int(k), delta_f
