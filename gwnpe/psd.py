"""Noise power spectral densities: Welch estimation, reading, writing, plotting, whitening.

PSD files are two columns, frequency [Hz] and one-sided PSD [1/Hz], with the
provenance on a comment line (see :mod:`gwnpe.provenance`).

The PSD stage (:func:`run_psd_stage`) estimates each detector's PSD with Welch's
method from strain in the window that ends where the analysed segment starts
(:func:`gwnpe.strain.psd_window`), on the grid ``0 .. sampling_frequency / 2`` with
resolution ``1 / segment_length`` (the analysis grid when ``segment_length`` is null).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .domain import FrequencyDomain
from .errors import ConfigError, StrainError

logger = logging.getLogger(__name__)


def read_psd(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
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
            f"PSD file '{path}' covers {f[0]}-{f[-1]} Hz, not the band {fd[0]}-{fd[-1]} Hz of the domain "
            "(a truncated file, or one made for another domain): rerun the psd stage with this config."
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
            f"(first at {fd[bad][0]} Hz); whitening would divide by zero. Rerun the psd stage, or restrict "
            "domain.f_min/f_max to where the PSD is positive."
        )
    return out


def whiten(h: np.ndarray, asd: np.ndarray, delta_f: float) -> np.ndarray:
    """Whitened frequency series ``h sqrt(4 delta_f) / asd``.

    With this normalisation stationary Gaussian noise has unit variance per real
    component and ``sum |h_w|^2`` is the optimal SNR squared.
    """
    return h * (np.sqrt(4.0 * delta_f) / asd)


# ----------------------------------------------------------------------------- estimation


def _window_spec(window: str, tukey_alpha: float):
    """scipy window argument for a config window name."""
    if window == "tukey":
        return ("tukey", float(tukey_alpha))
    return window


def _samples(seconds: float, dt: float, what: str) -> int:
    n = seconds / dt
    if abs(n - round(n)) > 1e-6 * max(1.0, n):
        raise ConfigError(
            f"{what} = {seconds} s is not a whole number of samples at {1 / dt:.6g} Hz; choose a multiple of "
            f"the sample spacing {dt:.6g} s (e.g. a power of two in s)."
        )
    return int(round(n))


def welch_segments(n_samples: int, nperseg: int, noverlap: int) -> int:
    """Number of Welch segments (periodograms averaged) that scipy uses for ``n_samples``."""
    return (n_samples - noverlap) // (nperseg - noverlap)


def welch_psd(
    data: np.ndarray,
    dt: float,
    segment_length: float,
    overlap: float = 0.5,
    window: str = "hann",
    method: str = "median",
    tukey_alpha: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """One-sided PSD [1/Hz] of a strain series by Welch's method (:func:`scipy.signal.welch`).

    Parameters
    ----------
    data : ndarray
        Contiguous strain samples [dimensionless].
    dt : float
        Sample spacing [s].
    segment_length : float
        Welch segment length [s]; must be a whole number of samples. The frequency
        resolution is ``1 / segment_length``.
    overlap : float
        Fractional overlap of consecutive segments, in ``[0, 1)``.
    window : str
        ``hann``, ``tukey``, ``blackman``, ``hamming`` or ``boxcar``.
    method : str
        ``median`` (robust to glitches; scipy divides by the median's bias for
        chi^2_2-distributed periodograms) or ``mean``.
    tukey_alpha : float
        Tukey shape parameter, used only when ``window == 'tukey'``.

    Returns
    -------
    freqs : ndarray
        ``k / segment_length`` [Hz] for ``k = 0 .. nperseg // 2``.
    psd : ndarray
        One-sided PSD [1/Hz] (``scaling='density'``: the window's power is normalised out,
        so white noise of variance s^2 gives ``2 s^2 dt``).

    Notes
    -----
    The DC and Nyquist bins of a real series are real, so their periodograms are
    chi^2_1 rather than chi^2_2 distributed and scipy does not double them. They are
    rescaled here (x2, and for the median by ``ln 2 / median(chi^2_1)``, the large-K
    bias ratio) so that every bin, including the Nyquist bin that ``f_max`` may reach,
    estimates the same one-sided PSD.

    Each segment's mean is removed (``detrend='constant'``) before windowing. Real strain
    has a large, slowly varying offset; left in, the window's spectral leakage would spread
    it into the lowest bins. Removing it changes only bins within the window's main lobe
    around DC (k <= 1 for Hann; below 1 Hz for segments >= 2 s), far below any f_min,
    and does nothing to zero-mean simulated noise. Linear detrending would also remove real
    low-frequency noise power, so it is not used.
    """
    from scipy.signal import welch

    if method not in ("median", "mean"):
        raise ConfigError(f"psd.method = {method!r}; expected 'median' or 'mean'.")
    if not 0 <= overlap < 1:
        raise ConfigError(f"psd.overlap = {overlap}; expected 0 <= overlap < 1.")
    data = np.asarray(data, dtype=np.float64)
    nperseg = _samples(segment_length, dt, "psd.segment_length")
    noverlap = int(round(overlap * nperseg))
    if noverlap >= nperseg:
        noverlap = nperseg - 1
    if len(data) < nperseg:
        raise StrainError(
            f"{len(data) * dt} s of strain is shorter than one Welch segment (psd.segment_length = "
            f"{segment_length} s). Give more data (psd.duration) or shorten psd.segment_length."
        )
    _, psd = welch(
        data,
        fs=1.0 / dt,
        window=_window_spec(window, tukey_alpha),
        nperseg=nperseg,
        noverlap=noverlap,
        detrend="constant",
        return_onesided=True,
        scaling="density",
        average=method,
    )
    # scipy's one-sided density leaves the DC and Nyquist bins at the two-sided value
    # (S/2: they are not doubled), and for median averaging it applies the chi^2_2 median
    # bias, while these two bins of a real series are real, i.e. chi^2_1. Make them the
    # one-sided PSD like every other bin: f_max may be the Nyquist frequency.
    edge = [0, -1] if nperseg % 2 == 0 else [0]
    if method == "mean":
        psd[edge] *= 2.0
    else:
        from scipy.stats import chi2

        psd[edge] *= 2.0 * np.log(2.0) / chi2(1).median()
    freqs = np.arange(len(psd)) * (1.0 / segment_length)
    return freqs, psd


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
        For bad strain (see :func:`gwnpe.strain.read_strain`) or an estimate with zero or
        non-finite bins inside ``[f_min, f_max]``.
    """
    from .seeding import stage_rng
    from .strain import get_psd_strain, load_noise_curve, noise_curve_for, psd_window

    detectors = list(settings["detectors"])
    if ifo not in detectors:
        raise ConfigError(f"detector {ifo} is not in detectors {detectors}; add it there or ask for one of those.")
    dom, cfg = settings["domain"], settings["psd"]
    rng = stage_rng(settings["seed"], "psd", detectors.index(ifo))
    t0, dt, data = get_psd_strain(ifo, settings, rng)

    seg = float(cfg.get("segment_length") or dom["duration"])
    if len(data) * dt < seg * (1 - 1e-9):
        where = f"file '{cfg['strain_files'][ifo]}'" if cfg["source"] == "files" else f"from {cfg['source']}"
        raise StrainError(
            f"{ifo} strain {where} gives {len(data) * dt:g} s in the PSD window, shorter than one Welch segment "
            f"of psd.segment_length = {seg:g} s. Raise psd.duration to several segments, or shorten "
            "psd.segment_length."
        )
    overlap = float(cfg.get("overlap", 0.5))
    window = cfg.get("window", "hann")
    method = cfg.get("method", "median")
    freqs, psd = welch_psd(data, dt, seg, overlap, window, method, cfg.get("tukey_alpha", 0.1))
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
        "window": window if window != "tukey" else f"tukey(alpha={cfg.get('tukey_alpha', 0.1)})",
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


# ----------------------------------------------------------------------------- outputs


def write_psd(path: str | Path, freqs: np.ndarray, psd: np.ndarray, provenance: dict) -> None:
    """Write a PSD text file that :func:`read_psd` reads back bit for bit.

    The file holds the provenance comment line (:func:`gwnpe.provenance.text_header`),
    a ``# frequency [Hz]  PSD [1/Hz]`` line, then two columns printed with ``%.17g``
    (exact float64 round trip). It is written to a temporary file and moved into place,
    so a failure leaves no (partial) file.

    Parameters
    ----------
    path : str or Path
        Output file (``.txt``).
    freqs : ndarray
        Frequencies [Hz].
    psd : ndarray
        One-sided PSD [1/Hz].
    provenance : dict
        From :func:`gwnpe.provenance.make_provenance`.
    """
    from .provenance import atomic_output, text_header

    freqs = np.asarray(freqs, dtype=np.float64)
    psd = np.asarray(psd, dtype=np.float64)
    if freqs.ndim != 1 or freqs.shape != psd.shape:
        raise ValueError(f"freqs {freqs.shape} and psd {psd.shape} must be 1-d of equal length")
    header = text_header(provenance) + "\n# frequency [Hz]  PSD [1/Hz]"
    with atomic_output(path) as tmp:
        np.savetxt(tmp, np.column_stack([freqs, psd]), fmt="%.17g", header=header, comments="")


def plot_psd(
    path_png: str | Path,
    freqs: np.ndarray,
    psd: np.ndarray,
    reference: np.ndarray | None,
    ifo: str,
    f_min: float,
    f_max: float,
) -> None:
    """PNG of the estimated ASD against the reference curve, log-log, with their ratio.

    Parameters
    ----------
    path_png : str or Path
        Output image, written atomically.
    freqs, psd : ndarray
        Frequencies [Hz] and estimated PSD [1/Hz].
    reference : ndarray or None
        Reference PSD [1/Hz] on ``freqs`` (non-finite bins are not drawn).
    ifo : str
        Detector name, for the title.
    f_min, f_max : float
        Analysis band [Hz]; frequencies outside it are shaded.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .provenance import atomic_output

    freqs = np.asarray(freqs, dtype=np.float64)
    psd = np.asarray(psd, dtype=np.float64)
    has_ref = reference is not None and np.isfinite(reference).any()
    fig = Figure(figsize=(7, 6.5 if has_ref else 4.5))
    FigureCanvasAgg(fig)
    if has_ref:
        ax, axr = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    else:
        ax, axr = fig.subplots(1, 1), None
    ok = (freqs > 0) & np.isfinite(psd) & (psd > 0)
    ax.loglog(freqs[ok], np.sqrt(psd[ok]), lw=0.7, color="C0", label=f"{ifo} Welch estimate")
    if has_ref:
        reference = np.asarray(reference, dtype=np.float64)
        rok = (freqs > 0) & np.isfinite(reference) & (reference > 0)
        ax.loglog(freqs[rok], np.sqrt(reference[rok]), lw=1.2, color="k", ls="--", label="reference curve")
        both = ok & rok
        axr.semilogx(freqs[both], psd[both] / reference[both], lw=0.5, color="C0")
        axr.axhline(1.0, color="k", ls="--", lw=1)
        inband = both & (freqs >= f_min) & (freqs <= f_max)
        if inband.any():
            r = psd[inband] / reference[inband]
            lo, hi = np.percentile(r, [0.5, 99.5])
            axr.set_ylim(min(lo, 0.8) * 0.95, max(hi, 1.2) * 1.05)
        axr.set_ylabel("estimate / reference")
        axr.set_xlabel("Frequency [Hz]")
    else:
        ax.set_xlabel("Frequency [Hz]")
    x_lo = max(freqs[ok][0] if ok.any() else f_min / 2, f_min / 4)
    x_hi = freqs[-1]
    for a in (ax, axr) if axr is not None else (ax,):
        a.axvspan(x_lo, f_min, color="0.85", zorder=0)
        if f_max < x_hi:
            a.axvspan(f_max, x_hi, color="0.85", zorder=0)
        a.set_xlim(x_lo, x_hi)
        a.grid(True, which="both", alpha=0.3)
    inband = ok & (freqs >= f_min) & (freqs <= f_max)
    if inband.any():
        asd_band = np.sqrt(psd[inband])
        ax.set_ylim(asd_band.min() / 3, asd_band.max() * 3)
    ax.set_ylabel(r"ASD [1/$\sqrt{\mathrm{Hz}}$]")
    ax.set_title(f"{ifo} noise ASD (analysis band {f_min:g}-{f_max:g} Hz unshaded)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    with atomic_output(path_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _psd_settings(ifo: str, settings: dict) -> dict:
    """Settings that shape the PSD of ``ifo`` (stored in its provenance)."""
    from .strain import psd_window

    return {
        "ifo": ifo,
        "detector_index": list(settings["detectors"]).index(ifo),
        "detectors": list(settings["detectors"]),
        "seed": settings["seed"],
        "trigger_time": settings["trigger_time"],
        "domain": dict(settings["domain"]),
        "psd": dict(settings["psd"]),
        "psd_window": list(psd_window(settings)),
    }


def run_psd_stage(
    ifo: str,
    settings: dict,
    out_psd: str | Path,
    out_plot: str | Path,
    prior_provenance: dict | None = None,
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
    prior_provenance : dict, optional
        Extra provenance (e.g. of the config or an upstream step) stored under the
        ``upstream`` key of the output's provenance.

    Returns
    -------
    dict
        The ``info`` of :func:`estimate_psd`, plus ``median_ratio`` (median over the
        band of estimate / reference, None without a reference).
    """
    from .provenance import make_provenance

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
    if prior_provenance is not None:
        prov["upstream"] = prior_provenance
    write_psd(out_psd, freqs, psd, prov)
    plot_psd(out_plot, freqs, psd, reference, ifo, f_min, f_max)

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
