"""Strain files: the PSD estimation window, readers (GWOSC HDF5, GWF, TXT) and GWOSC downloads.

Conventions
-----------
* Times are GPS seconds [s]; a strain series is ``(t0, dt, data)`` with sample ``i``
  at ``t0 + i * dt`` and ``data`` a float64 array [strain, dimensionless].
* PSDs are one-sided [1/Hz], ASDs their square roots [1/sqrt(Hz)].
* The analysed segment is ``[trigger_time - (duration - post_trigger_duration),
  trigger_time + post_trigger_duration]`` (bilby's convention, config ``domain``); the
  PSD window is the ``psd.duration`` seconds that end where it starts, so the estimate
  never sees the analysed data.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

from ..errors import StrainError
from .domain import analysis_segment as _segment

logger = logging.getLogger(__name__)

#: Suffixes read with the GWOSC HDF5 reader (``strain/Strain`` with ``Xstart``, ``Xspacing``).
HDF5_SUFFIXES = (".hdf5", ".h5", ".hdf")
#: Suffix -> gwpy format name, for files whose format gwpy cannot guess from bad contents.
_GWPY_FORMATS = {".gwf": "gwf", ".txt": "txt", ".dat": "txt", ".csv": "csv"}
#: Tolerance, in samples, when placing a GPS time on a sample grid (GPS float64 round-off).
_SAMPLE_TOL = 1e-2


# ----------------------------------------------------------------------------- window


def analysis_segment(settings: dict) -> tuple[float, float]:
    """Start and end [GPS s] of the analysed segment of a config (``trigger_time`` and ``domain``);
    see :func:`gwnpe.gw.domain.analysis_segment`."""
    dom = settings["domain"]
    return _segment(settings["trigger_time"], dom["duration"], dom["post_trigger_duration"])


def psd_window(settings: dict) -> tuple[float, float]:
    """GPS window [s] of the strain used for the PSD estimate.

    The window is ``psd.duration`` seconds long and ends exactly where the analysed
    segment (:func:`analysis_segment`) starts: adjacent to it, never overlapping.

    Parameters
    ----------
    settings : dict
        Validated config (keys ``trigger_time``, ``domain`` and ``psd``).

    Returns
    -------
    start, end : float
        Half-open window ``[start, end)`` [GPS s].
    """
    seg_start, _ = analysis_segment(settings)
    return seg_start - float(settings["psd"]["duration"]), seg_start


# ----------------------------------------------------------------------------- reading


#: What each purpose of :func:`read_strain` calls its window, and how to fix data that do not fit it.
_PURPOSES = {
    None: {
        "window": "the requested window",
        "cover": "Provide a file covering that window",
        "finite": "Use a file with valid data there (or another trigger time)",
        "key": "the path",
    },
    "psd": {
        "window": "the PSD window",
        "cover": ("Provide a file covering that window (the psd.duration s that end where the analysed "
                  "segment starts), or shorten psd.duration"),
        "finite": "Choose a window with valid data (trigger_time, psd.duration) or another file",
        "key": "psd.strain_files.{ifo}",
    },
}


def _crop(path, ifo, t0: float, dt: float, n: int, start: float, end: float, purpose: str | None = None) -> tuple[int, int]:
    """Index range ``[i0, i1)`` of the samples with times in ``[start, end)``; error if not covered."""
    i0 = math.ceil((start - t0) / dt - _SAMPLE_TOL)
    i1 = math.ceil((end - t0) / dt - _SAMPLE_TOL)
    if i0 < 0 or i1 > n or i1 <= i0:
        words = _PURPOSES[purpose]
        raise StrainError(
            f"{ifo} strain file '{path}' covers GPS [{t0:.6f}, {t0 + n * dt:.6f}) s but {words['window']} "
            f"needs [{start:.6f}, {end:.6f}) s. {words['cover']}."
        )
    return i0, i1


def _check_finite(path, ifo, t0: float, dt: float, data: np.ndarray, purpose: str | None = None) -> None:
    bad = ~np.isfinite(data)
    if bad.any():
        first = int(np.argmax(bad))
        words = _PURPOSES[purpose]
        raise StrainError(
            f"{ifo} strain file '{path}' has {int(bad.sum())} NaN/inf samples in {words['window']} "
            f"(first at GPS {t0 + first * dt:.6f} s): the data have a gap or are flagged there. "
            f"{words['finite']}."
        )


def _corrupt_hint(path: Path, ifo: str, purpose: str | None) -> str:
    """How to fix a strain file that h5py cannot open: a text file with an HDF5 suffix, or a damaged file."""
    try:
        head = path.read_bytes()[:1024]
    except OSError:
        head = b""
    key = _PURPOSES[purpose]["key"].format(ifo=ifo)
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return (
            "it looks like a text file: give it a .txt suffix so that it is read as two columns "
            f"(GPS time [s], strain), or point {key} to a GWOSC HDF5 file"
        )
    return (
        "the file is damaged or truncated (an interrupted download?): download it again, or point "
        f"{key} to a GWOSC HDF5 file (strain/Strain with Xstart and Xspacing attributes)"
    )


def _read_gwosc_hdf5(path: Path, ifo: str, start: float | None = None, end: float | None = None,
                     purpose: str | None = None):
    """Read ``strain/Strain`` of a GWOSC HDF5 file, only the samples in ``[start, end)``.

    Without ``start``/``end`` the whole file is read. Returns ``(t0, dt, data)``.
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "strain/Strain" not in f:
                raise StrainError(
                    f"{ifo} strain file '{path}' is HDF5 but has no 'strain/Strain' dataset "
                    f"(GWOSC format; it has {sorted(f)}); convert it or use a format gwpy reads (GWF, TXT)."
                )
            dset = f["strain/Strain"]
            try:
                t0 = float(dset.attrs["Xstart"])
                dt = float(dset.attrs["Xspacing"])
            except KeyError as exc:
                raise StrainError(
                    f"{ifo} strain file '{path}': 'strain/Strain' lacks the attribute {exc} "
                    "(GWOSC files carry Xstart [GPS s] and Xspacing [s]); add it or use the original GWOSC file."
                ) from None
            if not (np.isfinite(t0) and np.isfinite(dt) and dt > 0):
                raise StrainError(
                    f"{ifo} strain file '{path}' has invalid Xstart={t0} / Xspacing={dt}; Xstart must be the GPS "
                    "time [s] of the first sample and Xspacing the positive sample spacing [s]."
                )
            n = dset.shape[0]
            if start is None:
                i0, i1 = 0, n
            else:
                i0, i1 = _crop(path, ifo, t0, dt, n, start, end, purpose)
            data = np.asarray(dset[i0:i1], dtype=np.float64)
    except StrainError:
        raise
    except (OSError, ValueError, TypeError) as exc:
        raise StrainError(
            f"{ifo} strain file '{path}' is not a readable HDF5 file ({exc}); {_corrupt_hint(path, ifo, purpose)}."
        ) from exc
    return t0 + i0 * dt, dt, data


def _read_gwpy(path: Path, ifo: str, channel: str | None):
    """Read a whole file with gwpy; return ``(times, data)`` (times may be irregular)."""
    from gwpy.timeseries import TimeSeries

    fmt = _GWPY_FORMATS.get(path.suffix.lower())
    if fmt == "gwf" and not channel:
        raise StrainError(
            f"{ifo} strain file '{path}' is a GWF frame file, which needs a channel name: "
            f"set psd.channels.{ifo} (e.g. '{ifo}:GDS-CALIB_STRAIN')."
        )
    if fmt in ("txt", "csv"):
        channel = None  # text files hold one unnamed series; a configured channel is irrelevant
    args = (channel,) if channel else ()
    kwargs = {"format": fmt} if fmt else {}
    try:
        # gap="ignore": keep irregular sampling so that gaps are reported below, by us.
        ts = TimeSeries.read(str(path), *args, gap="ignore", **kwargs)
    except Exception as exc:  # gwpy raises many types (ValueError, RuntimeError, IORegistryError, ...)
        raise StrainError(
            f"{ifo} strain file '{path}' could not be read"
            + (f" (channel '{channel}')" if channel else "")
            + f": {type(exc).__name__}: {exc}. Check the file and its format: GWOSC HDF5 (.hdf5), GWF with "
            "a channel name (psd.channels), or text with columns GPS time [s] and strain (.txt)."
        ) from exc
    times = np.asarray(ts.times.value, dtype=np.float64)
    return times, np.asarray(ts.value, dtype=np.float64)


def _regular_grid(path, ifo, times: np.ndarray) -> tuple[float, float]:
    """``(t0, dt)`` of uniformly spaced times; StrainError naming the first gap otherwise."""
    if len(times) < 2:
        raise StrainError(
            f"{ifo} strain file '{path}' has {len(times)} samples; not a time series. Give a file with the "
            "strain samples of the window."
        )
    diffs = np.diff(times)
    dt = (times[-1] - times[0]) / (len(times) - 1)
    bad = np.abs(diffs - np.median(diffs)) > _SAMPLE_TOL * abs(np.median(diffs))
    if bad.any() or not dt > 0:
        k = int(np.argmax(bad)) if bad.any() else 0
        raise StrainError(
            f"{ifo} strain file '{path}' is not uniformly sampled: a gap or jump of "
            f"{diffs[k]:.6g} s after GPS {times[k]:.6f} s (typical spacing {np.median(diffs):.6g} s). "
            "Welch's method needs contiguous data: choose a window without gaps."
        )
    return float(times[0]), float(dt)


def read_strain(
    path: str | Path, ifo: str, start: float, end: float, channel: str | None = None, purpose: str | None = None
) -> tuple[float, float, np.ndarray]:
    """Strain samples with GPS times in ``[start, end)`` from one file.

    GWOSC HDF5 files (``.hdf5``/``.h5``/``.hdf`` with a ``strain/Strain`` dataset and
    ``Xstart`` [GPS s] / ``Xspacing`` [s] attributes) are read with h5py, only the
    needed slice. Anything else (GWF, TXT/CSV with columns time [GPS s] and strain,
    gwpy's own HDF5) goes through :meth:`gwpy.timeseries.TimeSeries.read`.

    Parameters
    ----------
    path : str or Path
        Strain file.
    ifo : str
        Detector name, used in messages.
    start, end : float
        Window [GPS s]; samples with ``start <= t < end`` are returned.
    channel : str, optional
        Channel name; required for GWF files.
    purpose : {None, "psd"}
        What the window is for, so that error messages name the right settings: ``"psd"`` for the
        PSD stage (``psd.strain_files``, ``psd.duration``), None for anything else (e.g. the
        analysed segment at inference).

    Returns
    -------
    t0 : float
        GPS time [s] of the first returned sample (``>= start``).
    dt : float
        Sample spacing [s].
    data : ndarray of float64
        Strain samples [dimensionless].

    Raises
    ------
    StrainError
        If the file is missing, unreadable, does not cover the window, has NaN/inf
        samples or gaps inside it, or is a GWF file and no channel was given.
    """
    if purpose not in _PURPOSES:
        raise ValueError(f"purpose must be one of {list(_PURPOSES)}, got {purpose!r}")
    path = Path(path)
    if not path.is_file():
        raise StrainError(
            f"{ifo} strain file '{path}' does not exist; check {_PURPOSES[purpose]['key'].format(ifo=ifo)} "
            f"(relative paths are relative to the working directory '{Path.cwd()}')."
        )
    if path.suffix.lower() in HDF5_SUFFIXES and _is_gwosc_hdf5(path):
        t0, dt, data = _read_gwosc_hdf5(path, ifo, start, end, purpose)
    else:
        times, values = _read_gwpy(path, ifo, channel)
        t_first, dt = _regular_grid(path, ifo, times)
        i0, i1 = _crop(path, ifo, t_first, dt, len(values), start, end, purpose)
        t0, data = t_first + i0 * dt, values[i0:i1]
    _check_finite(path, ifo, t0, dt, data, purpose)
    logger.debug("read %s strain %s: GPS [%.6f, %.6f) s at %.6g Hz", ifo, path, t0, t0 + len(data) * dt, 1 / dt)
    return t0, dt, data


def _is_gwosc_hdf5(path: Path) -> bool:
    """True if ``path`` is HDF5 with ``strain/Strain``; corrupt files are routed here too,
    so that the h5py error message is the one reported."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "strain/Strain" in f
    except OSError:
        return True


# ----------------------------------------------------------------------------- GWOSC


def fetch_gwosc(
    ifo: str, start: float, end: float, cache_dir: str | Path, sample_rate: int = 4096
) -> tuple[float, float, np.ndarray]:
    """Open strain from GWOSC for ``[start, end)`` (downloads only what is not cached).

    File URLs come from :func:`gwosc.locate.get_urls` (HDF5 format); each file is
    downloaded with :func:`urllib.request.urlopen` into ``cache_dir`` through a temporary
    file renamed into place, so an interrupted download never leaves a file that looks
    complete. Files already in ``cache_dir`` are reused. The files are read with the
    GWOSC HDF5 reader, joined (they must be contiguous) and cropped.

    Parameters
    ----------
    ifo : str
        Detector name (``H1``, ``L1``, ``V1``, ...).
    start, end : float
        Window [GPS s].
    cache_dir : str or Path
        Folder for the downloaded files.
    sample_rate : int
        GWOSC sampling rate [Hz], 4096 or 16384.

    Returns
    -------
    t0, dt, data
        As :func:`read_strain`.

    Raises
    ------
    StrainError
        If GWOSC has no data for the window, a download fails, or the data have gaps or
        NaNs inside the window.
    """
    import gwosc.locate

    try:
        urls = gwosc.locate.get_urls(ifo, start, end, sample_rate=sample_rate)
    except Exception as exc:  # network errors, ValueError for no data
        raise StrainError(
            f"GWOSC lookup of {ifo} strain for GPS [{start}, {end}) s failed: {type(exc).__name__}: {exc}. "
            "psd.source 'gwosc' needs network access; use 'files' with downloaded data otherwise."
        ) from exc
    if not urls:
        raise StrainError(f"GWOSC has no {ifo} strain for GPS [{start}, {end}) s.")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    pieces = []
    for url in urls:
        name = Path(urllib.parse.urlparse(url).path).name
        dest = cache_dir / name
        if dest.is_file():
            logger.info("using cached %s", dest)
        else:
            logger.info("downloading %s -> %s", url, dest)
            tmp = dest.with_name(f".{name}.part-{os.getpid()}")
            try:
                with urllib.request.urlopen(url, timeout=120) as resp, open(tmp, "wb") as out:
                    shutil.copyfileobj(resp, out)
                os.replace(tmp, dest)
            except OSError as exc:
                raise StrainError(f"download of {ifo} strain {url} failed: {exc}") from exc
            finally:
                if tmp.exists():
                    tmp.unlink()
        t0, dt, data = _read_gwosc_hdf5(dest, ifo)
        lo = max(0, math.ceil((start - t0) / dt - _SAMPLE_TOL))
        hi = min(len(data), math.ceil((end - t0) / dt - _SAMPLE_TOL))
        if hi > lo:
            pieces.append((t0 + lo * dt, dt, data[lo:hi], dest))
    if not pieces:
        raise StrainError(f"the GWOSC files {urls} do not overlap GPS [{start}, {end}) s.")
    pieces.sort(key=lambda p: p[0])
    t0, dt = pieces[0][0], pieces[0][1]
    t_next = t0
    for t_p, dt_p, d_p, src in pieces:
        if abs(dt_p - dt) > 1e-12 * dt or abs(t_p - t_next) > _SAMPLE_TOL * dt:
            raise StrainError(
                f"GWOSC {ifo} files are not contiguous: '{src}' starts at GPS {t_p:.6f} s "
                f"(spacing {dt_p} s) but the previous data end at {t_next:.6f} s (spacing {dt} s)."
            )
        t_next = t_p + len(d_p) * dt
    data = np.concatenate([p[2] for p in pieces])
    label = f"GWOSC files {[str(p[3]) for p in pieces]}"
    i0, i1 = _crop(label, ifo, t0, dt, len(data), start, end, "psd")
    t0, data = t0 + i0 * dt, data[i0:i1]
    _check_finite(label, ifo, t0, dt, data, "psd")
    return t0, dt, data


