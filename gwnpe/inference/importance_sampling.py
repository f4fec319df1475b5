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
from ..gw.likelihood import MARGINALIZED, build_likelihood, log_likelihood_ratios, time_grid_domain
from ..gw.priors import fixed_parameters, load_priors, to_absolute_time
from .sampling import model_domain, model_priors, sample_posterior

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
    summary.update({k: res[k] for k in ("target_ess", "reached", "n_batches") if k in res})
    return columns, evidence, summary


def model_marginalization(model) -> list[str]:
    """What the model's importance sampling marginalises over (config names ``phase``, ``time``): the
    parameters its network leaves out (``model.marginalized`` at training)."""
    return list(model.settings.get("marginalized") or [])


def importance_sample(model, strain: dict, psds: dict, start_time: float, samples: dict, log_q: np.ndarray,
                      n_drawn: int, approximant: str, reference_frequency: float, client=None,
                      chunk_size: int = 1000, seed: int = 0) -> dict:
    """Reweight NPE samples of one event with the exact bilby likelihood and the model's prior.

    For a model whose network leaves out phase and/or coalescence time (``model.marginalized``), the
    likelihood is bilby's, marginalised exactly over them (:func:`likelihood_spec`), and they are drawn
    afterwards from their exact conditional posterior given each sample (``reconstructed``).

    Parameters
    ----------
    samples : dict of (n,) arrays
        The model's parameters in physical units with GPS ``geocent_time`` (as :func:`to_physical` gives).
    log_q : (n,) array
        Flow density of each sample.
    n_drawn : int
        Flow draws that gave these samples (see :func:`importance_weights`).
    client : distributed.Client, optional
        Likelihoods on its workers, in chunks of ``chunk_size`` (same values as serially).
    seed : int
        Seed of the reconstruction's draws.

    Returns
    -------
    The dict of :func:`importance_weights` plus ``log_likelihood`` (ratio), ``log_prior``,
    ``log_noise_evidence``, ``log_bayes_factor``, ``time`` [s] and ``reconstructed`` (dict of the
    marginalised parameters' draws, GPS ``geocent_time``; empty when nothing is marginalised).
    """
    t0 = time.perf_counter()
    trigger = model.settings["trigger_time"]
    priors = to_absolute_time(model_priors(model), trigger)
    names = list(model.parameter_names)
    theta = {k: np.asarray(samples[k], float) for k in names}
    log_prior = priors.ln_prob(theta, axis=0)
    spec = likelihood_spec(model, strain, psds, start_time, approximant, reference_frequency)
    log_l = log_likelihoods(spec, theta, client, chunk_size)
    out = importance_weights(log_l, log_prior, log_q, n_drawn)
    noise = float(build_likelihood(model_domain(model), strain, psds, start_time, approximant,
                                   reference_frequency).noise_log_likelihood())
    out.update(log_likelihood=log_l, log_prior=np.asarray(log_prior, float), log_noise_evidence=noise,
               log_bayes_factor=out["log_evidence"],
               reconstructed=(reconstruct(spec, theta, client, chunk_size, seed, out["weights"])
                              if spec["marginalization"] else {}))
    out["log_evidence"] = out["log_bayes_factor"] + noise
    out["time"] = time.perf_counter() - t0
    return out


# ----------------------------------------------------------------------------- to a target ESS


def likelihood_spec(model, strain: dict, psds: dict, start_time: float, approximant: str,
                    reference_frequency: float) -> dict:
    """Everything that defines an event's exact likelihood, as plain data (shipped to dask workers,
    which rebuild the bilby likelihood from it: bilby objects are not sent over the wire).

    With ``marginalization`` (the model's :func:`model_marginalization`), the likelihood is bilby's
    phase- and/or time-marginalised one, on the fine time grid of :func:`time_grid_domain` without
    bilby's time jitter; its prior comes from the model's prior text."""
    dom = model_domain(model)
    marg = model_marginalization(model)
    if "time" in marg:
        dom = time_grid_domain(dom)
    return {"domain": (dom.f_min, dom.f_max, dom.duration, dom.sampling_frequency),
            "strain": {k: np.asarray(v, complex) for k, v in strain.items()},
            "psds": {k: np.asarray(v, float) for k, v in psds.items()}, "start_time": float(start_time),
            "approximant": approximant, "reference_frequency": float(reference_frequency),
            "fixed": fixed_parameters(model_priors(model)), "marginalization": marg,
            "prior_text": model.settings["prior_file"] if marg else None,
            "trigger_time": float(model.settings["trigger_time"])}


def spec_priors(spec: dict):
    """The model's prior carried by a marginalised :func:`likelihood_spec` (absolute GPS ``geocent_time``)."""
    return to_absolute_time(load_priors("<the prior stored in the model file>", text=spec["prior_text"]),
                            spec["trigger_time"])


def event_likelihood(spec: dict):
    """The bilby likelihood of :func:`likelihood_spec`, and the fixed parameters a sample is completed with
    (for a time-marginalised likelihood, ``geocent_time`` at the segment start as bilby's samplers use it)."""
    from ..gw.domain import FrequencyDomain

    marg = list(spec.get("marginalization") or [])
    priors = None
    fixed = dict(spec["fixed"])
    if marg:
        priors = spec_priors(spec)
        if "time" in marg:
            fixed["geocent_time"] = spec["start_time"]
        if "phase" in marg:
            fixed["phase"] = 0.0
    like = build_likelihood(FrequencyDomain(*spec["domain"]), spec["strain"], spec["psds"], spec["start_time"],
                            spec["approximant"], spec["reference_frequency"], priors=priors, marginalization=marg,
                            jitter_time=False)
    return like, fixed


def chunk_log_likelihood(spec: dict, theta: dict) -> np.ndarray:
    """log likelihood ratios of one chunk of samples (a dask task; also the serial path)."""
    like, fixed = event_likelihood(spec)
    return log_likelihood_ratios(like, theta, fixed)


def chunk_reconstruct(spec: dict, theta: dict, seed: int, first: int = 0) -> dict:
    """Draws of the marginalised parameters from their exact conditional posterior given each sample of
    one chunk (bilby's reconstruction; sample ``first + i`` seeded with ``(seed, first + i)``, so the draws
    do not depend on the chunking: a dask task; also the serial path). A sample LAL refuses (zero
    weight) gets a draw from the prior instead."""
    from bilby.core.utils import random as bilby_random

    like, fixed = event_likelihood(spec)
    priors = spec_priors(spec)
    keys = [MARGINALIZED[m] for m in spec["marginalization"]]
    n = len(next(iter(theta.values())))
    out = {k: np.empty(n) for k in keys}
    refused = 0
    for i in range(n):
        bilby_random.Generator.rng = np.random.default_rng([int(seed), int(first) + i])  # what bilby.core.utils.random.seed sets
        params = {**fixed, **{k: float(v[i]) for k, v in theta.items()}}
        try:
            new = like.generate_posterior_sample_from_marginalized_likelihood(params)
        except (RuntimeError, ValueError):
            new = {k: float(priors[k].sample()) for k in keys}
            refused += 1
        for k in keys:
            out[k][i] = new[k]
    if refused:
        logger.warning("%d of %d samples were refused by LAL in the reconstruction; they get prior draws of %s "
                       "(their weight is zero)", refused, n, ", ".join(keys))
    return out


#: Samples whose weight is below this fraction of the largest carry no posterior mass worth a
#: reconstruction (all of them together hold at most n times this of it): their marginalised
#: parameters are drawn from the prior instead of the conditional posterior, which saves most of the
#: reconstruction's time (about 19 ms a sample) when the efficiency is low.
RECONSTRUCT_MIN_WEIGHT = 1e-8


def reconstruct(spec: dict, theta: dict, client=None, chunk_size: int = 1000, seed: int = 0,
                weights: np.ndarray | None = None) -> dict:
    """:func:`chunk_reconstruct` over the samples in chunks, on ``client``'s dask workers when given:
    identical to the serial computation whatever the chunk size. With ``weights``, only samples whose
    weight is at least :data:`RECONSTRUCT_MIN_WEIGHT` of the largest are reconstructed; the others get
    prior draws (seeded likewise)."""
    n_all = len(next(iter(theta.values())))
    keys = [MARGINALIZED[m] for m in spec["marginalization"]]
    if weights is not None and n_all:
        w = np.asarray(weights, float)
        keep = w >= RECONSTRUCT_MIN_WEIGHT * w.max() if w.max() > 0 else np.zeros(n_all, bool)
        priors = spec_priors(spec)
        rng = np.random.default_rng([int(seed), n_all])
        out = {k: np.asarray(priors[k].rescale(rng.random(n_all)), float) for k in keys}
        if keep.any():
            sub = reconstruct(spec, {k: np.asarray(v)[keep] for k, v in theta.items()}, client, chunk_size, seed)
            for k in keys:
                out[k][keep] = sub[k]
        logger.info("reconstructed %s for %d of %d samples (the others carry < %g of the largest weight)",
                    ", ".join(keys), int(keep.sum()), n_all, RECONSTRUCT_MIN_WEIGHT)
        return out
    n = n_all
    firsts = list(range(0, n, chunk_size))
    chunks = [{k: v[i:i + chunk_size] for k, v in theta.items()} for i in firsts]
    if client is None:
        parts = [chunk_reconstruct(spec, c, seed, i) for c, i in zip(chunks, firsts)]
    else:
        spec_f = client.scatter([spec], broadcast=True)[0]
        parts = client.gather(client.map(chunk_reconstruct, [spec_f] * len(chunks), chunks, [int(seed)] * len(chunks),
                                         firsts, pure=False))
    return {k: np.concatenate([p[k] for p in parts]) for k in keys} if parts else {k: np.empty(0) for k in keys}


def log_likelihoods(spec: dict, theta: dict, client=None, chunk_size: int = 1000) -> np.ndarray:
    """log likelihood ratios of all samples, in chunks of ``chunk_size``, on ``client``'s dask workers
    when given (results gathered in order: identical to the serial computation)."""
    n = len(next(iter(theta.values())))
    chunks = [{k: v[i:i + chunk_size] for k, v in theta.items()} for i in range(0, n, chunk_size)]
    if client is None:
        parts = [chunk_log_likelihood(spec, c) for c in chunks]
    else:
        spec_f = client.scatter([spec], broadcast=True)[0]  # a list: scatter would split a dict by key
        parts = client.gather(client.map(chunk_log_likelihood, [spec_f] * len(chunks), chunks, pure=False))
    return np.concatenate(parts) if parts else np.empty(0)


#: Seed offset between consecutive batches of :func:`importance_sample_to_target`: a prime far above
#: the per-injection offsets of the stages' seeds.
BATCH_SEED_STRIDE = 1_000_003


def importance_sample_to_target(model, strain: dict, psds: dict, start_time: float, approximant: str,
                                reference_frequency: float, *, target_ess: float, max_samples: int,
                                batch_size: int = 10000, seed: int = 0, client=None, chunk_size: int = 1000,
                                device: str = "cpu") -> dict:
    """Draw NPE samples and reweight them in batches until the ESS reaches ``target_ess`` or
    ``max_samples`` samples have been drawn.

    Batch ``b`` is drawn with seed ``seed + b * BATCH_SEED_STRIDE`` (so that the batches of runs whose
    seeds differ by a small offset, e.g. one per injection, never share flow draws); the weights, ESS,
    Pareto k-hat and evidence are those of all batches together (:func:`importance_weights`, with every flow draw counted in the
    evidence's mean), so stopping early never biases them: the estimate after b batches is an ordinary
    importance-sampling estimate of b * batch_size samples. Likelihoods are computed on ``client``'s
    dask workers when given, with weights identical to the serial run.

    Returns
    -------
    The dict of :func:`importance_sample` plus ``samples`` (all batches), ``log_q``, ``npe_time``
    (flow sampling [s]), ``n_batches``, ``target_ess`` and ``reached`` (whether ESS >= target).
    """
    if target_ess <= 0 or max_samples < 1 or batch_size < 1:
        raise GwnpeError(f"target ESS {target_ess}, sample budget {max_samples} and batch size {batch_size} must be positive.")
    t0 = time.perf_counter()
    spec = likelihood_spec(model, strain, psds, start_time, approximant, reference_frequency)
    priors = to_absolute_time(model_priors(model), model.settings["trigger_time"])
    names = list(model.parameter_names)
    samples, log_q, log_l, log_prior = [], [], [], []
    n_drawn = 0.0
    npe_time = 0.0
    out = None
    b = 0
    while sum(len(q) for q in log_q) < max_samples:
        n = min(batch_size, max_samples - sum(len(q) for q in log_q))
        post = sample_posterior(model, strain, psds, n, start_time=start_time,
                                seed=seed + b * BATCH_SEED_STRIDE, device=device)
        npe_time += post["sampling_time"]
        theta = {k: np.asarray(post["samples"][k], float) for k in names}
        samples.append(post["samples"])
        log_q.append(post["log_q"])
        log_prior.append(np.asarray(priors.ln_prob(theta, axis=0), float))
        log_l.append(log_likelihoods(spec, theta, client, chunk_size))
        n_drawn += n / post["acceptance"]
        gnpe = post.get("gnpe")
        b += 1
        out = importance_weights(np.concatenate(log_l), np.concatenate(log_prior), np.concatenate(log_q),
                                 int(round(n_drawn)))
        logger.info("importance sampling batch %d: %d samples, ESS %.0f (target %.0f), efficiency %.2f%%",
                    b, out["n"], out["ess"], target_ess, 100 * out["efficiency"])
        if out["ess"] >= target_ess:
            break
    noise = float(build_likelihood(model_domain(model), strain, psds, start_time, approximant,
                                   reference_frequency).noise_log_likelihood())
    out.update(log_likelihood=np.concatenate(log_l), log_prior=np.concatenate(log_prior), log_noise_evidence=noise,
               log_bayes_factor=out["log_evidence"], log_q=np.concatenate(log_q), npe_time=npe_time,
               samples={k: np.concatenate([s[k] for s in samples]) for k in samples[0]}, n_batches=b,
               target_ess=float(target_ess), reached=bool(out["ess"] >= target_ess))
    out["samples"].update(reconstruct(spec, {k: out["samples"][k] for k in names}, client, chunk_size, seed,
                                      out["weights"]) if spec["marginalization"] else {})
    if gnpe is not None:
        out["gnpe"] = gnpe  # the diagnostics of the last batch's Gibbs chains
    out["log_evidence"] = out["log_bayes_factor"] + noise
    out["time"] = time.perf_counter() - t0 - npe_time
    if not out["reached"]:
        msg = (f"importance sampling stopped at the sample budget of {max_samples} with ESS {out['ess']:.0f} < target "
               f"{target_ess:.0f} (efficiency {out['efficiency']:.3%}): raise the budget or improve the proposal.")
        logger.warning(msg)
        warnings.warn(msg, ImportanceSamplingWarning, stacklevel=2)
    return out
