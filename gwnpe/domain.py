"""Frequency-domain grid of the analysed segment."""

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
