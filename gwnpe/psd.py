"""Noise power spectral densities: reading, writing, whitening.

PSD files are two columns, frequency [Hz] and one-sided PSD [1/Hz], with the
provenance on a comment line (see :mod:`gwnpe.provenance`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .domain import FrequencyDomain
from .errors import StrainError

logger = logging.getLogger(__name__)


def read_psd(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies [Hz] and PSD [1/Hz] from a gwnpe PSD text file."""
    path = Path(path)
    if not path.is_file():
        raise StrainError(f"PSD file '{path}' does not exist; run the psd stage first.")
    try:
        data = np.loadtxt(path, ndmin=2)
    except ValueError as exc:
        raise StrainError(f"PSD file '{path}' is not a two-column text file: {exc}") from exc
    if data.shape[1] != 2:
        raise StrainError(f"PSD file '{path}' has {data.shape[1]} columns; expected frequency and PSD.")
    return data[:, 0], data[:, 1]


def psd_on_domain(path: str | Path, domain: FrequencyDomain) -> np.ndarray:
    """PSD [1/Hz] on the domain's band, interpolated if the file's grid differs.

    Raises
    ------
    StrainError
        If the file does not cover the band or has zero/non-finite values inside it.
    """
    f, psd = read_psd(path)
    fd = domain.frequencies
    if f[0] > fd[0] + 1e-9 or f[-1] < fd[-1] - 1e-9:
        raise StrainError(
            f"PSD file '{path}' covers {f[0]}-{f[-1]} Hz, not the band {fd[0]}-{fd[-1]} Hz of the domain."
        )
    if len(f) > 1 and np.allclose(np.diff(f), domain.delta_f) and np.isclose((fd[0] - f[0]) / domain.delta_f % 1, 0):
        k0 = int(round((fd[0] - f[0]) / domain.delta_f))
        out = psd[k0 : k0 + len(fd)]
    else:
        out = np.interp(fd, f, psd)
    bad = ~np.isfinite(out) | (out <= 0)
    if bad.any():
        raise StrainError(
            f"PSD file '{path}' has {bad.sum()} zero or non-finite bins inside {fd[0]}-{fd[-1]} Hz "
            f"(first at {fd[bad][0]} Hz); whitening would divide by zero."
        )
    return out


def whiten(h: np.ndarray, asd: np.ndarray, delta_f: float) -> np.ndarray:
    """Whitened frequency series ``h sqrt(4 delta_f) / asd``.

    With this normalisation stationary Gaussian noise has unit variance per real
    component and ``sum |h_w|^2`` is the optimal SNR squared.
    """
    return h * (np.sqrt(4.0 * delta_f) / asd)
