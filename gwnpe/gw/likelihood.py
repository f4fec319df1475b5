"""bilby likelihoods of gwnpe's data: the same strain, PSDs, band, waveform model and prior.

Interferometers are filled from frequency-domain strain whose phase origin is the segment start
(bilby's convention for an FFT of the segment), PSDs are taken on the exact grid, and the band mask
is ``f_min <= f <= f_max`` in both codes. The waveform generator is bilby's
``lal_binary_black_hole`` with the run's approximant and reference frequency, which is also what
gwnpe's bank and training set are made with.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import GwnpeError
from .domain import FrequencyDomain

logger = logging.getLogger(__name__)


def waveform_generator(domain: FrequencyDomain, approximant: str, reference_frequency: float, start_time: float,
                       relative_binning: bool = False):
    """bilby WaveformGenerator with gwnpe's conventions (LAL via ``lal_binary_black_hole``)."""
    import bilby

    source = (bilby.gw.source.lal_binary_black_hole_relative_binning if relative_binning
              else bilby.gw.source.lal_binary_black_hole)
    return bilby.gw.WaveformGenerator(
        duration=domain.duration,
        sampling_frequency=domain.sampling_frequency,
        start_time=start_time,
        frequency_domain_source_model=source,
        parameter_conversion=bilby.gw.conversion.convert_to_lal_binary_black_hole_parameters,
        waveform_arguments={"waveform_approximant": approximant, "reference_frequency": float(reference_frequency),
                            "minimum_frequency": domain.f_min, "maximum_frequency": domain.f_max},
    )


def interferometers(domain: FrequencyDomain, strain: dict, psds: dict, start_time: float):
    """bilby InterferometerList holding band-limited FD strain [1/Hz] and PSDs [1/Hz] on the band.

    Bins outside the band are zero (strain) or the edge value (PSD); bilby masks them out.
    """
    import bilby

    k0, k1 = domain.index_range
    nf = len(domain.full_frequencies)
    ifos = bilby.gw.detector.InterferometerList(list(strain))
    for ifo in ifos:
        s = np.zeros(nf, complex)
        s[k0:k1] = np.asarray(strain[ifo.name], complex)
        psd_band = np.asarray(psds[ifo.name], float)
        p = np.empty(nf)
        p[k0:k1] = psd_band
        p[:k0], p[k1:] = psd_band[0], psd_band[-1]
        ifo.power_spectral_density = bilby.gw.detector.PowerSpectralDensity(
            frequency_array=domain.full_frequencies.copy(), psd_array=p)
        ifo.set_strain_data_from_frequency_domain_strain(
            s, sampling_frequency=domain.sampling_frequency, duration=domain.duration, start_time=start_time)
        ifo.minimum_frequency = domain.f_min
        ifo.maximum_frequency = domain.f_max
    return ifos


#: Approximants with only the (2,2) mode and no precession: the only ones for which bilby's phase
#: marginalisation is exact.
QUADRUPOLE_ALIGNED = ("IMRPhenomD", "IMRPhenomXAS", "SEOBNRv4_ROM", "TaylorF2")


#: Parameters bilby's GravitationalWaveTransient can marginalise over, by config name.
MARGINALIZED = {"distance": "luminosity_distance", "phase": "phase", "time": "geocent_time"}


#: Sampling frequency [Hz] whose time grid (spacing 2 / f = 0.12 ms) exact time marginalisation
#: sums over: a Riemann sum of a peak of width sigma on spacing h errs by about 2 exp(-2 pi^2 sigma^2 / h^2),
#: below 0.3% for sigma >= 0.07 ms (the timing accuracy of a network SNR of about 30 in this band);
#: bilby reconstructs the time on the same grid.
TIME_GRID_SAMPLING_FREQUENCY = 16384.0


def time_grid_domain(domain: FrequencyDomain) -> FrequencyDomain:
    """The domain with the same band and duration and a sampling frequency of at least
    :data:`TIME_GRID_SAMPLING_FREQUENCY`: bilby's time marginalisation sums over a grid of spacing
    2 / sampling_frequency, which is 2 ms at the data's 1024 Hz (too coarse for a 0.1 ms peak)."""
    fs = max(float(domain.sampling_frequency), TIME_GRID_SAMPLING_FREQUENCY)
    return FrequencyDomain(domain.f_min, domain.f_max, domain.duration, fs)


def network_parameters(priors, marginalized_names) -> list[str]:
    """The sampled parameters of ``priors`` a network infers when importance sampling marginalises
    over ``marginalized_names`` (config names of :data:`MARGINALIZED`)."""
    from .priors import sampled_keys

    drop = {MARGINALIZED[m] for m in marginalized_names}
    return [k for k in sampled_keys(priors) if k not in drop]


def marginalized(requested, priors) -> list[str]:
    """The requested marginalisations (``distance``, ``phase``, ``time``) whose parameter ``priors`` samples."""
    from .priors import sampled_keys

    free = set(sampled_keys(priors))
    return [m for m in requested if MARGINALIZED[m] in free]


def build_likelihood(domain: FrequencyDomain, strain: dict, psds: dict, start_time: float, approximant: str,
                     reference_frequency: float, priors=None, relative_binning: bool = False,
                     fiducial_parameters: dict | None = None, epsilon: float = 0.5,
                     marginalization: list[str] = (), distance_lookup_table=None, jitter_time: bool = True):
    """bilby GravitationalWaveTransient (or its relative-binning twin) for gwnpe data.

    ``priors`` must use absolute GPS ``geocent_time`` (see :func:`gwnpe.gw.priors.to_absolute_time`).
    ``marginalization`` names ``distance``, ``phase`` and/or ``time``; bilby then fixes those
    parameters in ``priors`` (pass a copy to keep the original). The distance lookup table is read
    from, or built once into, ``distance_lookup_table`` (a path; bilby's default would be a hidden
    file in the working directory). ``jitter_time`` is bilby's random offset of the time grid, which
    a sampler needs on a coarse grid; importance sampling turns it off and uses a fine grid instead
    (:func:`time_grid_domain`).
    """
    import bilby

    margs = set(marginalization)
    unknown = margs - {"distance", "phase", "time"}
    if unknown:
        raise GwnpeError(f"cannot marginalise over {sorted(unknown)}: bilby marginalises over distance, phase and time.")
    if "phase" in margs and approximant not in QUADRUPOLE_ALIGNED:
        raise GwnpeError(f"phase marginalisation is exact only for (2,2)-only aligned-spin approximants "
                         f"{list(QUADRUPOLE_ALIGNED)}, not {approximant}; sample the phase instead.")
    if margs and priors is None:
        raise GwnpeError("marginalisation needs the priors of the marginalised parameters.")
    ifos = interferometers(domain, strain, psds, start_time)
    wfg = waveform_generator(domain, approximant, reference_frequency, start_time, relative_binning)
    kwargs = {"interferometers": ifos, "waveform_generator": wfg, "priors": priors,
              "distance_marginalization": "distance" in margs, "phase_marginalization": "phase" in margs,
              "time_marginalization": "time" in margs}
    if "time" in margs:
        kwargs["jitter_time"] = bool(jitter_time)
    if "distance" in margs:
        kwargs["distance_marginalization_lookup_table"] = str(distance_lookup_table or "distance_lookup.npz")
    if relative_binning:
        if fiducial_parameters is None:
            raise GwnpeError("relative binning needs fiducial parameters (e.g. the injected values).")
        fiducial = dict(fiducial_parameters)
        if "time" in margs:
            fiducial.setdefault("time_jitter", 0.0)  # bilby evaluates the fiducial point with the jitter parameter
        return bilby.gw.likelihood.RelativeBinningGravitationalWaveTransient(
            fiducial_parameters=fiducial, epsilon=epsilon, **kwargs)
    return bilby.gw.likelihood.GravitationalWaveTransient(**kwargs)


def log_likelihood_ratios(likelihood, samples: dict, fixed: dict | None = None) -> np.ndarray:
    """log L(d|theta) - log L(d|noise) of each sample (dict of (n,) arrays, absolute geocent_time).

    Waveforms LAL refuses get -inf (their weight is zero), with a warning counting them.
    """
    keys = list(samples)
    n = len(samples[keys[0]])
    out = np.empty(n)
    base = dict(fixed or {})
    refused = 0
    for i in range(n):
        params = {**base, **{k: float(samples[k][i]) for k in keys}}
        try:
            out[i] = likelihood.log_likelihood_ratio(params)
        except (RuntimeError, ValueError):
            out[i] = -np.inf
            refused += 1
    if refused:
        logger.warning("%d of %d samples were refused by LAL; they get zero weight", refused, n)
    return out
