"""PSD files: two columns, frequency [Hz] and one-sided PSD [1/Hz], with the provenance on a comment line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import provenance
from ..errors import StrainError
from ..gw import noise
from ..gw.domain import FrequencyDomain


@dataclass(frozen=True)
class PSD:
    """A PSD file: ``frequencies`` [Hz] and one-sided ``psd`` [1/Hz]."""

    frequencies: np.ndarray
    psd: np.ndarray


def read_psd(path: str | Path) -> PSD:
    """Frequencies [Hz] and PSD [1/Hz] from a gwnpe PSD text file."""
    path = Path(path)
    if not path.is_file():
        raise StrainError(f"PSD file '{path}' does not exist; run the psd stage first.")
    fix = "delete it and rerun the psd stage (or give a two-column file: frequency [Hz], PSD [1/Hz])"
    try:
        data = np.loadtxt(path, ndmin=2)
    except ValueError as exc:  # includes UnicodeDecodeError of binary files
        reason = str(exc).split("; use `usecols`")[0]  # numpy's advice does not apply to a PSD file
        raise StrainError(f"PSD file '{path}' is not a two-column text file, or is truncated ({reason}); {fix}.") from exc
    if data.shape[1] != 2 or data.shape[0] < 2:
        raise StrainError(
            f"PSD file '{path}' has shape {data.shape}; expected two columns (frequency, PSD) and at least two "
            f"rows: {fix}."
        )
    return PSD(frequencies=data[:, 0], psd=data[:, 1])


def psd_on_domain(path: str | Path, domain: FrequencyDomain) -> np.ndarray:
    """PSD [1/Hz] of a PSD file on the domain's band (see :func:`gwnpe.gw.noise.psd_on_domain`)."""
    file = read_psd(path)
    return noise.psd_on_domain(file.frequencies, file.psd, domain, source=f"PSD file '{path}'")


def write_psd(path: str | Path, freqs: np.ndarray, psd: np.ndarray, prov: dict) -> None:
    """Write a PSD text file that :func:`read_psd` reads back bit for bit.

    The file holds the provenance comment line (:func:`gwnpe.provenance.text_header`),
    a ``# frequency [Hz]  PSD [1/Hz]`` line, then two columns printed with ``%.17g``
    (exact float64 round trip).
    """
    freqs = np.asarray(freqs, dtype=np.float64)
    psd = np.asarray(psd, dtype=np.float64)
    if freqs.ndim != 1 or freqs.shape != psd.shape:
        raise ValueError(f"freqs {freqs.shape} and psd {psd.shape} must be 1-d of equal length")
    header = provenance.text_header(prov) + "\n# frequency [Hz]  PSD [1/Hz]"
    with provenance.atomic_output(path) as tmp:
        np.savetxt(tmp, np.column_stack([freqs, psd]), fmt="%.17g", header=header, comments="")
