"""Importance sampling of NPE samples with the exact bilby likelihood (as Dingo-IS, Dax et al. 2023).

For proposal samples theta_i ~ q(theta | d) the weights are w_i = L(d | theta_i) pi(theta_i) / q(theta_i | d).
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

from ..errors import GwnpeError, ImportanceSamplingWarning
from ..gw.likelihood import build_likelihood, log_likelihood_ratios
from ..gw.priors import fixed_parameters, to_absolute_time
from .sampling import model_domain, model_priors

logger = logging.getLogger(__name__)

#: Below this sample efficiency the weighted posterior and the evidence are flagged as unreliable.
LOW_EFFICIENCY = 0.01
#: Above this Pareto k-hat of the weights, the importance-sampling estimates are unreliable (Vehtari et al. 2024).
PARETO_K_MAX = 0.7


def pareto_k(log_weights: np.ndarray) -> float:
    """Pareto k-hat of the weights' tail (PSIS, :func:`arviz.psislw`): the diagnostic of whether the
    importance-sampling estimates can be trusted (<= 0.7) whatever the ESS says. Only finite log
    weights take part; the weights themselves are not smoothed. nan when too few are finite."""
    import arviz

    finite = np.asarray(log_weights, float)
    finite = finite[np.isfinite(finite)]
    if len(finite) < 5:
        return float("nan")
    _, khat = arviz.psislw(finite - finite.max())
    return float(khat)


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
    ``ess``, ``efficiency`` (ESS / n), ``pareto_k`` (:func:`pareto_k`), ``log_evidence`` and
    ``log_evidence_err`` (the delta-method error: honest for a good proposal, an underestimate for
    heavy-tailed weights; trust it only when ESS >= 100 and ``pareto_k`` <= 0.7).
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
            "pareto_k": pareto_k(log_w), "log_evidence": float(log_z), "log_evidence_err": log_z_err, "n": n,
            "n_drawn": n_drawn}


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
    summary = {k: res[k] for k in ("ess", "efficiency", "pareto_k", "log_evidence", "log_evidence_err",
                                   "log_noise_evidence", "log_bayes_factor", "n", "n_drawn", "time")}
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
