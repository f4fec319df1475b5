"""The PSD stage: each detector's Welch PSD from strain in the window that ends where the analysed
segment starts (:func:`gwnpe.gw.strain_io.psd_window`), on the grid ``0 .. sampling_frequency / 2``
with resolution ``1 / segment_length`` (the analysis grid when ``segment_length`` is null).

The strain comes from ``psd.source``: noise simulated from a reference curve, the user's strain
files, or a GWOSC download. PSD files are two columns, frequency [Hz] and one-sided PSD [1/Hz],
with the provenance on a comment line (:func:`gwnpe.products.psd.write_psd`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..products.common import make_provenance, save_figure
from ..products.psd import write_psd
from ..diagnostics.training_plots import psd_figure
from ..errors import ConfigError, StrainError
from ..gw.noise import _samples, load_noise_curve, simulate_noise, welch_psd, welch_segments
from ..gw.strain_io import fetch_gwosc, psd_window, read_strain
from ..seeding import stage_rng
from .settings import stage_settings

logger = logging.getLogger(__name__)


def noise_curve_for(ifo: str, settings: dict) -> str | None:
    """The ``psd.noise_curve`` entry of ``ifo`` (a single curve or a detector mapping)."""
    curve = settings["psd"]["noise_curve"]
    if isinstance(curve, dict):
        if ifo not in curve:
            raise ConfigError(f"psd.noise_curve is a mapping but has no curve for {ifo}.")
        return curve[ifo]
    return curve


def get_psd_strain(ifo: str, settings: dict, rng: np.random.Generator) -> tuple[float, float, np.ndarray]:
    """Strain of ``ifo`` in the PSD window (:func:`psd_window`), from ``psd.source``.

    Parameters
    ----------
    ifo : str
        Detector name.
    settings : dict
        Validated config (``trigger_time``, ``domain``, ``psd``).
    rng : numpy.random.Generator
        Used only by ``simulated``.

    Returns
    -------
    t0, dt, data
        GPS start [s], spacing [s], strain samples.

    Notes
    -----
    * ``simulated``: Gaussian noise from ``psd.noise_curve`` at ``domain.sampling_frequency``.
    * ``files``: ``psd.strain_files[ifo]`` (channel ``psd.channels[ifo]`` for GWF) at the
      file's own rate, which must be at least ``domain.sampling_frequency``.
    * ``gwosc``: open data at 4096 Hz (16384 Hz if the domain needs more), cached in
      ``psd.cache_dir``.
    """
    psd_cfg = settings["psd"]
    fs = float(settings["domain"]["sampling_frequency"])
    start, end = psd_window(settings)
    source = psd_cfg["source"]
    if source == "simulated":
        duration = float(psd_cfg["duration"])  # not end - start: GPS round-off (~1e-7 s)
        curve = noise_curve_for(ifo, settings)
        n = int(round(duration * fs))
        freqs = np.arange(n // 2 + 1) / duration
        psd = load_noise_curve(curve, freqs)
        return start, 1.0 / fs, simulate_noise(freqs, psd, duration, fs, rng)
    if source == "files":
        files = psd_cfg["strain_files"]
        if ifo not in files:
            raise ConfigError(f"psd.source is 'files' but psd.strain_files has no entry for {ifo}.")
        channel = psd_cfg["channels"].get(ifo)
        t0, dt, data = read_strain(files[ifo], ifo, start, end, channel=channel, purpose="psd")
    elif source == "gwosc":
        rate = 4096 if fs <= 4096 else 16384
        t0, dt, data = fetch_gwosc(ifo, start, end, psd_cfg["cache_dir"], sample_rate=rate)
    else:
        raise ConfigError(f"psd.source = {source!r}; expected 'simulated', 'files' or 'gwosc'.")
    where = files[ifo] if source == "files" else "GWOSC"
    if 1.0 / dt < fs * (1 - 1e-9):
        raise StrainError(
            f"{ifo} strain '{where}' is sampled at {1 / dt:.6g} Hz, below domain.sampling_frequency "
            f"= {fs:.6g} Hz: its PSD cannot reach {fs / 2:.6g} Hz. Lower domain.sampling_frequency "
            "(and f_max) or use data sampled faster."
        )
    seg = float(psd_cfg["segment_length"] or settings["domain"]["duration"])
    n_seg = seg / dt
    if abs(n_seg - round(n_seg)) > 1e-6 * max(1.0, n_seg):
        raise StrainError(
            f"{ifo} strain '{where}' is sampled at {1 / dt:.6g} Hz, so a Welch segment of "
            f"psd.segment_length = {seg:g} s is not a whole number of samples ({n_seg:.6g}). Resample the data "
            "to a rate that puts a whole number of samples in a segment (e.g. a power of two in Hz), or change "
            "psd.segment_length."
        )
    return t0, dt, data


def estimate_psd(ifo: str, settings: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]:
    """Welch PSD of ``ifo`` from the strain before the analysed segment.

    Parameters
    ----------
    ifo : str
        Detector name; must be in ``settings['detectors']``.
    settings : dict
        Validated config (at least ``seed``, ``trigger_time``, ``detectors``, ``domain``,
        ``psd``). Simulated noise of the i-th detector is drawn from
        ``stage_rng(seed, "psd", i)``.

    Returns
    -------
    freqs : ndarray
        ``0 .. domain.sampling_frequency / 2`` [Hz] in steps of ``1 / segment_length``
        (``segment_length`` null -> ``domain.duration``). Strain sampled faster than the
        domain is estimated at its own rate and truncated to this grid.
    psd : ndarray
        Estimated one-sided PSD [1/Hz].
    reference : ndarray or None
        ``psd.noise_curve`` on ``freqs`` [1/Hz] (``inf`` outside the curve), or None
        if no curve is configured.
    info : dict
        ``source``, ``n_averages``, ``window``, ``method``, ``segment_length`` [s],
        ``overlap``, ``strain_start``/``strain_end`` [GPS s] of the samples used,
        ``requested_start``/``requested_end`` [GPS s], ``sampling_frequency`` [Hz] of the
        strain, ``noise_curve``.

    Raises
    ------
    StrainError
        For bad strain (see :func:`gwnpe.gw.strain_io.read_strain`) or an estimate with zero or
        non-finite bins inside ``[f_min, f_max]``.
    """
    detectors = list(settings["detectors"])
    if ifo not in detectors:
        raise ConfigError(f"detector {ifo} is not in detectors {detectors}; add it there or ask for one of those.")
    dom, cfg = settings["domain"], settings["psd"]
    rng = stage_rng(settings["seed"], "psd", detectors.index(ifo))
    t0, dt, data = get_psd_strain(ifo, settings, rng)

    seg = float(cfg["segment_length"] or dom["duration"])
    if len(data) * dt < seg * (1 - 1e-9):
        where = f"file '{cfg['strain_files'][ifo]}'" if cfg["source"] == "files" else f"from {cfg['source']}"
        raise StrainError(
            f"{ifo} strain {where} gives {len(data) * dt:g} s in the PSD window, shorter than one Welch segment "
            f"of psd.segment_length = {seg:g} s. Raise psd.duration to several segments, or shorten "
            "psd.segment_length."
        )
    overlap = float(cfg["overlap"])
    window = cfg["window"]
    method = cfg["method"]
    freqs, psd = welch_psd(data, dt, seg, overlap, window, method, cfg["tukey_alpha"])
    n_out = _samples(seg, 1.0 / float(dom["sampling_frequency"]), "psd.segment_length") // 2 + 1
    if len(freqs) < n_out:  # get_psd_strain refuses slower data; defensive
        raise StrainError(f"{ifo} PSD reaches {freqs[-1]} Hz, below the domain's Nyquist frequency.")
    freqs, psd = freqs[:n_out], psd[:n_out]

    band = (freqs >= float(dom["f_min"]) - 1e-9) & (freqs <= float(dom["f_max"]) + 1e-9)
    bad = band & (~np.isfinite(psd) | (psd <= 0))
    if bad.any():
        raise StrainError(
            f"{ifo} PSD estimate has {int(bad.sum())} zero or non-finite bins in "
            f"[{dom['f_min']}, {dom['f_max']}] Hz (first at {freqs[bad][0]} Hz); the strain is "
            "empty or band-limited there. Check the strain (or psd.noise_curve, which must cover the band), "
            "or restrict domain.f_min/f_max to where it has power."
        )
    curve = noise_curve_for(ifo, settings)
    reference = load_noise_curve(curve, freqs) if curve else None
    nperseg = _samples(seg, dt, "psd.segment_length")
    start, end = psd_window(settings)
    info = {
        "source": cfg["source"],
        "n_averages": welch_segments(len(data), nperseg, min(int(round(overlap * nperseg)), nperseg - 1)),
        "window": window if window != "tukey" else f"tukey(alpha={cfg['tukey_alpha']})",
        "method": method,
        "segment_length": seg,
        "overlap": overlap,
        "strain_start": t0,
        "strain_end": t0 + len(data) * dt,
        "requested_start": start,
        "requested_end": end,
        "sampling_frequency": 1.0 / dt,
        "noise_curve": curve,
    }
    return freqs, psd, reference, info


def _psd_settings(ifo: str, settings: dict) -> dict:
    """Settings that shape the PSD of ``ifo`` (stored in its provenance)."""
    return {
        "ifo": ifo,
        "detector_index": list(settings["detectors"]).index(ifo),
        **stage_settings(settings, "psd"),
        "psd_window": list(psd_window(settings)),
    }


def run_psd_stage(
    ifo: str,
    settings: dict,
    *,
    out_psd: str | Path,
    out_plot: str | Path,
) -> dict:
    """PSD stage for one detector: estimate, then write the PSD file and its plot.

    Parameters
    ----------
    ifo : str
        Detector name.
    settings : dict
        Validated config (see :func:`estimate_psd`).
    out_psd : str or Path
        PSD text file (:func:`write_psd`).
    out_plot : str or Path
        PNG (:func:`plot_psd`).

    Returns
    -------
    dict
        The ``info`` of :func:`estimate_psd`, plus ``median_ratio`` (median over the
        band of estimate / reference, None without a reference).
    """
    freqs, psd, reference, info = estimate_psd(ifo, settings)
    dom = settings["domain"]
    f_min, f_max = float(dom["f_min"]), float(dom["f_max"])
    median_ratio = None
    if reference is not None:
        band = (freqs >= f_min) & (freqs <= f_max) & np.isfinite(reference) & (reference > 0)
        if band.any():
            median_ratio = float(np.median(psd[band] / reference[band]))
    info = {**info, "median_ratio": median_ratio}

    inputs = None
    if settings["psd"]["source"] == "files":
        inputs = {f"strain_{ifo}": settings["psd"]["strain_files"][ifo]}
    prov = make_provenance("psd", _psd_settings(ifo, settings), inputs=inputs)
    write_psd(out_psd, freqs, psd, prov)
    save_figure(psd_figure(freqs, psd, reference, ifo, f_min, f_max), out_plot, dpi=100)

    logger.info(
        "%s PSD from %s strain GPS [%.3f, %.3f) s at %g Hz: %d %s-averaged %s segments of %g s "
        "(overlap %g)",
        ifo, info["source"], info["strain_start"], info["strain_end"], info["sampling_frequency"],
        info["n_averages"], info["method"], info["window"], info["segment_length"], info["overlap"],
    )
    if median_ratio is not None:
        logger.info(
            "%s median estimate/reference (%s) over [%g, %g] Hz: %.4f",
            ifo, info["noise_curve"], f_min, f_max, median_ratio,
        )
    logger.info("wrote %s and %s", out_psd, out_plot)
    return info
