"""The bilby likelihood of gwnpe's data, and importance sampling of NPE samples with it.

The same strain, PSDs, band, waveform model and prior that gwnpe trains and infers
with are handed to bilby: interferometers are filled from frequency-domain strain
whose phase origin is the segment start (bilby's convention for an FFT of the
segment), PSDs are taken on the exact grid, and the band mask is ``f_min <= f <= f_max``
in both codes. The waveform generator is bilby's ``lal_binary_black_hole`` with the
run's approximant and reference frequency, which is also what gwnpe's bank and
training set are made with.

Importance sampling (as Dingo-IS, Dax et al. 2023): for proposal samples
theta_i ~ q(theta | d) the weights are w_i = L(d | theta_i) pi(theta_i) / q(theta_i | d).
The evidence estimate is Z = mean(w) over *all* draws of the flow, including those that
fell outside the prior (their weight is zero), so proposals truncated to the prior stay
unbiased: ``log Z = logsumexp(log w) - log(n_drawn)``. Its uncertainty is the delta-method
standard error ``sigma_logZ = sqrt((1 - eps) / (n eps))``, with ``eps = ESS / n`` the
sample efficiency and ``ESS = (sum w)^2 / sum w^2`` (Kish).
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
from scipy.special import logsumexp

from ..domain import FrequencyDomain
from ..errors import GwnpeError

logger = logging.getLogger(__name__)

#: Below this sample efficiency the weighted posterior and the evidence are flagged as unreliable.
LOW_EFFICIENCY = 0.01


class ImportanceSamplingWarning(UserWarning):
    """The NPE proposal covers the posterior poorly: few samples carry the weight."""


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


def build_likelihood(domain: FrequencyDomain, strain: dict, psds: dict, start_time: float, approximant: str,
                     reference_frequency: float, priors=None, relative_binning: bool = False,
                     fiducial_parameters: dict | None = None, epsilon: float = 0.5):
    """bilby GravitationalWaveTransient (or its relative-binning twin) for gwnpe data.

    ``priors`` must use absolute GPS ``geocent_time`` (see :func:`gwnpe.priors.to_absolute_time`).
    """
    import bilby

    ifos = interferometers(domain, strain, psds, start_time)
    wfg = waveform_generator(domain, approximant, reference_frequency, start_time, relative_binning)
    if relative_binning:
        if fiducial_parameters is None:
            raise GwnpeError("relative binning needs fiducial parameters (e.g. the injected values).")
        return bilby.gw.likelihood.RelativeBinningGravitationalWaveTransient(
            interferometers=ifos, waveform_generator=wfg, priors=priors,
            fiducial_parameters=dict(fiducial_parameters), epsilon=epsilon)
    return bilby.gw.likelihood.GravitationalWaveTransient(interferometers=ifos, waveform_generator=wfg, priors=priors)


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


def importance_weights(log_likelihood: np.ndarray, log_prior: np.ndarray, log_q: np.ndarray,
                       n_drawn: int | None = None) -> dict:
    """Importance weights and the evidence of proposal samples.

    Parameters
    ----------
    log_likelihood, log_prior, log_q : (n,) arrays
        Log likelihood (or likelihood ratio, giving a Bayes factor), log prior and log proposal
        density of each accepted sample.
    n_drawn : int, optional
        Number of proposal draws that produced these n samples (samples outside the prior were
        rejected; they have zero weight and count in the evidence's mean). Default n.

    Returns
    -------
    dict with ``weights`` (normalised to mean 1 over the n samples), ``log_weights`` (unnormalised),
    ``ess``, ``efficiency`` (ESS / n), ``log_evidence`` and ``log_evidence_err``.
    """
    log_w = np.asarray(log_likelihood, float) + np.asarray(log_prior, float) - np.asarray(log_q, float)
    n = len(log_w)
    n_drawn = n if n_drawn is None else int(n_drawn)
    if n == 0 or not np.any(np.isfinite(log_w)):
        raise GwnpeError("importance sampling: no sample has a finite weight (all outside the prior or refused).")
    if np.any(np.isnan(log_w)):
        logger.warning("importance sampling: %d of %d samples have a NaN log weight (NaN log likelihood, prior or "
                       "flow density); they get zero weight", int(np.isnan(log_w).sum()), n)
        log_w = np.where(np.isnan(log_w), -np.inf, log_w)
    lse = logsumexp(log_w)
    w = np.exp(log_w - lse)  # sums to 1
    ess = 1.0 / np.sum(w**2)
    eff = ess / n
    log_z = lse - np.log(n_drawn)
    # delta method on the mean of the n_drawn weights (rejected draws are zeros)
    eff_drawn = ess / n_drawn
    log_z_err = float(np.sqrt(max(1.0 - eff_drawn, 0.0) / (n_drawn * eff_drawn)))
    return {"weights": w * n, "log_weights": log_w, "ess": float(ess), "efficiency": float(eff),
            "log_evidence": float(log_z), "log_evidence_err": log_z_err, "n": n, "n_drawn": n_drawn}


def warn_if_inefficient(result: dict, what: str = "") -> None:
    if result["efficiency"] < LOW_EFFICIENCY:
        msg = (f"importance sampling{(' of ' + what) if what else ''}: sample efficiency {result['efficiency']:.2%} "
               f"(ESS {result['ess']:.0f} of {result['n']}) is below {LOW_EFFICIENCY:.0%}: the NPE proposal is narrower "
               "than the posterior or misses it, so the weighted posterior and the evidence are unreliable. "
               "Train longer or on a prior closer to the data, or draw more samples.")
        logger.warning(msg)
        warnings.warn(msg, ImportanceSamplingWarning, stacklevel=2)


def importance_result_fields(res: dict) -> tuple[dict, dict, dict]:
    """Split :func:`importance_sample`'s result into the Result's extra posterior columns, its
    evidence fields, and the summary stored in its meta data."""
    columns = {k: res[k] for k in ("weights", "log_likelihood", "log_prior")}
    evidence = {k: res[k] for k in ("log_evidence", "log_evidence_err", "log_noise_evidence", "log_bayes_factor")}
    summary = {k: res[k] for k in ("ess", "efficiency", "log_evidence", "log_evidence_err", "log_noise_evidence",
                                   "log_bayes_factor", "n", "n_drawn", "time")}
    return columns, evidence, summary


def importance_sample(model, strain: dict, psds: dict, start_time: float, samples: dict, log_q: np.ndarray,
                      n_drawn: int, approximant: str, reference_frequency: float) -> dict:
    """Reweight NPE samples of one event with the exact bilby likelihood and the model's prior.

    Parameters
    ----------
    samples : dict of (n,) arrays
        The model's parameters in physical units with GPS ``geocent_time`` (as :func:`to_physical` gives).
    log_q : (n,) array
        Flow density of each sample.
    n_drawn : int
        Flow draws that gave these samples (see :func:`importance_weights`).

    Returns
    -------
    The dict of :func:`importance_weights` plus ``log_likelihood`` (ratio), ``log_prior``,
    ``log_noise_evidence``, ``log_bayes_factor`` and ``time`` [s].
    """
    from ..priors import fixed_parameters, to_absolute_time
    from .sampling import model_domain, model_priors

    t0 = time.perf_counter()
    trigger = model.settings["trigger_time"]
    priors = to_absolute_time(model_priors(model), trigger)
    names = list(model.parameter_names)
    theta = {k: np.asarray(samples[k], float) for k in names}
    log_prior = priors.ln_prob(theta, axis=0)
    like = build_likelihood(model_domain(model), strain, psds, start_time, approximant, reference_frequency)
    fixed = fixed_parameters(model_priors(model))
    log_l = log_likelihood_ratios(like, theta, fixed)
    out = importance_weights(log_l, log_prior, log_q, n_drawn)
    noise = float(like.noise_log_likelihood())
    out.update(log_likelihood=log_l, log_prior=np.asarray(log_prior, float), log_noise_evidence=noise,
               log_bayes_factor=out["log_evidence"], time=time.perf_counter() - t0)
    out["log_evidence"] = out["log_bayes_factor"] + noise
    return out
