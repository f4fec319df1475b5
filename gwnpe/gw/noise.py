"""Noise: whitening, Welch PSD estimates, reference noise curves and simulated Gaussian noise.

Conventions
-----------
* PSDs are one-sided [1/Hz], ASDs their square roots [1/sqrt(Hz)].
* Whitened frequency series are ``h sqrt(4 delta_f) / ASD``: stationary Gaussian noise then has
  unit variance per real component and ``sum |h_w|^2`` is the optimal SNR squared.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

from ..errors import ConfigError, StrainError
from .domain import FrequencyDomain

logger = logging.getLogger(__name__)


def whiten(h: np.ndarray, asd: np.ndarray, delta_f: float) -> np.ndarray:
    """Whitened frequency series ``h sqrt(4 delta_f) / asd``.

    With this normalisation stationary Gaussian noise has unit variance per real
    component and ``sum |h_w|^2`` is the optimal SNR squared.
    """
    return h * (np.sqrt(4.0 * delta_f) / asd)


def psd_on_domain(frequencies: np.ndarray, psd: np.ndarray, domain: FrequencyDomain, source: str = "the PSD") -> np.ndarray:
    """PSD [1/Hz] on the domain's band, from a PSD on ``frequencies`` [Hz] (interpolated if the grids differ).

    Parameters
    ----------
    frequencies, psd : ndarray
        The PSD's grid [Hz] and values [1/Hz].
    domain : FrequencyDomain
    source : str
        What the PSD is (a file name), for messages.

    Raises
    ------
    StrainError
        If the PSD does not cover the band or has zero/non-finite values inside it.
    """
    f = np.asarray(frequencies, dtype=np.float64)
    fd = domain.frequencies
    if f[0] > fd[0] + 1e-9 or f[-1] < fd[-1] - 1e-9:
        raise StrainError(
            f"{source} covers {f[0]}-{f[-1]} Hz, not the band {fd[0]}-{fd[-1]} Hz of the domain "
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
            f"{source} has {bad.sum()} zero or non-finite bins inside {fd[0]}-{fd[-1]} Hz "
            f"(first at {fd[bad][0]} Hz); whitening would divide by zero. Rerun the psd stage, or restrict "
            "domain.f_min/f_max to where the PSD is positive."
        )
    return out


# ----------------------------------------------------------------------------- Welch


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


# ----------------------------------------------------------------------------- noise curves


def bilby_noise_curve_dir() -> Path:
    """Folder of the noise curves shipped with bilby (found without importing bilby)."""
    spec = importlib.util.find_spec("bilby")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("bilby is not installed; cannot look up its noise curves.")
    return Path(list(spec.submodule_search_locations)[0]) / "gw" / "detector" / "noise_curves"


def _curve_is_asd(name: str) -> bool:
    """Whether a curve file holds an ASD: by name (``*_psd*`` -> PSD; ``*asd*`` and bilby's
    ``aplus.txt`` -> ASD; other user files -> PSD)."""
    low = Path(name).name.lower()
    if "psd" in low:
        return False
    return "asd" in low or low == "aplus.txt"


def load_noise_curve(name_or_path: str | Path, frequencies: np.ndarray) -> np.ndarray:
    """One-sided PSD [1/Hz] of a reference noise curve at ``frequencies``.

    Parameters
    ----------
    name_or_path : str or Path
        Either the file name of a curve shipped with bilby (``aLIGO_O4_high_asd.txt``,
        ``aplus.txt``, ... in ``bilby/gw/detector/noise_curves``) or a path to a two-column
        text file, frequency [Hz] and ASD [1/sqrt(Hz)] or PSD [1/Hz]. The column is an ASD
        if the file name contains ``asd`` (and for bilby's ``aplus.txt``), a PSD otherwise
        (names containing ``psd`` always are). A prefix ``asd:`` or ``psd:`` (e.g.
        ``asd:my_curve.txt``) overrides the guess. An existing path wins over a bilby name.
    frequencies : array_like
        Frequencies [Hz] at which to evaluate the curve.

    Returns
    -------
    psd : ndarray
        PSD [1/Hz], interpolated linearly in log(f)-log(PSD). Frequencies outside the
        curve's range (and f <= 0) get ``inf``, so that such bins carry no weight and
        simulated noise is zero there; never 0 or NaN.

    Raises
    ------
    ConfigError
        If the curve is not found (the message lists bilby's curves) or is not a
        two-column file of positive values.
    """
    spec = str(name_or_path)
    kind = None
    if spec[:4].lower() in ("asd:", "psd:"):
        kind, spec = spec[:3].lower(), spec[4:]
    path = Path(spec)
    if not path.is_file():
        bilby_dir = bilby_noise_curve_dir()
        if (bilby_dir / path.name).is_file() and path.name == spec:
            path = bilby_dir / path.name
        else:
            available = sorted(p.name for p in bilby_dir.glob("*.txt"))
            raise ConfigError(
                f"noise curve '{name_or_path}' is neither an existing file nor a bilby curve. "
                f"bilby ships: {', '.join(available)}. Set psd.noise_curve to one of these or to "
                "a two-column (frequency [Hz], ASD or PSD) file."
            )
    is_asd = (kind == "asd") if kind else _curve_is_asd(path.name)
    try:
        curve = np.loadtxt(path, ndmin=2)
    except ValueError as exc:
        raise ConfigError(f"noise curve '{path}' is not a two-column text file: {exc}") from exc
    if curve.shape[1] != 2 or curve.shape[0] < 2:
        raise ConfigError(f"noise curve '{path}' has shape {curve.shape}; expected >= 2 rows of (frequency, value).")
    f_c, v_c = curve[:, 0], curve[:, 1]
    keep = (f_c > 0) & (v_c > 0) & np.isfinite(f_c) & np.isfinite(v_c)
    f_c, v_c = f_c[keep], v_c[keep]
    order = np.argsort(f_c)
    f_c, v_c = f_c[order], v_c[order]
    if len(f_c) < 2:
        raise ConfigError(f"noise curve '{path}' has fewer than two positive, finite rows.")
    if is_asd and np.median(v_c) < 1e-35 or not is_asd and np.median(v_c) > 1e-30:
        logger.warning(
            "noise curve %s read as %s but its values (median %.3g) look like %s; use an "
            "'asd:' or 'psd:' prefix if this is wrong", path, "ASD" if is_asd else "PSD",
            np.median(v_c), "a PSD" if is_asd else "an ASD",
        )
    psd_c = v_c**2 if is_asd else v_c
    f = np.atleast_1d(np.asarray(frequencies, dtype=np.float64))
    out = np.full(f.shape, np.inf)
    inside = (f >= f_c[0]) & (f <= f_c[-1])
    out[inside] = np.exp(np.interp(np.log(f[inside]), np.log(f_c), np.log(psd_c)))
    return out


# ----------------------------------------------------------------------------- simulated noise


def simulate_noise(
    psd_freqs: np.ndarray,
    psd_values: np.ndarray,
    duration: float,
    sampling_frequency: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Stationary Gaussian noise [strain] coloured by a one-sided PSD.

    The noise is drawn in the frequency domain on the grid ``k / duration``: with
    ``h~(f) = dt * FFT(h)``, the real and imaginary parts of each bin are independent
    ``N(0, PSD * T / 4)`` (bilby's convention, ``<|h~|^2> = T PSD / 2``); the DC and
    Nyquist bins are real with variance ``T PSD / 2``. The inverse FFT then gives a
    series whose Welch estimate (scipy, ``scaling='density'``) recovers the PSD. The
    noise is periodic over ``duration``.

    Parameters
    ----------
    psd_freqs : array_like
        Frequencies [Hz] of ``psd_values``; if they are not the grid ``k / duration``,
        the PSD is interpolated linearly onto it.
    psd_values : array_like
        One-sided PSD [1/Hz], >= 0. Zero or non-finite bins (e.g. ``inf`` outside a
        curve's range, or pycbc's analytic PSDs that are 0 at the last bin) and
        frequencies outside ``psd_freqs`` get zero noise, never NaN.
    duration : float
        Length T [s]; ``duration * sampling_frequency`` must be a whole number.
    sampling_frequency : float
        Sampling rate [Hz].
    rng : numpy.random.Generator
        Source of randomness; the output is a deterministic function of its state.

    Returns
    -------
    ndarray of float64
        ``duration * sampling_frequency`` samples [strain].
    """
    n_float = duration * sampling_frequency
    n = int(round(n_float))
    if abs(n - n_float) > 1e-6 or n < 2:
        raise ConfigError(
            f"duration x sampling_frequency = {duration} x {sampling_frequency} = {n_float} "
            "is not a whole number (>= 2) of samples."
        )
    f_in = np.asarray(psd_freqs, dtype=np.float64)
    p_in = np.asarray(psd_values, dtype=np.float64)
    if f_in.shape != p_in.shape:
        raise ValueError(f"psd_freqs {f_in.shape} and psd_values {p_in.shape} differ in shape")
    if np.any(p_in < 0):
        raise StrainError("the PSD has negative values; cannot simulate noise from it.")
    n_f = n // 2 + 1
    grid = np.arange(n_f) / duration
    if len(f_in) == n_f and np.allclose(f_in, grid, rtol=0, atol=1e-9 / duration):
        psd = p_in.copy()
    else:
        p_nan = np.where(np.isfinite(p_in) & (p_in > 0), p_in, np.nan)
        psd = np.interp(grid, f_in, p_nan, left=np.nan, right=np.nan)
    psd = np.where(np.isfinite(psd) & (psd > 0), psd, 0.0)

    sigma = np.sqrt(psd * duration / 4.0)
    re = rng.standard_normal(n_f)
    im = rng.standard_normal(n_f)
    htilde = sigma * (re + 1j * im)
    # DC (and Nyquist for even n) bins are real: all the variance in the real part.
    htilde[0] = np.sqrt(2.0) * sigma[0] * re[0]
    if n % 2 == 0:
        htilde[-1] = np.sqrt(2.0) * sigma[-1] * re[-1]
    return np.fft.irfft(htilde, n=n) * sampling_frequency


def varied_psd(frequencies: np.ndarray, psd: np.ndarray, rng: np.random.Generator, scale_sigma: float = 0.1,
               slope_sigma: float = 0.1, max_lines: int = 3, line_height: tuple[float, float] = (3.0, 100.0),
               line_width: float = 0.5, pivot: float = 100.0) -> tuple[np.ndarray, dict]:
    """A PSD varied as detector noise varies across an observing run: an overall scale (log-normal,
    ``scale_sigma`` in the natural log of the ASD), a tilt (ASD times ``(f / pivot)**slope``, ``slope ~
    N(0, slope_sigma)``) and 0..``max_lines`` spectral lines (Lorentzians of half width ``line_width`` Hz
    at uniform frequencies inside ``frequencies``, peak PSD ratio log-uniform in ``line_height``).

    Returns the PSD and the draw (``scale``, ``slope``, ``line_frequencies``, ``line_heights``).
    """
    f = np.asarray(frequencies, float)
    scale = float(np.exp(rng.normal(0.0, scale_sigma)))
    slope = float(rng.normal(0.0, slope_sigma))
    n_lines = int(rng.integers(0, max_lines + 1)) if max_lines > 0 else 0
    fl = rng.uniform(f[f > 0].min(), f.max(), n_lines) if n_lines else np.zeros(0)
    hl = np.exp(rng.uniform(np.log(line_height[0]), np.log(line_height[1]), n_lines)) if n_lines else np.zeros(0)
    ratio = np.ones_like(f)
    for f0, h in zip(fl, hl):
        ratio += (h - 1.0) / (1.0 + ((f - f0) / line_width) ** 2)
    with np.errstate(divide="ignore"):
        tilt = np.where(f > 0, (np.maximum(f, 1e-12) / pivot) ** (2 * slope), 1.0)
    out = np.asarray(psd, float) * scale**2 * tilt * ratio
    return out, {"scale": scale, "slope": slope, "line_frequencies": fl.tolist(), "line_heights": hl.tolist()}


def event_welch_psd(data: np.ndarray, dt: float, domain: FrequencyDomain, source: str = "the Welch PSD") -> np.ndarray:
    """PSD [1/Hz] on ``domain``'s band of a strain series by the event convention: Welch segments of
    ``domain.duration``, 50% overlap, Hann window, median average (as bilby_pipe and the psd stage's defaults)."""
    freqs, psd = welch_psd(data, dt, domain.duration, 0.5, "hann", "median")
    return psd_on_domain(freqs, psd, domain, source=source)
