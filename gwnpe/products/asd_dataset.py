"""ASD dataset files (``asd_dataset.h5``): per detector an (N, n_bins) array of amplitude spectral
densities [1/sqrt(Hz)] on the analysis band, the band's frequencies, a JSON record per ASD of how it
was made (the variation drawn, or the GPS window of the data), and the provenance."""

from __future__ import annotations

import json
from dataclasses import dataclass
import numpy as np

from .. import provenance
from ..errors import GwnpeError
from .common import open_stage_output


@dataclass(frozen=True)
class ASDDataset:
    frequencies: np.ndarray
    asds: dict  # detector -> (N, n_bins) float32 [1/sqrt(Hz)]
    records: dict  # detector -> list of dicts


def write_asd_dataset(path, dataset: ASDDataset, prov: dict) -> None:
    """Write the dataset atomically (nothing half-written is left on failure)."""
    import h5py

    with provenance.atomic_output(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            f.create_dataset("frequencies", data=np.asarray(dataset.frequencies, float), track_times=False)
            for ifo, a in dataset.asds.items():
                g = f.create_group(ifo, track_order=True)
                g.create_dataset("asd", data=np.asarray(a, np.float32), track_times=False)
                g.create_dataset("records", data=json.dumps(dataset.records[ifo]), dtype=h5py.string_dtype("utf-8"),
                                 track_times=False)
            provenance.write_h5(f, prov)


def read_asd_dataset(path) -> ASDDataset:
    """Read an ASD dataset file; a missing or truncated one is named with the stage that makes it."""
    with open_stage_output(path, "ASD dataset", "asd_dataset", GwnpeError) as f:
        ifos = [k for k in f if k != "frequencies"]
        records = {}
        for k in ifos:
            raw = f[k]["records"][()]
            records[k] = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        return ASDDataset(f["frequencies"][...], {k: f[k]["asd"][...] for k in ifos}, records)


def split_asd_dataset(n: int, held_out_fraction: float) -> tuple[slice, slice]:
    """The training and held-out parts of an ASD dataset of ``n`` ASDs per detector: the last
    ``round(held_out_fraction * n)`` are held out (never seen in training; the held-out PP-test's)."""
    n_held = int(round(float(held_out_fraction) * n))
    return slice(0, n - n_held), slice(n - n_held, n)


def read_asd_part(path, detectors: list[str], frequencies: np.ndarray, held_out_fraction: float, part: str,
                  error: type[Exception] = GwnpeError) -> tuple[dict, int]:
    """One part of an ASD dataset for ``detectors`` on the band ``frequencies``: ``part`` is ``training``
    or ``held_out`` (:func:`split_asd_dataset` of the smallest detector's count).

    Returns the ASDs per detector ((M, n_bins) float64) and the index of the part's first ASD in the dataset.

    Raises
    ------
    error
        If no dataset is given, it lacks a detector, lies on another frequency grid, or the part is empty.
    """
    if not path:
        raise error("a noise-conditioned network or held-out injections need the ASD dataset, and none was given; set "
                    "asd_dataset.size > 0 (the workflow then makes it).")
    ds = read_asd_dataset(path)
    missing = [k for k in detectors if k not in ds.asds]
    if missing:
        raise error(f"ASD dataset '{path}' has no ASDs of {missing}; it was made for other detectors. Rerun the "
                    "asd_dataset stage.")
    f = np.asarray(ds.frequencies, float)
    if f.shape != np.shape(frequencies) or not np.allclose(f, frequencies, rtol=0, atol=1e-9):
        raise error(f"ASD dataset '{path}' is on another frequency grid ({len(f)} bins) than the model's band "
                    f"({len(frequencies)} bins); rerun the asd_dataset stage.")
    n = min(len(ds.asds[k]) for k in detectors)
    sel = dict(zip(("training", "held_out"), split_asd_dataset(n, held_out_fraction)))[part]
    if sel.stop - sel.start < 1:
        raise error(f"ASD dataset '{path}' holds {n} ASDs per detector, none in its {part.replace('_', '-')} part with "
                    f"model.noise_conditioning.held_out_fraction = {held_out_fraction}; change the fraction or "
                    "asd_dataset.size.")
    return {k: np.asarray(ds.asds[k][sel], float) for k in detectors}, sel.start
