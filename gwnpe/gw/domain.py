"""Frequency-domain grid of the analysed segment, and its time origin.

Conventions (bilby's): the analysed segment is ``[trigger_time - (duration - post_trigger_duration),
trigger_time + post_trigger_duration]`` [GPS s]; an FFT of it has its phase origin at the segment
start, while the network and the on-the-fly simulator use the trigger time as the origin
(:func:`to_trigger_origin` moves between the two).

Window convention (bilby's and DINGO's): time-domain strain of the segment is Tukey-windowed with a
roll-off of ``domain.roll_off`` s at each end before its FFT, which lowers the noise power by the
window factor ``w = mean(window**2)`` but leaves a signal inside the flat part unchanged. The
*analysis PSD* is therefore ``w`` times the Welch PSD of the detector, and it is used everywhere a
PSD meets frequency-domain data: the training noise and whitening, the injections, the likelihood.
Real data and training then see the same signal-to-noise ratio (:func:`analysis_psd`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class FrequencyDomain:
    """Uniform frequency grid ``k / duration`` restricted to ``[f_min, f_max]``.

    Attributes
    ----------
    f_min, f_max : float
        Band edges [Hz], inclusive (bilby's ``frequency_mask`` convention).
    duration : float
        Segment duration [s]; ``delta_f = 1 / duration``.
    sampling_frequency : float
        Time-domain sampling rate [Hz]; the full grid runs from 0 to its Nyquist frequency.
    """

    f_min: float
    f_max: float
    duration: float
    sampling_frequency: float

    @property
    def delta_f(self) -> float:
        return 1.0 / self.duration

    @functools.cached_property
    def full_frequencies(self) -> np.ndarray:
        """Grid 0 .. sampling_frequency / 2 [Hz] (bilby's ``frequency_array``)."""
        n = int(round(self.duration * self.sampling_frequency)) // 2 + 1
        return np.arange(n) * self.delta_f

    @property
    def index_range(self) -> tuple[int, int]:
        """First and one-past-last index of the band in :attr:`full_frequencies`."""
        k0 = math.ceil(self.f_min * self.duration - 1e-9)
        k1 = math.floor(self.f_max * self.duration + 1e-9) + 1
        return k0, k1

    @property
    def frequencies(self) -> np.ndarray:
        """Frequencies [Hz] of the band ``f_min <= f <= f_max``."""
        k0, k1 = self.index_range
        return self.full_frequencies[k0:k1]

    def __len__(self) -> int:
        k0, k1 = self.index_range
        return k1 - k0

    def settings(self) -> dict:
        return asdict(self)


def build_domain(config: dict) -> FrequencyDomain:
    """Build the domain from a validated config (its ``domain`` section)."""
    d = config["domain"]
    return FrequencyDomain(
        f_min=float(d["f_min"]),
        f_max=float(d["f_max"]),
        duration=float(d["duration"]),
        sampling_frequency=float(d["sampling_frequency"]),
    )


def tukey_window(n: int, duration: float, roll_off: float) -> np.ndarray:
    """Tukey window of ``n`` samples over ``duration`` [s] with ``roll_off`` [s] at each end (bilby's)."""
    from scipy.signal.windows import tukey

    return tukey(int(n), alpha=min(1.0, 2.0 * float(roll_off) / float(duration)))


def window_factor(domain_settings: dict) -> float:
    """``mean(window**2)`` of the segment's Tukey window for a config's (or model's) ``domain`` section.

    1.0 for settings without ``roll_off`` (models made before the window convention: their training
    noise was not scaled, see :func:`analysis_psd`).
    """
    if domain_settings.get("roll_off") is None:
        return 1.0
    n = int(round(float(domain_settings["duration"]) * float(domain_settings["sampling_frequency"])))
    return float(np.mean(tukey_window(n, domain_settings["duration"], domain_settings["roll_off"]) ** 2))


def analysis_psd(psd, domain_settings: dict):
    """The PSD of windowed segment data: the detector's (Welch) PSD times :func:`window_factor`."""
    return np.asarray(psd, float) * window_factor(domain_settings)


def analysis_segment(trigger_time: float, duration: float, post_trigger_duration: float) -> tuple[float, float]:
    """Start and end [GPS s] of the analysed segment around ``trigger_time`` [GPS s].

    ``duration`` [s] long, ending ``post_trigger_duration`` [s] after the trigger (bilby's convention).
    """
    t = float(trigger_time)
    return t - (float(duration) - float(post_trigger_duration)), t + float(post_trigger_duration)


def segment_start(trigger_time: float, domain_settings: dict) -> float:
    """Start [GPS s] of the analysed segment for a config's ``domain`` section (see :func:`analysis_segment`)."""
    return analysis_segment(trigger_time, domain_settings["duration"], domain_settings["post_trigger_duration"])[0]


def to_trigger_origin(strain, frequencies, trigger_time: float, start_time: float):
    """Move the time origin of frequency-domain strain from ``start_time`` to ``trigger_time`` [GPS s].

    ``strain`` is a complex array (..., n_bins) on ``frequencies`` [Hz].
    """
    shift = trigger_time - start_time
    return strain * np.exp(2j * np.pi * np.remainder(np.asarray(frequencies) * shift, 1.0))
